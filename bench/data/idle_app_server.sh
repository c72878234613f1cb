#!/bin/sh
# An idle stand-in for `codex app-server` (bench/remote_dispatch.py): it answers the
# handshake and starts its turn, then does nothing until it is stopped, so the run stays live
# and the only events are the agent starting. POSIX sh, like zero_work_app_server.sh, so the
# figures measure the daemons and the link, not an interpreter's start-up.
while IFS= read -r line; do
  id=${line#*\"id\":}
  id=${id%%,*}
  case $line in
    *'"method":"initialize"'*)
      printf '{"id":%s,"result":{"userAgent":"idle"}}\n' "$id" ;;
    *'"method":"thread/start"'*)
      printf '{"id":%s,"result":{"thread":{"id":"thr"}}}\n' "$id" ;;
    *'"method":"turn/start"'*)
      printf '{"id":%s,"result":{"turn":{"id":"turn","status":"inProgress"}}}\n' "$id" ;;
    '{"id":'*'"method":'*)
      printf '{"id":%s,"result":{}}\n' "$id" ;;
  esac
done

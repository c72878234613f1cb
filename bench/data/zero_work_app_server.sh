#!/bin/sh
# A zero-work stand-in for `codex app-server` (bench/pipeline_throughput.py).
#
# It speaks just enough of the app-server protocol to complete one turn: it answers
# initialize, thread/start and turn/start, then does what a real agent does at the end of its
# work: calls the host's tracker_move tool to hand the issue off to "Human Review", waits for
# the answer, and completes the turn. The launcher's refresh then sees the issue outside the
# active states and ends the run. POSIX sh (dash) rather than Python: an interpreter start
# costs tens of milliseconds of CPU, which would measure Python's start-up, not the daemons.
# Requests carry "id" as their first key (compact JSON from the launcher's client).
while IFS= read -r line; do
  id=${line#*\"id\":}
  id=${id%%,*}
  case $line in
    *'"method":"initialize"'*)
      printf '{"id":%s,"result":{"userAgent":"zero-work"}}\n' "$id" ;;
    *'"method":"thread/start"'*)
      printf '{"id":%s,"result":{"thread":{"id":"thr"}}}\n' "$id" ;;
    *'"method":"turn/start"'*)
      printf '{"id":%s,"result":{"turn":{"id":"turn","status":"inProgress"}}}\n' "$id"
      printf '%s\n' '{"id":0,"method":"item/tool/call","params":{"threadId":"thr","turnId":"turn","callId":"c1","tool":"tracker_move","arguments":{"state":"Human Review"}}}'
      IFS= read -r answer || exit 0
      case $answer in
        *'"success":true'*) ;;
        *) printf '%s\n' "tracker_move failed: $answer" >&2 ;;
      esac
      printf '%s\n' '{"method":"turn/completed","params":{"threadId":"thr","turn":{"id":"turn","status":"completed"}}}' ;;
    '{"id":'*'"method":'*)
      # Any other request (thread/name/set, turn/interrupt): an empty success.
      printf '{"id":%s,"result":{}}\n' "$id" ;;
  esac
done

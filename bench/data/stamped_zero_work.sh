#!/bin/sh
# The zero-work agent (zero_work_app_server.sh) that first notes when it started: nanoseconds
# since the epoch in .agent_started in its workspace (its working directory), written by a
# rename so a reader never sees half of it. bench/event_latency.py and
# tests/dispatcher/test_change_events.py read it.
date +%s%N > .agent_started.tmp && mv .agent_started.tmp .agent_started
exec "$(dirname "$0")/zero_work_app_server.sh"

#!/bin/bash
# usage: models/demo/timed_run.sh NAME cmd...  -> runs/demo/NAME.log: the command, start, end, exit code, wall seconds
# (how the demo trainings were timed; models/demo/finalize.py ship --train-log reads that log)
name=$1; shift
mkdir -p runs/demo
log=runs/demo/$name.log
{
  echo "command: $*"
  echo "start: $(date -Is)"; s=$(date +%s.%N)
  "$@"; rc=$?
  e=$(date +%s.%N)
  echo "end: $(date -Is) rc=$rc"
  echo "wall_s: $(echo "$e - $s" | bc)"
} > "$log" 2>&1

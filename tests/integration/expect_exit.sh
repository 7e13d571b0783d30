#!/usr/bin/env bash
# expect_exit.sh CODE COMMAND [ARGS...]: runs the command, echoes its output, and succeeds only
# if it exits with CODE.
expected=$1
shift
"$@" 2>&1
actual=$?
if [[ $actual -ne $expected ]]; then
  echo "expect_exit: '$*' exited $actual, expected $expected" >&2
  exit 1
fi

#!/usr/bin/env bash
# promtool_check.sh PROMTOOL COMMAND [ARGS...]: runs the command and lints the Prometheus
# exposition it prints (from its first '# HELP' line on) with `promtool check metrics`, which
# fails on format errors and on convention problems (counter names without _total, missing help,
# non-base units).
# promtool_check.sh PROMTOOL --bad-sample: feeds promtool a counter that breaks the conventions
# and succeeds only if promtool rejects it.
set -uo pipefail
promtool=$1
if [[ $2 == --bad-sample ]]; then
  bad=$'# HELP tether_bad_requests Requests\n# TYPE tether_bad_requests counter\ntether_bad_requests 1\n'
  if printf '%s' "$bad" | "$promtool" check metrics; then
    echo "promtool accepted a counter without _total" >&2
    exit 1
  fi
  echo "promtool rejected the bad sample, as it should"
  exit 0
fi
shift
output=$("$@") || { echo "'$*' failed" >&2; exit 1; }
exposition=$(printf '%s\n' "$output" | sed -n '/^# HELP/,$p')
if [[ -z $exposition ]]; then
  echo "no exposition in the output of '$*'" >&2
  exit 1
fi
printf '%s\n' "$exposition" | "$promtool" check metrics || exit 1
echo "promtool: $(printf '%s\n' "$exposition" | grep -c '^# TYPE') metric families pass"

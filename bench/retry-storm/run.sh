#!/usr/bin/env bash
# The seed's retry storm, reproduced through tether proxy in one command: three backends of fixed
# capacity (300 requests/s each by default), an open-loop load, backend 0 answering 503 to
# everything from t=10 s for 10 s. Each load is run twice: the proxy configured as the seed's
# gateway was ("naive": 3 immediate retries, no budget, no breaker) and with tether's defaults.
# Loads: 70 % of the total capacity (the issue's), and 65 % (the most the two healthy backends
# can carry alone: at 70 % they get 105 % of their capacity however well the failed backend's
# share is spread). A third pair has backend 0 stall instead (read requests, never answer) at
# 65 %; the proxy's request timeout is 2 s.
#
#   bench/retry-storm/run.sh [seconds=30] [outdir=build/bench-retry-storm]
#
# Writes per-second CSVs, report.md (the table below) and storm.png (offered load, upstream
# attempts and successes over time, every run), and prints the table. Everything runs in one
# process per run, on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
out=${2:-build/bench-retry-storm}
mkdir -p "$out"
bin=build/release/bench/tether_retry_storm
if [[ ! -x $bin ]]; then
  cmake --preset release > /dev/null
  cmake --build --preset release --target tether_retry_storm > /dev/null
fi
capacity=300
fault_at=$((seconds / 3))
fault_for=$((seconds / 3))
rows=()
for run in 503:630 503:585 stall:585; do
  fault=${run%%:*}
  rate=${run##*:}
  for mode in naive tether; do
    csv="$out/$mode-$fault-$rate.csv"
    summary=$("$bin" "$mode" --rate "$rate" --capacity "$capacity" --duration "$seconds" \
      --fault-at "$fault_at" --fault-for "$fault_for" --fault "$fault" --csv "$csv")
    echo "$summary" >> "$out/summaries.jsonl.tmp"
    rows+=("$(python3 - "$summary" << 'PY'
import json, sys
s = json.loads(sys.argv[1])
load = round(100 * s["rate"] / (3 * s["capacity"]))
print(f'| {s["mode"]} | {s["fault"]} | {load} % ({s["rate"]:.0f}/s) | {s["amplification"]:.2f} | '
      f'{100 * s["fault_success"]:.1f} % | {100 * s["servable"]:.1f} % | '
      f'{100 * s["success"]:.2f} % | {s["healthy_peak"]:.2f} | {s["recovery_s"]} s |')
PY
)")
  done
done
mv "$out/summaries.jsonl.tmp" "$out/summaries.jsonl"

gnuplot << GP
set terminal pngcairo size 1400,1300 font ",10" noenhanced
set output "$out/storm.png"
set datafile separator ","
set key bottom right box opaque
set yrange [0:*]
set xlabel "seconds"
set ylabel "requests per second"
set multiplot layout 3,2 title "tether proxy: backend 0 fails from ${fault_at} s to $((fault_at + fault_for)) s (capacity ${capacity}/s per backend)"
do for [run in "503-630 503-585 stall-585"] {
  do for [mode in "naive tether"] {
    f = sprintf("$out/%s-%s.csv", mode, run)
    set title sprintf("%s, backend 0 %s, %s requests/s offered", mode, run[1:strstrt(run,"-")-1], run[strstrt(run,"-")+1:])
    set object 1 rect from ${fault_at},graph 0 to $((fault_at + fault_for)),graph 1 fc rgb "#f4d6d6" fs solid 0.5 behind
    plot f using 1:2 skip 1 with lines lw 2 title "offered (client requests)", \
         f using 1:4 skip 1 with lines lw 2 title "upstream attempts", \
         f using 1:3 skip 1 with lines lw 2 title "client successes (200)", \
         ${capacity} * 2 with lines dt 2 lc rgb "gray" title "healthy backends' capacity"
  }
}
unset multiplot
GP

{
  echo "# The retry storm through tether proxy"
  echo
  echo "Three backends of ${capacity} requests/s each; open-loop load for ${seconds} s; backend 0"
  echo "fails from ${fault_at} s to $((fault_at + fault_for)) s (503 to everything, or stalls). naive: 3"
  echo "immediate retries on 5xx and errors, no budget, no breaker; tether: nothing configured."
  echo "Amplification: upstream attempts per client request during the fault. Servable: successes"
  echo "over what the two healthy backends could serve. Healthy peak: the most requests a healthy"
  echo "backend got in one second, over its capacity. Recovery: from the fault's end until every"
  echo "second has >= 99 % success and amplification <= 1.1."
  echo
  echo "| gateway | fault | load | amplification | success (fault) | servable (fault) | success (run) | healthy peak | recovery |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "![storm](storm.png)"
} > "$out/report.md"
cat "$out/report.md"
echo
echo "written: $out/report.md, $out/storm.png, $out/*.csv"

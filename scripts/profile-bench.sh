#!/usr/bin/env bash
# Where the CPU goes while Surge serves the sync echo at 64 callers: CPU seconds per process
# (from /proc, over a window inside the measured run) and each process's hottest symbols
# (`perf record` over the same window, whole machine, no call graphs). Needs the binaries of
# `cargo build --profile bench` (symbols kept) and perf (Debian `linux-perf`).
#
#   scripts/profile-bench.sh [SECONDS_MEASURED] [WINDOW]
set -euo pipefail
cd "$(dirname "$0")/.."
measured=${1:-30}
window=${2:-10}
bin=${BIN_DIR:-target/release}
out=${PROFILE_DIR:-target/profile}
mkdir -p "$out"
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }

"$bin/surge-bench" --bin-dir "$bin" --callers 64 --no-celery --cold-starts 0 \
    --seconds "$measured" >"$out/bench.txt" 2>"$out/bench.log" &
bench=$!
# Sample well inside Surge's measured window: the bench says when Surge's scenario starts,
# and its warm-up is a quarter of the measured time.
until grep -q '^surge: 64 callers' "$out/bench.log"; do
    kill -0 "$bench" 2>/dev/null || { echo "the bench ended early: $out/bench.log" >&2; exit 1; }
    sleep 0.2
done
sleep $(( measured / 4 + 2 ))

# utime + stime (clock ticks) of every process, by command name.
ticks() {
    for stat in /proc/[0-9]*/stat; do
        read -r line <"$stat" 2>/dev/null || continue
        local name=${line#*(}; name=${name%%)*}
        local rest=${line##*) }
        # fields after the name: state is 3rd overall; utime is 14th, stime 15th
        set -- $rest
        echo "$name ${12} ${13}"
    done | awk '{t[$1] += $2 + $3} END {for (n in t) print n, t[n]}' | sort
}
started=$(date +%s.%N)
ticks >"$out/ticks.before"
# perf names threads (tokio's workers are `tokio-runtime-w`): report by process id instead.
for name in surge surge-echo beam.smp; do
    pgrep -d, -x "$name" >"$out/pids.$name" || true
done
perf record -a -F 499 -o "$out/perf.data" -- sleep "$window" 2>"$out/perf.log" >/dev/null
ticks >"$out/ticks.after"
# perf's own start and stop make the window a little longer than asked: divide by what it was.
elapsed=$(echo "$(date +%s.%N) - $started" | bc -l)
wait "$bench"

hz=$(getconf CLK_TCK)
printf "# CPU by process over %.1f s of Surge's 64-caller run (%% of one core)\n" "$elapsed"
join "$out/ticks.before" "$out/ticks.after" |
    awk -v hz="$hz" -v w="$elapsed" '{d = ($3 - $2) / hz / w * 100; if (d >= 1) printf "%-16s %6.1f\n", $1, d}' |
    sort -k2 -nr
echo
cat "$out/bench.txt"
echo
report() {
    perf report -i "$out/perf.data" "$@" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -15 || true
}
echo "# top symbols: postgres (every backend)"
report --comm postgres
echo
for name in beam.smp surge surge-echo; do
    echo "# top symbols: $name"
    pids=$(cat "$out/pids.$name")
    [ -n "$pids" ] && report --pid "$pids"
    echo
done

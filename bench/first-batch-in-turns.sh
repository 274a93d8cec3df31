#!/usr/bin/env bash
# Time to first batch of several `sluis` binaries, in turns, so that a slow spell of a shared
# machine falls on all of them (BENCHMARKS.md, data plane, session 9).
#
#   bench/first-batch-in-turns.sh [-r ROUNDS] [-n RUNS] BINARY...
#
# Each round runs every binary once: `sluis bench-flight --only first-batch` with RUNS queries
# of each kind (same SQL repeated, new SQL each run), on its data plane keeping the first rows
# of views and on one keeping none (since session 10). Prints, per binary and kind, the median
# of the rounds' p50s, then every round's p50. Build each binary with
# `cargo build --release --workspace --bins` at its commit and copy it aside.
set -euo pipefail
rounds=5 runs=300
while getopts r:n: opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    n) runs=$OPTARG ;;
    *) echo "usage: $0 [-r ROUNDS] [-n RUNS] BINARY..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] [-n RUNS] BINARY..." >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq "$rounds"); do
  for bin in "$@"; do
    echo "round $round/$rounds: $bin" >&2
    "$bin" bench-flight --rows 10000000 --only first-batch --first-batch-runs "$runs" |
      awk -v b="$bin" '/time to first batch/ {
        kind = (/no rows kept/ ? "none-kept/" : "kept/") (/new SQL/ ? "new" : "same");
        for (i = 1; i <= NF; i++) if ($i == "p50") print b, kind, $(i + 1) }' >>"$out"
  done
done
python3 - "$out" <<'PY'
import collections, statistics, sys
p50s = collections.defaultdict(list)
for line in open(sys.argv[1]):
    binary, kind, ms = line.split()
    p50s[(binary, kind)].append(float(ms))
for (binary, kind), v in sorted(p50s.items()):
    rounds = " ".join(f"{x:.2f}" for x in v)
    print(f"{binary}  {kind:15}  median p50 {statistics.median(v):.2f} ms  (rounds: {rounds})")
PY

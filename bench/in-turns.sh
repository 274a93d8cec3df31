#!/usr/bin/env bash
# Several benchmark commands in turns, so that a slow spell of a shared machine falls on all
# of them (BENCHMARKS.md, data plane, session 10).
#
#   bench/in-turns.sh [-r ROUNDS] COMMAND...
#
# Each round runs every COMMAND (a shell command line, quoted) once, and prints its summary
# lines: the per-configuration "best" lines, the ratios and the memory line of
# `sluis bench-flight`. For example, two binaries' throughput, four runs each:
#
#   bench/in-turns.sh -r 4 '/tmp/a bench-flight --only throughput --rounds 3' \
#                          '/tmp/b bench-flight --only throughput --rounds 3'
set -euo pipefail
rounds=3
while getopts r: opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    *) echo "usage: $0 [-r ROUNDS] COMMAND..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] COMMAND..." >&2; exit 2; }
for round in $(seq "$rounds"); do
  for cmd in "$@"; do
    echo "== round $round/$rounds: $cmd"
    bash -c "$cmd" 2>&1 | grep -E ' best |enforced / unenforced|concurrent streams' || true
  done
done

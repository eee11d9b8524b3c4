#!/usr/bin/env bash
# The figures of jobs that wait for their session key, and of outcome records (docs/performance.md,
# "Parked jobs"): starts a throwaway PostgreSQL, builds decryptd-bench (release), and runs
# `decryptd-bench parked` against it, which runs the worker in its own process on the embedded
# broker and prints, each beside what it is compared with in the same run:
#   - jobs/s of a backlog with LATE_SHARE (default 5%) of the keys landing late, beside the same
#     backlog with every key present, rounds interleaved; then every late key stored over 0-10 s
#     while a worker runs: how many healed, and the heal latency (key INSERT → member row) p50/p99;
#   - CPU per second of the worker's process and of PostgreSQL with 1,000 and with PARKED (default
#     1,000,000) parked jobs while 10 keys/s arrive: the cost of noticing keys must not grow;
#   - produce → member row and produce → outcome record, p50/p99, at 1k and 5k jobs/s offered, with
#     librdkafka's default fetch.wait.max.ms (500) and with 10 ms.
# Usage: scripts/bench-parked.sh [JOBS]   (default 100000; ROUNDS=2, PARKED=1000000, ONLY=all|throughput|scaling|latency)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-100000}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "bench-parked: JOBS must be a positive integer" >&2; exit 2; }
scripts/setup.sh
echo "bench-parked: building (release)" >&2
swift build -c release --product decryptd-bench >/tmp/decryptd-bench-parked-build.log 2>&1 \
    || { cat /tmp/decryptd-bench-parked-build.log >&2; exit 1; }
bin="$(swift build -c release --show-bin-path)/decryptd-bench"
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
trap 'pg_stop BENCHPARK >/dev/null' EXIT
pg_start BENCHPARK
"$bin" decrypt --only floor --seconds 1 | sed 's/^/host speed: /'
"$bin" parked --database-url "$BENCHPARK_URL" --jobs "$jobs" --rounds "${ROUNDS:-2}" --parked "${PARKED:-1000000}" \
    --late-share "${LATE_SHARE:-0.05}" --only "${ONLY:-all}"
"$bin" decrypt --only floor --seconds 1 | sed 's/^/host speed: /'

#!/usr/bin/env bash
# End-to-end worker benchmark: starts a throwaway PostgreSQL and the embedded broker, seeds
# sessions and produces N jobs (mixed outcomes) on enough partitions, runs
# `decryptd run --exit-at-end` (release build), and prints jobs/s, peak RSS, the CPU each job cost
# decryptd and PostgreSQL, and the host's speed around the run, as text and JSON.
# The jobs are produced once and consumed ROUNDS times (default 3), each round by a new consumer
# group against emptied members and failures tables; the summary is the median round, because this
# VM's speed swings by tens of percent between minutes.
# With REFERENCE=1 each round also runs scripts/reference-worker.py, the issue's yardstick (a
# batched Python worker: confluent-kafka + psycopg + cryptography), on the same jobs from the same
# state, and reports decryptd's speed as a multiple of it: a figure that does not depend on how fast
# the host is that minute. Its packages go into a virtualenv under .build/ (from PyPI, once).
# After each round `decryptd-bench store` measures PostgreSQL alone on the same server, doing the
# worker's lookup + upsert in 1000-row batches: over one connection (the issue's "PostgreSQL alone"
# figure) and over one connection per core (the server's own ceiling for these statements on this
# machine's cores, which the worker shares with everything else it does); the share of that ceiling
# the worker reached moves much less with the host's speed than jobs/s do (unless the host's speed
# changes between the round and the measurement after it).
# Usage: scripts/bench-worker.sh [JOBS]   (default 300000; PARTITIONS=... to override the partition
# count, ROUNDS=... the number of runs, RUN_ARGS="--database-connections 4 ..." to pass options to
# `decryptd run`, REFERENCE=1 as above)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-300000}
rounds=${ROUNDS:-3}
[[ "$jobs" =~ ^[1-9][0-9]*$ && "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench: JOBS and ROUNDS must be positive integers" >&2; exit 2; }
reference=${REFERENCE:-0}
[[ "$reference" =~ ^[01]$ ]] || { echo "bench: REFERENCE must be 0 or 1" >&2; exit 2; }
# The embedded broker keeps ~5 MB per partition, about 14,000 of these jobs: leave headroom.
partitions=${PARTITIONS:-$(( jobs / 8000 + 4 ))}

scripts/setup.sh
echo "bench: building (release)" >&2
for product in decryptd decryptd-bench; do
    swift build -c release --product "$product" >/tmp/decryptd-bench-build.log 2>&1 || { cat /tmp/decryptd-bench-build.log >&2; exit 1; }
done
bin_dir=$(swift build -c release --show-bin-path)
venv=.build/reference-venv
if [ "$reference" = 1 ] && ! "$venv/bin/python" -c 'import confluent_kafka, psycopg, cryptography' 2>/dev/null; then
    echo "bench: installing the reference worker's Python packages into $venv" >&2
    { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet 'confluent-kafka==2.16.1' 'psycopg[binary]==3.3.9' 'cryptography==50.0.2'; } >&2 \
        || { echo "bench: could not install the reference worker's packages (python3 -m venv and PyPI needed)" >&2; exit 1; }
fi
bin="$bin_dir/decryptd"
# How fast this host is right now (a shared VM's speed swings by tens of percent from minute to
# minute): OpenSSL's AES-128-CBC decrypts per second on one thread, the floor `decryptd-bench
# decrypt` compares against, measured just before and just after the run.
host_speed() { "$bin_dir/decryptd-bench" decrypt --only floor --seconds 1; }
# PostgreSQL alone over N connections at once: rows/s (in schemas of its own, dropped afterwards).
postgres_alone() {
    "$bin_dir/decryptd-bench" store --database-url "$BENCH_URL" --connections "$1" --rows 100000 --json \
        | sed -E 's/.*"rows_per_s":([0-9]+).*/\1/'
}

work=$(mktemp -d /tmp/decryptd-bench.XXXXXX)
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
broker_pid=""
cleanup() {
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    pg_stop BENCH >&2
    rm -rf "$work"
}
trap cleanup EXIT
pg_start BENCH >&2

"$bin" dev-broker --brokers 3 --topic "wechat.phone.jobs:$partitions" --topic wechat.phone.dlq:4 >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
export KAFKA_BROKERS; KAFKA_BROKERS=$(head -n 1 "$work/broker.out")
export DATABASE_URL=$BENCH_URL WECHAT_APPIDS=wx6ede2086ee29a89f DECRYPTD_LOG_LEVEL=warning

"$bin" migrate >/dev/null
echo "bench: producing $jobs jobs on $partitions partitions" >&2
"$bin" loadgen --jobs "$jobs" >"$work/loadgen.out"
# CPU per job of both sides: decryptd's from bash's `time`, PostgreSQL's from the postmaster, whose
# counters include the backends it has reaped (the worker's connections end when it exits).
postmaster=$(head -n 1 "$BENCH_DIR/data/postmaster.pid")
pg_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$postmaster/stat"; }
psql_bin="$(pg_bin_dir)/psql"
TIMEFORMAT='%U %S'
# Every run starts as the first: no members or failures yet, and session rows as freshly written as
# loadgen left them (rewritten, so that the first run's reads setting their visibility hints do not
# make later runs cheaper; in production the session is written at login, moments before the
# phone-number job).
reset_tables() {
    "$psql_bin" -q "$BENCH_URL" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
TRUNCATE members, decrypt_failures;
BEGIN;
CREATE TEMP TABLE sessions_copy AS SELECT * FROM wechat_sessions;
TRUNCATE wechat_sessions;
INSERT INTO wechat_sessions SELECT * FROM sessions_copy;
COMMIT;
ANALYZE wechat_sessions;
SQL
}
round_json=()
for round in $(seq "$rounds"); do
    reset_tables
    floor_before=$(host_speed)
    echo "bench: running the worker (round $round of $rounds)" >&2
    pg_before=$(pg_ticks)
    # shellcheck disable=SC2086  # RUN_ARGS is a list of options
    { time "$bin" run --exit-at-end --progress-interval 0 --group "bench-$round" ${RUN_ARGS:-} >"$work/run.out"; } 2>"$work/time.out"
    sleep 0.5  # let the postmaster reap the worker's backends
    pg_after=$(pg_ticks)
    floor_after=$(host_speed)
    # The last line is bash's `time`; the worker's own warnings (stderr) come before it.
    decryptd_us=$(tail -n 1 "$work/time.out" | awk -v jobs="$jobs" '{ printf "%.1f", ($1 + $2) * 1e6 / jobs }')
    postgres_us=$(awk -v jobs="$jobs" -v a="$pg_before" -v b="$pg_after" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / jobs }')
    summary=$(head -n 1 "$work/run.out")
    rate=$(sed -E 's/.* ([0-9]+) jobs\/s .*/\1/' <<<"$summary")
    window=$(sed -E 's/.* over ([0-9.]+) s of processing.*/\1/' <<<"$summary")
    rss=$(sed -E 's/.*peak RSS ([0-9]+) MB.*/\1/' <<<"$summary")
    if [ "$round" = 1 ]; then sed -n '2,$p' "$work/run.out"; fi  # the outcomes, the same every round
    echo "round $round: $rate jobs/s over $window s, peak RSS $rss MB; CPU per job: decryptd $decryptd_us µs, PostgreSQL $postgres_us µs; host speed (OpenSSL AES-128-CBC decrypts/s on one thread) $floor_before before, $floor_after after"
    reference_json=""
    if [ "$reference" = 1 ]; then
        reset_tables
        "$venv/bin/python" scripts/reference-worker.py --brokers "$KAFKA_BROKERS" --database-url "$BENCH_URL" \
            --group "reference-$round" --appid "$WECHAT_APPIDS" >"$work/reference.out"
        reference_rate=$(sed -E 's/.* ([0-9]+) jobs\/s .*/\1/' "$work/reference.out")
        multiple=$(awk -v a="$rate" -v b="$reference_rate" 'BEGIN { printf "%.1f", a / b }')
        if [ "$round" = 1 ]; then cat "$work/reference.out"; fi  # its outcomes: it repairs no base64
        echo "round $round: reference worker (Python) $reference_rate jobs/s just after; decryptd ${multiple}x as fast"
        reference_json=",\"reference_jobs_per_s\":$reference_rate,\"times_reference\":$multiple"
    fi
    store_one=$(postgres_alone 1)
    store_all=$(postgres_alone "$(nproc)")
    share=$(awk -v a="$rate" -v b="$store_all" 'BEGIN { printf "%.2f", a / b }')
    echo "round $round: PostgreSQL alone (lookup + upsert, 1000-row batches) just after: $store_one rows/s over one connection, $store_all over $(nproc) at once; decryptd end to end at $share of the latter"
    round_json+=("{\"jobs_per_s\":$rate,\"processing_s\":$window,\"peak_rss_mb\":$rss,\"decryptd_cpu_us_per_job\":$decryptd_us,\"postgres_cpu_us_per_job\":$postgres_us,\"openssl_floor_per_s\":[$floor_before,$floor_after]$reference_json,\"postgres_alone_rows_per_s\":{\"one_connection\":$store_one,\"all_cores\":$store_all},\"share_of_postgres_ceiling\":$share}")
done

# The median round by jobs/s (the lower middle one for an even count); peak RSS is the highest of all.
median=$(printf '%s\n' "${round_json[@]}" | sed -E 's/^\{"jobs_per_s":([0-9]+),.*/\1 &/' | sort -n | sed -n "$(( (rounds + 1) / 2 ))p" | cut -d' ' -f2-)
peak=$(printf '%s\n' "${round_json[@]}" | sed -E 's/.*"peak_rss_mb":([0-9]+),.*/\1/' | sort -n | tail -n 1)
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/" <<<"$median"; }
# The median over the rounds of a per-round figure (the lower middle one for an even count).
median_of() { printf '%s\n' "${round_json[@]}" | sed -E "s/.*\"$1\":([0-9.]+).*/\1/" | sort -n | sed -n "$(( (rounds + 1) / 2 ))p"; }
echo "median of $rounds rounds: $(field jobs_per_s) jobs/s, CPU per job decryptd $(field decryptd_cpu_us_per_job) µs and PostgreSQL $(field postgres_cpu_us_per_job) µs (their sum bounds jobs/s at $(nproc) cores / sum); highest peak RSS $peak MB"
reference_summary=""
if [ "$reference" = 1 ]; then
    # The median of the per-round multiples, each taken against the reference run right after it.
    times=$(median_of times_reference)
    echo "median multiple of the reference worker's speed: ${times}x"
    reference_summary=",\"times_reference\":$times"
fi
# The median of the per-round shares of PostgreSQL's ceiling, each measured right after its round.
share=$(median_of share_of_postgres_ceiling)
echo "median share of PostgreSQL's own ceiling (lookup + upsert alone on $(nproc) connections): $share"
rounds_list=$(IFS=,; echo "${round_json[*]}")
echo "{\"jobs\":$jobs,\"partitions\":$partitions,\"rounds\":$rounds,\"jobs_per_s\":$(field jobs_per_s),\"peak_rss_mb\":$peak,\"decryptd_cpu_us_per_job\":$(field decryptd_cpu_us_per_job),\"postgres_cpu_us_per_job\":$(field postgres_cpu_us_per_job),\"cores\":$(nproc)$reference_summary,\"share_of_postgres_ceiling\":$share,\"each_round\":[$rounds_list]}"

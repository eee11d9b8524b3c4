#!/usr/bin/env bash
# Code-job benchmark (figures printed, never a timed test): starts a throwaway PostgreSQL, the
# embedded broker and `decryptd dev-wechat --latency-ms LATENCY` (default 100), then, release build:
#  1. code jobs alone: N code jobs at --exchange-concurrency CONCURRENCY (default 256): jobs/s as a
#     share of what the latency allows (CONCURRENCY / LATENCY), and peak RSS;
#  2. sealed code jobs (API security mode, against a second `dev-wechat --api-security`): jobs/s as a
#     share of what the latency allows (target 0.8), and the worker's CPU per code job beside the plain
#     run's (RSA signing is the cost to watch); `decryptd-bench sealing` prints the same per call alone;
#  3. a 50/50 mixed load of N jobs: when the encrypted half was all durable, against the time the
#     same number of encrypted jobs take alone (4.), so the ratio says how much the code jobs' latency
#     held decryption up (1.0: not at all).
# Each figure is one run per ROUNDS (default 3); the summary is the median. Absolute figures are
# printed beside the host's speed (OpenSSL's single-thread AES floor, as bench-worker.sh does).
# Usage: scripts/bench-codes.sh [JOBS]   (default 40000; LATENCY=ms, CONCURRENCY=n, ROUNDS=n)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-40000}
latency=${LATENCY:-100}
concurrency=${CONCURRENCY:-256}
rounds=${ROUNDS:-3}
for value in "$jobs" "$latency" "$concurrency" "$rounds"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "bench-codes: JOBS, LATENCY, CONCURRENCY and ROUNDS must be positive integers" >&2; exit 2; }
done
partitions=$(( jobs / 8000 + 4 ))

scripts/setup.sh
echo "bench-codes: building (release)" >&2
for product in decryptd decryptd-bench; do
    swift build -c release --product "$product" >/tmp/decryptd-bench-build.log 2>&1 || { cat /tmp/decryptd-bench-build.log >&2; exit 1; }
done
bin_dir=$(swift build -c release --show-bin-path)
bin="$bin_dir/decryptd"
host_speed() { "$bin_dir/decryptd-bench" decrypt --only floor --seconds 1; }

work=$(mktemp -d /tmp/decryptd-bench-codes.XXXXXX)
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    pg_stop BENCH >&2
    rm -rf "$work"
}
trap cleanup EXIT
pg_start BENCH >&2

appid=wx6ede2086ee29a89f
export WECHAT_APPIDS=$appid WECHAT_APP_SECRETS="$appid:bench-secret" DATABASE_URL=$BENCH_URL DECRYPTD_LOG_LEVEL=error
"$bin" dev-wechat --latency-ms "$latency" >"$work/wechat.out" 2>"$work/wechat.err" &
wechat_pid=$!
pids+=("$wechat_pid")
"$bin" dev-wechat --latency-ms "$latency" --api-security "$work/keys.json" >"$work/sealed.out" 2>"$work/sealed.err" &
sealed_pid=$!
pids+=("$sealed_pid")
for _ in $(seq 100); do [ -s "$work/wechat.out" ] && [ -s "$work/sealed.out" ] && break; sleep 0.1; done
export WECHAT_API_URL; WECHAT_API_URL=$(head -n 1 "$work/wechat.out")
sealed_url=$(head -n 1 "$work/sealed.out")
"$bin" migrate >/dev/null

# One run on a fresh broker and empty tables: loadgen KIND JOBS, then run; prints run's summary.
round() {
    local kind=$1 count=$2 broker
    "$bin" dev-broker --topic "wechat.phone.jobs:$partitions" --topic wechat.phone.dlq:2 >"$work/broker.out" 2>/dev/null &
    broker=$!
    for _ in $(seq 100); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
    psql -q "$DATABASE_URL" -c "TRUNCATE members, decrypt_failures, phone_code_exchanges" >/dev/null
    KAFKA_BROKERS=$(head -n 1 "$work/broker.out") "$bin" loadgen --kind "$kind" --jobs "$count" --faults "" --seed "$RANDOM" >/dev/null 2>&1
    KAFKA_BROKERS=$(head -n 1 "$work/broker.out") /usr/bin/time -f "%U %S" -o "$work/cpu" \
        "$bin" run --exit-at-end --progress-interval 0 --exchange-concurrency "$concurrency"
    kill "$broker"; wait "$broker" 2>/dev/null || true
}
# The worker's CPU seconds (user + system) in the last round.
run_cpu() { awk '{ printf "%.2f", $1 + $2 }' "$work/cpu"; }
# Fields of run's summary: jobs/s, peak RSS (MB), and per kind the seconds after
# the first fetch at which the last of that kind was durable.
rate() { sed -nE 's/^decryptd run: [0-9]+ jobs, ([0-9]+) jobs\/s.*/\1/p' <<<"$1"; }
rss() { sed -nE 's/.*peak RSS ([0-9]+) MB.*/\1/p' <<<"$1"; }
durable() { grep -oE "[0-9]+ $2 jobs durable [0-9.]+ s" <<<"$1" | sed -E 's/.* ([0-9.]+) s$/\1/'; }
# CPU seconds the stand-in has used so far: on this machine it shares the worker's cores, which a
# real WeChat does not.
wechat_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/${1:-$wechat_pid}/stat"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

allowed=$(( concurrency * 1000 / latency ))
echo "bench-codes: $jobs jobs, dev-wechat latency $latency ms, --exchange-concurrency $concurrency (the latency allows $allowed jobs/s), $rounds round(s)"
echo "host speed before: $(host_speed)"
shares=() rsses=() ratios=() sealed_shares=() bound_shares=() cpu_ratios=()
for r in $(seq "$rounds"); do
    alone=$(round code "$jobs")
    share=$(awk -v a="$(rate "$alone")" -v m="$allowed" 'BEGIN { printf "%.2f", a / m }')
    shares+=("$share"); rsses+=("$(rss "$alone")")
    plain_cpu=$(run_cpu)
    standin_before=$(wechat_cpu "$sealed_pid")
    sealed=$(WECHAT_API_URL=$sealed_url WECHAT_API_SECURITY_FILE=$work/keys.json round code "$jobs")
    sealed_cpu=$(run_cpu)
    standin_cpu=$(awk -v a="$(wechat_cpu "$sealed_pid")" -v b="$standin_before" 'BEGIN { printf "%.2f", a - b }')
    # On this host the stand-in's own RSA signatures share the worker's cores (a real WeChat's do
    # not): what the CPU allows is the cores over both processes' CPU per job.
    cpu_allows=$(awk -v c="$(nproc)" -v w="$sealed_cpu" -v s="$standin_cpu" -v n="$jobs" 'BEGIN { printf "%.0f", c / ((w + s) / n) }')
    bound=$(( cpu_allows < allowed ? cpu_allows : allowed ))
    sealed_share=$(awk -v a="$(rate "$sealed")" -v m="$allowed" 'BEGIN { printf "%.2f", a / m }')
    sealed_shares+=("$sealed_share")
    bound_share=$(awk -v a="$(rate "$sealed")" -v m="$bound" 'BEGIN { printf "%.2f", a / m }')
    bound_shares+=("$bound_share")
    cpu_ratio=$(awk -v s="$sealed_cpu" -v p="$plain_cpu" 'BEGIN { printf "%.2f", s / p }')
    cpu_ratios+=("$cpu_ratio")
    echo "round $r: sealed code jobs $(rate "$sealed") jobs/s = $sealed_share of $allowed; the CPU allows $cpu_allows on $(nproc) cores" \
         "(worker $sealed_cpu + stand-in $standin_cpu CPU-s), so $bound_share of what latency and CPU allow;" \
         "worker CPU $(awk -v c="$sealed_cpu" -v n="$jobs" 'BEGIN { printf "%.0f", c / n * 1e6 }') µs per sealed job," \
         "$(awk -v c="$plain_cpu" -v n="$jobs" 'BEGIN { printf "%.0f", c / n * 1e6 }') µs per plain one (x$cpu_ratio)"
    cpu_before=$(wechat_cpu)
    mixed=$(round mixed "$jobs")
    cpu_mixed=$(awk -v a="$(wechat_cpu)" -v b="$cpu_before" 'BEGIN { printf "%.1f", a - b }')
    encrypted_jobs=$(grep -oE "[0-9]+ encrypted jobs durable" <<<"$mixed" | cut -d' ' -f1)
    in_mix=$(durable "$mixed" encrypted)
    only=$(round encrypted "$encrypted_jobs")
    alone_s=$(durable "$only" encrypted)
    ratio=$(awk -v m="$in_mix" -v o="$alone_s" 'BEGIN { printf "%.2f", m / o }')
    ratios+=("$ratio")
    echo "round $r: code jobs alone $(rate "$alone") jobs/s = $share of $allowed, peak RSS $(rss "$alone") MB;" \
         "mixed: $encrypted_jobs encrypted jobs durable after ${in_mix} s, alone ${alone_s} s (x$ratio); code half durable after $(durable "$mixed" code) s, dev-wechat used ${cpu_mixed} CPU-s meanwhile"
done
echo "host speed after: $(host_speed)"
share=$(printf '%s\n' "${shares[@]}" | median); ratio=$(printf '%s\n' "${ratios[@]}" | median)
sealed_share=$(printf '%s\n' "${sealed_shares[@]}" | median); cpu_ratio=$(printf '%s\n' "${cpu_ratios[@]}" | median)
bound_share=$(printf '%s\n' "${bound_shares[@]}" | median)
echo "per call alone, one thread: $("$bin_dir/decryptd-bench" sealing --calls 2000 --rate "$allowed")"
peak=$(printf '%s\n' "${rsses[@]}" | sort -n | tail -n 1)
echo "summary: code jobs at $share of what ${latency} ms allows (target 0.8), sealed at $sealed_share" \
     "($bound_share of what the latency and this host's CPU allow; target 0.8)," \
     "sealed jobs cost the worker x$cpu_ratio the CPU of plain ones; peak RSS $peak MB (target < 300);" \
     "encrypted half of a mixed load durable in x$ratio the time alone (target <= 1.25)"
echo "{\"jobs\":$jobs,\"latency_ms\":$latency,\"concurrency\":$concurrency,\"share_of_allowed\":$share,\"sealed_share_of_allowed\":$sealed_share,\"sealed_share_of_cpu_bound\":$bound_share,\"sealed_cpu_ratio\":$cpu_ratio,\"peak_rss_mb\":$peak,\"mixed_encrypted_ratio\":$ratio}"

#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine: installs what is missing, starts a
# throwaway PostgreSQL and the embedded Kafka broker, creates the tables, produces a few thousand
# sample jobs with faults, runs the worker until drained, shows the outcome and the failure
# report, recovers jobs by reprocessing once the missing session keys are stored, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${DEMO_JOBS:-5000}
seed=$RANDOM
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

scripts/setup.sh
step "building decryptd"
swift build --product decryptd >/tmp/decryptd-demo-build.log 2>&1 || { cat /tmp/decryptd-demo-build.log >&2; exit 1; }
tail -n 1 /tmp/decryptd-demo-build.log
bin="$(swift build --show-bin-path)/decryptd"

work=$(mktemp -d /tmp/decryptd-demo.XXXXXX)
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
broker_pid=""
cleanup() {
    step "stopping everything the demo started"
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    pg_stop DEMO
    rm -rf "$work"
}
trap cleanup EXIT

step "starting a throwaway PostgreSQL server"
pg_start DEMO

step "starting the embedded Kafka broker (librdkafka's mock cluster: a real Kafka protocol server on loopback)"
"$bin" dev-broker --topic wechat.phone.jobs:4 --topic wechat.phone.dlq:2 >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
export KAFKA_BROKERS; KAFKA_BROKERS=$(head -n 1 "$work/broker.out")
export DATABASE_URL=$DEMO_URL WECHAT_APPIDS=wx6ede2086ee29a89f DECRYPTD_LOG_LEVEL=warning
echo "broker at $KAFKA_BROKERS, topics wechat.phone.jobs (4 partitions) and wechat.phone.dlq (2)"

step "creating the tables (decryptd migrate)"
"$bin" migrate

step "seeding session keys and producing $jobs jobs with faults (decryptd loadgen)"
echo "Some users have a newer session key stored than the one their payload used (the worker falls back),"
echo "some payloads arrive with damaged base64 (repaired), and a few percent are broken in every way SPEC.md names."
"$bin" loadgen --jobs "$jobs" --seed "$seed"

step "running the worker until every partition is drained (decryptd run --exit-at-end)"
"$bin" run --exit-at-end --progress-interval 0

step "what is in PostgreSQL now"
psql "$DATABASE_URL" -q -c "SELECT count(*) AS members, count(DISTINCT country_code) AS countries, max(to_timestamp(watermark_ts)) AS newest_watermark FROM members"
psql "$DATABASE_URL" -q -c "SELECT reason, count(*) FROM decrypt_failures GROUP BY reason ORDER BY count(*) DESC"

step "which failure types dominate (decryptd report; also --format json and --format html)"
"$bin" report --since 1h

step "reprocessing once the login service has caught up (decryptd reprocess)"
echo "The session_not_found jobs came before their users' session keys were stored. The login service"
echo "catches up (here: the same loadgen command stores the keys it had left out):"
"$bin" loadgen --jobs "$jobs" --seed "$seed" --store-withheld-sessions
echo
echo "'decryptd reprocess' replays the dead-letter topic: successes go to members and resolve their"
echo "failure rows, failures are dead-lettered again with decrypt.attempts + 1. A dry run first, which"
echo "writes nothing, then the real run for the jobs whose keys arrived (--reason session_not_found):"
"$bin" reprocess --dry-run
echo
"$bin" reprocess --reason session_not_found
echo
"$bin" report --since 1h | head -n 1

echo
echo "Done. The same commands run against real Kafka and PostgreSQL: see README (docker-compose.yml)."

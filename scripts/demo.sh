#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine: installs what is missing, starts a
# throwaway PostgreSQL, the embedded Kafka broker and the local stand-in for WeChat's API, creates
# the tables, runs the worker while a few thousand sample jobs of both kinds (encrypted and code)
# with faults are produced, some of them before their session keys are stored (the login race:
# they wait and heal), shows the outcome and the report, recovers jobs by reprocessing once the
# missing session keys are stored, and stops everything it started. WeChat's stand-in runs in API
# security mode (sealed, signed calls; a few forged answers the worker must refuse), and tells stale
# session keys apart with checksession.
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
wechat_pid=""
worker_pid=""
cleanup() {
    step "stopping everything the demo started"
    [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    [ -n "$wechat_pid" ] && kill "$wechat_pid" 2>/dev/null && wait "$wechat_pid" 2>/dev/null
    pg_stop DEMO
    rm -rf "$work"
}
trap cleanup EXIT

step "starting a throwaway PostgreSQL server"
pg_start DEMO

step "starting the embedded Kafka broker (librdkafka's mock cluster: a real Kafka protocol server on loopback)"
"$bin" dev-broker --topic wechat.phone.jobs:4 --topic wechat.phone.dlq:2 --topic wechat.phone.outcomes:2 >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
export KAFKA_BROKERS; KAFKA_BROKERS=$(head -n 1 "$work/broker.out")
echo "broker at $KAFKA_BROKERS, topics wechat.phone.jobs (4 partitions), wechat.phone.dlq (2), wechat.phone.outcomes (2)"

step "starting the local stand-in for WeChat's API (decryptd dev-wechat: stable token, code exchange, checksession; 50 ms per call)"
# Two appids: the first has an app secret, the second is served without one (its code jobs fail
# exchange_not_configured). The secret is demo-only, and never printed by decryptd.
export WECHAT_APPIDS="wx6ede2086ee29a89f,wx00000000unconfigured" WECHAT_APP_SECRETS="wx6ede2086ee29a89f:demo-secret-not-a-real-one"
# API security mode (服务端 API 签名加密): dev-wechat makes fresh keys and writes the worker's key
# file; every exchange is then AES-256-GCM encrypted and RSA-PSS signed both ways, and 2% of the
# answers come from a forger (a key that is not WeChat's): the worker refuses them and retries.
"$bin" dev-wechat --latency-ms 50 --api-security "$work/api-security.json" --forge-share 0.02 >"$work/wechat.out" 2>"$work/wechat.err" &
wechat_pid=$!
for _ in $(seq 100); do [ -s "$work/wechat.out" ] && break; sleep 0.1; done
export WECHAT_API_URL; WECHAT_API_URL=$(head -n 1 "$work/wechat.out")
export DATABASE_URL=$DEMO_URL DECRYPTD_LOG_LEVEL=warning
export WECHAT_API_SECURITY_FILE="$work/api-security.json"
echo "WeChat's API stand-in at $WECHAT_API_URL, in API security mode (the worker's keys: $WECHAT_API_SECURITY_FILE, mode 600)"

step "creating the tables (decryptd migrate)"
"$bin" migrate

step "starting the worker (decryptd run), with waiting jobs kept for 20 s and outcomes announced"
echo "A job whose session key is not stored yet waits in parked_jobs (--park-timeout, 15m by default;"
echo "20 s here so that the demo sees the end of the wait) and is retried as soon as a newer key lands."
"$bin" run --progress-interval 0 --park-timeout 20s --outcomes-topic wechat.phone.outcomes >"$work/run.out" 2>"$work/run.err" &
worker_pid=$!

step "seeding session keys and producing $jobs jobs of both kinds with faults (decryptd loadgen --kind mixed --late-keys 0.05)"
echo "Half are encrypted jobs (encryptedData/iv): some users have a newer session key stored than the one"
echo "their payload used (the worker falls back), some payloads arrive with damaged base64 (repaired)."
echo "5% of the ok ones race their login: their keys are stored 2-8 s after the job (by loadgen, as the"
echo "login service would); the worker parks them and heals each one when its key lands."
echo "Half are code jobs (WeChat's recommended flow): one-time codes the worker exchanges with the API;"
echo "5% meet a transient answer first (busy, rate limit, 503, a reset, a rejected token), retried to success."
echo "A few percent of each kind are broken in every way SPEC.md names."
echo "1% are stale_session_key: the login service missed the user's newest key. Like bad_padding, they"
echo "fail the padding check; WeChat's checksession (asked at their deadline) tells the two apart."
faults="bad_padding=0.02,session_not_found=0.01,invalid_session_key=0.005,invalid_iv=0.005,invalid_ciphertext=0.005,invalid_plaintext=0.005,appid_mismatch=0.005,malformed_job=0.005,code_invalid=0.01,code_expired=0.005,invalid_phone_info=0.005,wechat_error=0.005,exchange_not_configured=0.005,stale_session_key=0.01"
"$bin" loadgen --jobs "$jobs" --seed "$seed" --kind mixed --transient-share 0.05 --unconfigured-appid wx00000000unconfigured \
    --late-keys 0.05 --late-by 2-8s --faults "$faults" --dev-wechat-url "$WECHAT_API_URL"

step "jobs waiting for their session key now (decryptd parked --list)"
echo "The late keys have landed and their jobs healed; these wait for keys that never come (the load's"
echo "session_not_found and bad_padding faults). At their deadline they fail, as they would have at once:"
"$bin" parked --list
for _ in $(seq 120); do
    "$bin" parked --list | grep -qE '^total +0 ' && break
    sleep 0.5
done
kill -TERM "$worker_pid"
wait "$worker_pid" || { cat "$work/run.err" >&2; exit 1; }
worker_pid=""
cat "$work/run.out"

step "what is in PostgreSQL now"
psql "$DATABASE_URL" -q -c "SELECT count(*) AS members, count(DISTINCT country_code) AS countries, max(to_timestamp(watermark_ts)) AS newest_watermark FROM members"
psql "$DATABASE_URL" -q -c "SELECT reason, job_kind, count(*) FROM decrypt_failures GROUP BY reason, job_kind ORDER BY count(*) DESC"
psql "$DATABASE_URL" -q -c "SELECT outcome, count(*) AS exchanged_codes FROM phone_code_exchanges GROUP BY outcome ORDER BY count(*) DESC"
echo "What the WeChat stand-in saw (codes_reused: codes exchanged twice, and gateway_errors: sealed calls it"
echo "refused, must be 0; forged_answers were refused by the worker and retried; checksessions by errcode):"
curl -fsS "$WECHAT_API_URL/dev/stats" 2>/dev/null || python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "$WECHAT_API_URL/dev/stats"
echo

step "which failure types dominate, and the jobs that waited (decryptd report; also --format json and --format html)"
"$bin" report --since 1h

step "reprocessing once the login service has caught up (decryptd reprocess)"
echo "The session_not_found jobs came before their users' session keys were stored. The login service"
echo "catches up (here: the same loadgen command stores the keys it had left out):"
"$bin" loadgen --jobs "$jobs" --seed "$seed" --kind mixed --transient-share 0.05 --unconfigured-appid wx00000000unconfigured --late-keys 0.05 \
    --faults "$faults" --store-withheld-sessions
echo
echo "'decryptd reprocess' replays the dead-letter topic: successes go to members and resolve their"
echo "failure rows, failures are dead-lettered again with decrypt.attempts + 1. A dry run first, which"
echo "writes nothing, then the real run for the jobs whose keys arrived (--reason session_not_found)."
echo "Code jobs cannot be recovered (their codes have expired): reprocess passes them over as skipped."
"$bin" reprocess --dry-run
echo
"$bin" reprocess --reason session_not_found
echo
"$bin" report --since 1h | head -n 1

echo
echo "Done. The same commands run against real Kafka and PostgreSQL: see README (docker-compose.yml)."

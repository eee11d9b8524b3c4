#!/usr/bin/env bash
# Randomized fault trials: scripts/chaos.sh [TRIALS] [SEED]   (default 20 trials, a random seed)
#
# Each trial is one long run of the worker binary over a load that keeps arriving (encrypted and
# code jobs with every failure code), on its own embedded broker, schema and WeChat stand-in, and
# a throwaway PostgreSQL server this script starts. Every fault kind hits each trial once, in a
# random order and at a random moment: kill -9 and a restart; PostgreSQL stopped (fast) and
# started; PostgreSQL frozen (SIGSTOP) past the keepalive timeout and thawed; the broker down and
# up; a privilege the worker needs revoked on each of its tables (SELECT on wechat_sessions, INSERT
# on members and decrypt_failures, SELECT on phone_code_exchanges: it must exit 1 each time; after
# the grant a restart). After
# each trial it checks that every job is a member or exactly one failure row, that every failure
# has its dead letter, and that every offset is committed. It prints a line per trial, the faults
# injected, and "N/N trials: nothing lost, nothing duplicated". The same SEED repeats a run.
# Exit status: 0 when every trial held, 1 otherwise (the test log is kept and named), 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

trials=${1:-20}
seed=${2:-}
if ! [[ $trials =~ ^[1-9][0-9]{0,3}$ ]]; then
    echo "chaos: TRIALS is a number of trials from 1 to 9999, not '$trials' (usage: scripts/chaos.sh [TRIALS] [SEED])" >&2
    exit 2
fi
if [ -n "$seed" ] && ! [[ $seed =~ ^[0-9]{1,18}$ ]]; then
    echo "chaos: SEED is a whole number, not '$seed' (usage: scripts/chaos.sh [TRIALS] [SEED])" >&2
    exit 2
fi

scripts/setup.sh
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
log=$(mktemp /tmp/decryptd-chaos.XXXXXX.log)
trap 'pg_stop CHAOS >/dev/null' EXIT
pg_start CHAOS
export DECRYPTD_TEST_CHAOS_DATABASE_URL="$CHAOS_URL"
export DECRYPTD_TEST_CHAOS_PG_CONTROL="$PWD/scripts/pg-control.sh $CHAOS_DIR $CHAOS_PORT"
export DECRYPTD_CHAOS_TRIALS="$trials"
if [ -n "$seed" ]; then export DECRYPTD_CHAOS_SEED="$seed"; fi

swift build --build-tests
echo "chaos: $trials trials of about 100 s each; the test's whole output goes to $log" >&2
# The suite appends its report lines here as they come (swift test passes output on only at the end).
report=$(mktemp /tmp/decryptd-chaos-report.XXXXXX)
export DECRYPTD_CHAOS_REPORT="$report"
tail -n +1 -f "$report" &
follower=$!
set +e
swift test --skip-build --filter ChaosTests >"$log" 2>&1
status=$?
set -e
sleep 1
kill "$follower" 2>/dev/null || true
rm -f "$report"
if [ "$status" != 0 ]; then
    grep -E '✘|↳ trial' "$log" | head -n 40 >&2
    echo "chaos: a trial did not hold (exit $status); the log is $log" >&2
    exit 1
fi
rm -f "$log"

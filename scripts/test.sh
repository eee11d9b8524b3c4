#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, checks the formatting
# (.swift-format, strict: drift fails the run), starts four throwaway PostgreSQL servers (one is
# stopped and restarted by the outage test, one serves TLS, one is stopped and frozen by the chaos
# trials), builds, runs every test (unit, integration, end to end, fuzz, three chaos trials), fuzzes each parser with libFuzzer for a few seconds, runs the
# suites again under ThreadSanitizer and AddressSanitizer, and stops the servers.
#
# scripts/test.sh --quick: the formatting and the pure suites only (parsers, decryption, consumer
# state, offsets, batches, settings, the exchanger over an in-memory transport, pacing, slots):
# no server, no broker, no child process; under a minute after a build. For a developer's loop.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pure suites, by module and type (swift test --filter takes a regular expression).
quick_suites=(
    "PhoneDecryptionTests\\."
    "WeChatAPITests\\."
    "DecryptdStoreTests\\.OutcomeBatchTests"
    "DecryptdCLITests\\.SettingTests"
    "KafkaClientTests\\.(KafkaTimeoutTests|TopicPartitionTests|KafkaPropertySettingTests|KafkaMessageTests|OffsetTrackerTests|ConsumerStateTests)"
    "DecryptdWorkerTests\\.(WorkerLifecycleTests|SlotLimitTests|ReprocessSourceTests|LoadGeneratorTests|UserSlotsTests|DeadLetterTests|PendingJobTests|WorkBatchTests|DeadLetterSenderTests|BackoffTests|BatchOutcomeTests|BlockingQueueTests|OutcomeTallyTests|RendezvousTests|ExchangeStageTests|ParkingTests)"
)

case "${1:-}" in
    "") ;;
    --quick)
        scripts/setup.sh
        swift format lint --strict --recursive Sources Tests Plugins Fuzz Package.swift
        swift build --build-tests
        filter=$(IFS='|'; echo "${quick_suites[*]}")
        # No database URL and no CI: a suite that needs a service could not run here anyway.
        exec env -u CI -u DECRYPTD_TEST_DATABASE_URL swift test --skip-build --filter "$filter"
        ;;
    *)
        echo "usage: scripts/test.sh [--quick]" >&2
        exit 2
        ;;
esac

scripts/setup.sh
echo "test: swift format lint --strict" >&2
swift format lint --strict --recursive Sources Tests Plugins Fuzz Package.swift
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
trap 'pg_stop CHAOS; pg_stop TLS; pg_stop OUTAGE; pg_stop MAIN' EXIT
pg_start MAIN
pg_start OUTAGE
pg_start TLS
pg_start CHAOS
pg_enable_tls TLS

# Integration tests read these; in CI (CI=true) a test that needs them fails rather than skips.
export DECRYPTD_TEST_DATABASE_URL="$MAIN_URL"
export DECRYPTD_TEST_OUTAGE_DATABASE_URL="$OUTAGE_URL"
export DECRYPTD_TEST_OUTAGE_PG_CONTROL="$PWD/scripts/pg-control.sh $OUTAGE_DIR $OUTAGE_PORT"
export DECRYPTD_TEST_TLS_DATABASE_URL="$TLS_TLS_URL" DECRYPTD_TEST_WRONG_CA="$TLS_WRONG_CA"
# A few randomized fault trials (scripts/chaos.sh runs as many as asked; docs/chaos.md has a long run).
export DECRYPTD_TEST_CHAOS_DATABASE_URL="$CHAOS_URL"
export DECRYPTD_TEST_CHAOS_PG_CONTROL="$PWD/scripts/pg-control.sh $CHAOS_DIR $CHAOS_PORT"
export DECRYPTD_CHAOS_TRIALS=3

swift build --build-tests
swift test

# Coverage-guided fuzzing of every outside-input parser, briefly (docs/fuzzing.md has long runs).
scripts/fuzz.sh all 10
# The thread hand-offs under ThreadSanitizer, the parsers and pure parts under AddressSanitizer.
scripts/sanitize.sh all

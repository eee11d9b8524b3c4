#!/usr/bin/env bash
# The suites under the sanitizers, each build in a folder of its own, without jemalloc (the
# sanitizers bring their own allocator; DECRYPTD_SANITIZER keeps it out of the package):
#   thread:  ThreadSanitizer over the suites that exercise every thread hand-off (TSAN_SUITES below)
#   address: AddressSanitizer over the unit and parser suites (ASAN_SUITES below)
# librdkafka's C11 threads are routed through pthreads by scripts/sanitizers/c11threads.c, preloaded
# into these runs only (the sanitizers see neither its threads nor its locks otherwise; see the
# file). Any report fails the run (halt_on_error); suppressions, if ever needed, go in
# scripts/sanitizers/*.supp with a comment saying why.
# Usage: scripts/sanitize.sh [thread|address|all]. Needs the PostgreSQL servers scripts/test.sh
# starts (it calls this script with them running).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
case "$which" in thread | address | all) ;; *) echo "sanitize: use thread, address or all" >&2; exit 2 ;; esac

# Every stage of the worker, the consumer's rebalances and back-pressure, the dead-letter sender,
# the exchange stage (code exchanges and session checks), the parked-jobs stage's checksession
# round, and reprocessing: each hand-off between threads the pipeline has.
TSAN_SUITES='ConsumerGroupTests|SlotLimitTests|BackPressureTests|ProducerTests|ConsumerStateTests|DeadLetterSenderTests|BlockingQueueTests|RendezvousTests|BackoffTests|WorkerEndToEndTests|CodeJobEndToEndTests/mixedLoad|ReprocessTests|PhoneCodeExchangerTests|SealedExchangeTests|ExchangeStageTests|StaleKeyEndToEndTests|AccessTokenCacheTests|HTTPEndpointServerTests'
# Everything that needs no service: the parsers and the pipeline's pure parts.
ASAN_SUITES='PhoneDecryptionTests|SlotLimitTests|WeChatAPITests|OffsetTrackerTests|ConsumerStateTests|WorkBatchTests|UserSlotsTests|PendingJobTests|BatchOutcomeTests|DeadLetterTests|DeadLetterSenderTests|WorkerLifecycleTests|OutcomeTallyTests|LoadGeneratorTests|ReprocessSourceTests|SettingTests|HTTPEndpointServerTests'

shim=.build/sanitizers/libc11threads.so
mkdir -p "$(dirname "$shim")"
cc -O1 -g -shared -fPIC -o "$shim" scripts/sanitizers/c11threads.c -lpthread

run() {
    local sanitizer=$1 suites=$2 scratch=.build-$1
    echo "sanitize: building with --sanitize=$sanitizer (in $scratch)" >&2
    DECRYPTD_SANITIZER=$sanitizer swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch"
    echo "sanitize: $sanitizer: $suites" >&2
    # The preloaded shim applies to the test binary and the decryptd children it starts.
    DECRYPTD_SANITIZER=$sanitizer LD_PRELOAD="$PWD/$shim" \
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4" \
        ASAN_OPTIONS="halt_on_error=1 detect_leaks=0 detect_stack_use_after_return=0" \
        swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" --filter "$suites"
}
if [ "$which" = thread ] || [ "$which" = all ]; then run thread "$TSAN_SUITES"; fi
if [ "$which" = address ] || [ "$which" = all ]; then run address "$ASAN_SUITES"; fi

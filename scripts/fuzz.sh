#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that sees outside input, with libFuzzer.
# Usage: scripts/fuzz.sh [TARGET|all] [SECONDS]   (default: all, 10 seconds each; RUNS=N stops a
# target after N executions instead, within SECONDS)
#
# Builds the targets in Fuzz/ (release, -sanitize=fuzzer,address, in .build-fuzz; DECRYPTD_FUZZ
# adds them to the package) and runs each for SECONDS on a scratch copy of its checked-in seed
# corpus, Fuzz/corpus/TARGET (the known-answer vectors and real-world shapes; keep what a long run
# finds interesting by running with KEEP_CORPUS=1). Each target also checks properties (see its
# file). Prints one line per target, `TARGET: N execs, C crashes`; a crashing input is saved as
# Fuzz/crashes/TARGET-crash-<sha1> (add it to the corpus with the fix). Exits 1 on any crash.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(FuzzJobValues FuzzPlaintext FuzzLenientBase64 FuzzDecryptRequest FuzzWeChatAnswers FuzzHTTPRequest FuzzDeadLetterHeaders FuzzSealedAnswers)
which=${1:-all}
seconds=${2:-10}
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: SECONDS must be a positive whole number" >&2; exit 2; }
[[ -z "${RUNS:-}" || "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: RUNS must be a positive whole number" >&2; exit 2; }
if [ "$which" = all ]; then targets=("${all[@]}"); else
    [[ " ${all[*]} " == *" $which "* ]] || { echo "fuzz: unknown target $which (one of: ${all[*]}, all)" >&2; exit 2; }
    targets=("$which")
fi

export DECRYPTD_FUZZ=1
build=(swift build -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld)
for target in "${targets[@]}"; do
    "${build[@]}" --product "$target" >/tmp/decryptd-fuzz-build.log 2>&1 || { cat /tmp/decryptd-fuzz-build.log >&2; exit 1; }
done
bin=$("${build[@]}" --show-bin-path)
mkdir -p Fuzz/crashes
failed=0
for target in "${targets[@]}"; do
    work=$(mktemp -d /tmp/decryptd-fuzz.XXXXXX)
    corpus=Fuzz/corpus/$target
    if [ "${KEEP_CORPUS:-0}" != 1 ]; then cp -r "$corpus" "$work/corpus"; corpus=$work/corpus; fi
    count_crashes() { find Fuzz/crashes -name "$target-*" | wc -l; }
    before=$(count_crashes)
    status=0
    ASAN_OPTIONS=detect_leaks=0 "$bin/$target" -max_total_time="$seconds" ${RUNS:+-runs=$RUNS} -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="Fuzz/crashes/$target-" "$corpus" >"$work/log" 2>&1 || status=$?
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$work/log")
    crashes=$(( $(count_crashes) - before ))
    if [ "$status" != 0 ] && [ "$crashes" = 0 ]; then crashes=1; fi
    echo "$target: ${execs:-0} execs, $crashes crashes"
    if [ "$crashes" != 0 ]; then failed=1; tail -n 40 "$work/log" >&2; fi
    rm -rf "$work"
done
exit "$failed"

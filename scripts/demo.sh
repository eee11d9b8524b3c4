#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine: installs what is missing, builds,
# generates sample phone payloads with every kind of fault, decrypts them with `decryptd decrypt`,
# and prints the outcome. (The full Kafka -> PostgreSQL worker demo replaces this when `run` lands.)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "demo: building (debug)"
swift build 2>&1 | tail -n 1
bin=$(swift build --show-bin-path)

work=$(mktemp -d /tmp/decryptd-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$bin/decryptd-bench" sample --count 30 >"$work/input.jsonl"
"$bin/decryptd" decrypt <"$work/input.jsonl" >"$work/output.jsonl"

echo
echo "demo: decrypted $(wc -l <"$work/input.jsonl") synthetic payloads; first lines of output:"
head -n 4 "$work/output.jsonl" | sed 's/^/  /'
echo
echo "demo: outcomes"
sed -E 's/.*"ok":true.*/ok/; s/.*"reason":"([a-z_]+)".*/\1/' "$work/output.jsonl" | sort | uniq -c | sort -rn | sed 's/^/  /'
echo
echo "demo: every failure has a stable reason code; see README 'Failure reasons'."

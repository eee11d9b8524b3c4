#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, starts a throwaway
# PostgreSQL server, builds, runs every test (unit, integration, fuzz), and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
pg_start
trap pg_stop EXIT

# Integration tests read these; in CI (CI=true) a test that needs them fails rather than skips.
export DECRYPTD_TEST_DATABASE_URL="$DATABASE_URL"
export DECRYPTD_TEST_PG_CONTROL="$PWD/scripts/pg-control.sh"

swift build --build-tests
swift test

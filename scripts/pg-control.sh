#!/usr/bin/env bash
# Stops or starts the throwaway server that scripts/lib/postgres.sh started (outage tests).
# Needs PG_BIN, PG_DIR and PG_PORT in the environment, as pg_start exports them.
set -euo pipefail
# shellcheck source=lib/postgres.sh
source "$(dirname "$0")/lib/postgres.sh"
pg_server "${1:?usage: pg-control.sh stop|start}"

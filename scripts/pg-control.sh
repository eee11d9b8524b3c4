#!/usr/bin/env bash
# Stops or starts a throwaway server that scripts/lib/postgres.sh started (outage and chaos tests).
# Usage: pg-control.sh DIR PORT stop|start|freeze|thaw
set -euo pipefail
# shellcheck source=lib/postgres.sh
source "$(dirname "$0")/lib/postgres.sh"
pg_server "${1:?usage: pg-control.sh DIR PORT stop|start|freeze|thaw}" "${2:?port}" "${3:?stop, start, freeze or thaw}"

#!/usr/bin/env bash
# Stop the private PostgreSQL server of scripts/postgres-up.sh (its data directory is kept).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_postgres-env.sh"
if [[ -n "$bin" && -f "$data/PG_VERSION" ]]; then
    "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
fi

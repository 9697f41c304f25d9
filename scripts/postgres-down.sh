#!/usr/bin/env bash
# Stop the private PostgreSQL server of scripts/postgres-up.sh (its data directory is kept).
set -euo pipefail
if [[ "$(id -u)" -eq 0 ]]; then
    data="${SCOPEFLOW_PG_DIR:-/var/lib/scopeflow-pg}"
    as_owner=(runuser -u postgres --)
else
    data="${SCOPEFLOW_PG_DIR:-/tmp/scopeflow-pg}"
    as_owner=()
fi
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [[ -n "$bin" && -f "$data/PG_VERSION" ]]; then
    "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
fi

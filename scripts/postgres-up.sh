#!/usr/bin/env bash
# Start a private PostgreSQL server for scopeflow's service tests and print its URL.
#
# Own data directory ($SCOPEFLOW_PG_DIR, default /var/lib/scopeflow-pg; /tmp/scopeflow-pg when
# not root), listening on 127.0.0.1:$SCOPEFLOW_PG_PORT (default 55432) only, trust
# authentication for the `postgres` role (local test server: nothing else can reach it). A
# system PostgreSQL, if any, is left alone. Idempotent: a running server is reused.
# Stop it with scripts/postgres-down.sh.
#
#   export SCOPEFLOW_TEST_POSTGRES_URL="$(bash scripts/postgres-up.sh)"
set -euo pipefail

port="${SCOPEFLOW_PG_PORT:-55432}"
source "$(dirname "${BASH_SOURCE[0]}")/_postgres-env.sh"
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
    echo "postgres-up: no PostgreSQL server found; run scripts/system-deps.sh" >&2
    exit 1
fi
mkdir -p "$data"
if [[ "$(id -u)" -eq 0 ]]; then
    chown postgres:postgres "$data"
    chmod 700 "$data"
fi
if [[ ! -f "$data/PG_VERSION" ]]; then
    "${as_owner[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >"$data.initdb.log" 2>&1 \
        || { cat "$data.initdb.log" >&2; exit 1; }
fi
if ! "${as_owner[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $data" start >/dev/null \
        || { tail -20 "$data/server.log" >&2; exit 1; }
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"

# Sourced by postgres-up.sh and postgres-down.sh: where the private server lives and who owns it.
#   data      its data directory ($SCOPEFLOW_PG_DIR; /var/lib/scopeflow-pg as root, else
#             /tmp/scopeflow-pg)
#   as_owner  the command prefix that runs PostgreSQL's tools as the data directory's owner
#   bin       the newest installed PostgreSQL's bin/ folder (empty when there is none)
if [[ "$(id -u)" -eq 0 ]]; then
    data="${SCOPEFLOW_PG_DIR:-/var/lib/scopeflow-pg}"
    as_owner=(runuser -u postgres --)
else
    data="${SCOPEFLOW_PG_DIR:-/tmp/scopeflow-pg}"
    as_owner=()
fi
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"

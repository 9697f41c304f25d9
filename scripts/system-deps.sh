#!/usr/bin/env bash
# Install the system packages scopeflow's integration tests need on Debian 12:
# a single-node Slurm (slurmctld, slurmd, client tools, munge), Slurm
# accounting (slurmdbd + MariaDB, so that `sacct` works) and OpenMPI
# (mpirun plus the headers mpi4py builds against), PostgreSQL (the service's tests) and
# Chromium (the web UI's tests, headless through Playwright).
#
# Idempotent: when everything is already installed it only checks dpkg and
# exits (no `apt-get update`, well under a second). Must run as root (or via
# sudo). Services are NOT started here: scripts/slurm-up.sh does that.
#
#   scripts/system-deps.sh              # install what is missing
#   SCOPEFLOW_NO_SLURMDBD=1 scripts/system-deps.sh   # skip slurmdbd/MariaDB
set -euo pipefail

packages=(
    munge
    slurmctld
    slurmd
    slurm-client
    openmpi-bin
    libopenmpi-dev
    # mpi4py is built from source by pip/uv when no wheel fits: needs a C compiler
    gcc
    # used by slurm-up.sh to see whether a daemon is running
    procps
    # the service's database tests run on SQLite and on a real PostgreSQL (postgres-up.sh)
    postgresql
    # headless browser of the web UI's end-to-end tests (driven by Playwright)
    chromium
)
if [[ "${SCOPEFLOW_NO_SLURMDBD:-0}" != "1" ]]; then
    packages+=(slurmdbd mariadb-server)
fi

missing=()
for pkg in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    SUDO=(sudo)
fi

echo "system-deps: installing ${missing[*]}"

# Keep the packages' maintainer scripts from starting munge/slurm/mariadb
# (there is no systemd in a container; slurm-up.sh starts the daemons itself
# with our own configuration). Only done when no policy-rc.d exists already.
policy=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if [[ "$created_policy" == "1" ]]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq -o DPkg::Lock::Timeout=300
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 \
    "${missing[@]}" >/dev/null
echo "system-deps: done"

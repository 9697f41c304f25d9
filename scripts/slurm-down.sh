#!/usr/bin/env bash
# Stop the single-node Slurm that scripts/slurm-up.sh started: cancel all
# jobs, then stop slurmd, slurmctld, slurmdbd, the private MariaDB and munged
# (munged only if slurm-up.sh started it, not a system one it reused).
# Only daemons recorded in $SCOPEFLOW_SLURM_DIR/run/*.pid are stopped.
# Idempotent: stopping what is already stopped is a no-op and exits 0.
# Leaves config and state (job ids, accounting database) in place; remove
# $SCOPEFLOW_SLURM_DIR to start from scratch.
#
# Environment: SLURM_CONF [/etc/slurm/slurm.conf], SCOPEFLOW_SLURM_DIR
# [/var/lib/scopeflow-slurm] - the same values slurm-up.sh was given.
set -euo pipefail

SLURM_CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
export SLURM_CONF
STATE_DIR="${SCOPEFLOW_SLURM_DIR:-/var/lib/scopeflow-slurm}"
RUN_DIR="$STATE_DIR/run"

log() { printf 'slurm-down: %s\n' "$*"; }

if [[ "$(id -u)" -ne 0 ]]; then
    echo "slurm-down: must run as root (try: sudo $0)" >&2
    exit 1
fi

# alive PID: process exists and is not a zombie (a container's init may be slow
# to reap daemons that exited)
alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != "Z" ]]
}

# pid_of NAME: pid from $RUN_DIR/NAME.pid if that process is alive
pid_of() {
    local pidfile="$RUN_DIR/$1.pid" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(head -n 1 "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    echo "$pid"
}

# stop NAME: SIGTERM, wait up to 20 s, then SIGKILL
stop() {
    local name=$1 pid i
    if ! pid="$(pid_of "$name")"; then
        rm -f "$RUN_DIR/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 80; i++)); do
        alive "$pid" || break
        sleep 0.25
    done
    if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$name.pid"
    log "stopped $name (pid $pid)"
}

# 1. cancel jobs while slurmctld and slurmd still run, so job steps end cleanly
if pid_of slurmctld >/dev/null && timeout 10 scontrol ping >/dev/null 2>&1; then
    mapfile -t jobs < <(timeout 10 squeue -h -o '%A' 2>/dev/null || true)
    if ((${#jobs[@]} > 0)); then
        log "cancelling ${#jobs[@]} job(s): ${jobs[*]}"
        scancel "${jobs[@]}" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            [[ -z "$(timeout 10 squeue -h -t R,CG,PD -o '%A' 2>/dev/null || true)" ]] && break
            sleep 0.5
        done
    fi
fi

# 2. daemons, in reverse start order
had_slurmd=0
if pid_of slurmd >/dev/null; then
    had_slurmd=1
fi
stop slurmd
stop slurmctld
stop slurmdbd
stop mariadb
stop munged

# 3. job steps left behind by our slurmd (slurmstepd is not a daemon we own a
#    pid file for); normally none, since the jobs were cancelled above
strays=()
if ((had_slurmd)); then
    mapfile -t strays < <(ps -eo pid=,ppid=,comm= | awk '$2 == 1 && $3 == "slurmstepd" {print $1}')
fi
if ((${#strays[@]} > 0)); then
    log "killing orphaned slurmstepd: ${strays[*]}"
    kill -KILL "${strays[@]}" 2>/dev/null || true
fi

log "Slurm is down"

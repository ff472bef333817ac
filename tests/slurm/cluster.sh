#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing the SLURM profile for real.
#
#   tests/slurm/cluster.sh up      install what is missing (Debian packages), start it
#   tests/slurm/cluster.sh down    stop it and remove its state (fine when nothing runs)
#   tests/slurm/cluster.sh env     export lines for a shell: eval "$(tests/slurm/cluster.sh env)"
#
# Needs root on Debian (apt-get; the daemons run as root, jobs as the submitting user).
# Everything it writes lives in one folder, $RFW2S_SLURM_STATE (default
# /tmp/rfw2s-slurm): slurm.conf, gres.conf, spool and state folders, logs, pid files, the
# munge key, seed and socket. Nothing under /etc is read or written by it: clients and
# daemons find the config through SLURM_CONF, and the munge socket through
# AuthInfo=socket=... in slurm.conf. (Installing the `munge` package makes the package
# itself create /etc/munge/munge.key; this cluster never uses that key.)
#
# Exit status of `up`: 0 running (the node idle), 3 this machine cannot host it (not
# root, no apt-get, packages not installable), 1 it was installed but did not come up
# (the daemons' log tails are printed).
#
# Settings (environment): RFW2S_SLURM_STATE, RFW2S_SLURM_PARTITION (default rfw2s),
# RFW2S_SLURM_CTLD_PORT / RFW2S_SLURM_SLURMD_PORT (6817 / 6818: change them if a real
# Slurm runs here), RFW2S_SLURM_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

STATE=${RFW2S_SLURM_STATE:-/tmp/rfw2s-slurm}
PARTITION=${RFW2S_SLURM_PARTITION:-rfw2s}
CTLD_PORT=${RFW2S_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${RFW2S_SLURM_SLURMD_PORT:-6818}
TIMEOUT=${RFW2S_SLURM_TIMEOUT:-60}
NODE=localhost
CONF=$STATE/etc/slurm.conf
SOCKET=$STATE/munge/run/munge.socket
MARKER=$STATE/.rfw2s-slurm   # `down` deletes only a folder that `up` made
PACKAGES=(slurmctld slurmd munge)

die() { echo "cluster.sh: $*" >&2; exit "${EXIT:-1}"; }
unsupported() { EXIT=3 die "$@"; }

# The pid in a pid file if that process is alive and is the daemon named.
running_pid() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name" || return 1
    echo "$pid"
}

stop_pid() {  # TERM, then KILL after 10 s
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# The node's state, or nothing if slurmctld does not answer (never fails: set -e).
node_state() { { SLURM_CONF=$CONF timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null || true; } | head -n 1; }

log_tails() {
    local f
    for f in "$STATE"/munge/munged.log "$STATE"/log/slurmctld.log "$STATE"/log/slurmd.log; do
        [[ -f $f ]] || continue
        echo "---- last lines of $f" >&2
        tail -n 25 "$f" >&2
    done
}

stop_daemons() {
    local pid i
    if running_pid "$STATE/run/slurmctld.pid" slurmctld >/dev/null; then
        # Cancel every job first, so that no job's slurmstepd outlives slurmd.
        SLURM_CONF=$CONF timeout 10 scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -z $(SLURM_CONF=$CONF timeout 5 squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    if pid=$(running_pid "$STATE/run/slurmd.pid" slurmd); then stop_pid "$pid"; fi
    if pid=$(running_pid "$STATE/run/slurmctld.pid" slurmctld); then stop_pid "$pid"; fi
    if pid=$(running_pid "$STATE/munge/run/munged.pid" munged); then stop_pid "$pid"; fi
}

down() {
    [[ -e $STATE ]] || return 0
    [[ -e $MARKER ]] || die "$STATE was not made by cluster.sh up (no $MARKER); not touching it"
    stop_daemons
    rm -rf -- "$STATE"
}

install_packages() {
    local missing=() cmd
    for cmd in slurmctld slurmd munged sinfo sbatch squeue scontrol; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || unsupported "missing ${missing[*]} and no apt-get to install ${PACKAGES[*]}"
    echo "cluster.sh: installing ${PACKAGES[*]} (missing: ${missing[*]})" >&2
    # Without an init system (a container) the packages' daemons are not started by apt
    # (invoke-rc.d blocks them); ours are started below, on our own config.
    export DEBIAN_FRONTEND=noninteractive
    local log=/tmp/rfw2s-slurm-apt.$$.log
    if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$log" 2>&1; then
        apt-get update -q >>"$log" 2>&1 || true   # a clean machine may have no package lists
        if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1; then
            tail -n 20 "$log" >&2
            rm -f "$log"
            unsupported "apt-get could not install ${PACKAGES[*]}"
        fi
    fi
    rm -f "$log"
}

write_config() {
    # The node as slurmd sees this machine (CPUs, sockets, cores, threads, memory), named
    # localhost: a node configured with more than the hardware has is refused (INVAL).
    local hw
    hw=$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //')
    [[ $hw == CPUs=* ]] || die "slurmd -C printed no node description: $hw"
    cat >"$CONF" <<EOF
# Written by tests/slurm/cluster.sh: a one-node test cluster, state in $STATE.
ClusterName=rfw2s-test
SlurmctldHost=$NODE
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
PlugStackConfig=$STATE/etc/plugstack.conf
# No cgroups (no systemd here): processes tracked by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# No accounting (no slurmdbd, no MariaDB): sacct answers "accounting storage is
# disabled", so Snakemake's SLURM plugin must query job states with squeue
# (--slurm-status-command squeue), which sees a finished job for MinJobAge seconds.
# An hour also keeps every job's record for the checks in run-tiny.sh (scontrol show job).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
SchedulerType=sched/backfill
# CPUs and memory are consumable: a job asking for more than the node has is refused.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Refuse at submission a job no partition can run (too many CPUs, too much memory),
# instead of leaving it pending forever.
EnforcePartLimits=ALL
ReturnToService=2
KillWait=5
MailProg=/bin/true
# One GPU-type generic resource, so that a job asking for a GPU (the plugin sends
# --gpus=1 for resources: gpu=1) is accepted and scheduled one at a time, as on a GPU
# node; see gres.conf for why it needs a device file.
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 $hw Gres=gpu:1 State=UNKNOWN
# Not the default partition: a job that names no partition is refused by sbatch
# ("No partition specified or system default partition"), like on clusters that
# require one.
PartitionName=$PARTITION Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    # Slurm drops a GPU without a device file ("Removing file-less GPU"), and checks that
    # the file is a character or block device. /dev/null is one that exists everywhere;
    # nothing opens it: without cgroups no device is constrained. A job gets
    # CUDA_VISIBLE_DEVICES=0, harmless on a machine without CUDA.
    echo "NodeName=$NODE Name=gpu File=/dev/null" >"$STATE/etc/gres.conf"
    : >"$STATE/etc/plugstack.conf"
}

write_srun_shim() {
    # Inside each job, Snakemake's slurm-jobstep plugin (0.6.1) runs the rule through
    # `srun` after deleting every SLURM_* variable, SLURM_CONF included: on a real
    # cluster srun then reads /etc/slurm/slurm.conf, here it would find no config
    # ("Could not establish a configuration source"). Rather than write under /etc,
    # `env` puts this folder first on PATH, with an srun that restores SLURM_CONF only.
    local real
    real=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$STATE/bin" | paste -sd:) command -v srun) ||
        die "no srun on PATH"
    mkdir -p "$STATE/bin"
    # shellcheck disable=SC2016  # $SLURM_CONF and "$@" are the shim's own
    printf '#!/bin/sh\n# Written by tests/slurm/cluster.sh (see write_srun_shim there).\nSLURM_CONF=${SLURM_CONF:-%s}\nexport SLURM_CONF\nexec %s "$@"\n' \
        "$CONF" "$real" >"$STATE/bin/srun"
    chmod 755 "$STATE/bin/srun"
}

start_munge() {
    # munged checks permissions: the key private to its owner, the socket's folder
    # searchable by everyone, no folder on the way writable by others.
    mkdir -p "$STATE/munge/key" "$STATE/munge/run"
    chmod 755 "$STATE" "$STATE/munge" "$STATE/munge/run"
    chmod 700 "$STATE/munge/key"
    head -c 1024 /dev/urandom >"$STATE/munge/key/munge.key"
    chmod 400 "$STATE/munge/key/munge.key"
    munged --key-file="$STATE/munge/key/munge.key" --socket="$SOCKET" \
        --pid-file="$STATE/munge/run/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/key/munged.seed" ||
        { log_tails; stop_daemons; die "munged did not start (log above)"; }
    munge -S "$SOCKET" -n | unmunge -S "$SOCKET" >/dev/null ||
        { log_tails; stop_daemons; die "munge credentials do not round-trip (log above)"; }
}

up() {
    [[ $(id -u) -eq 0 ]] || unsupported "needs root: it installs Debian packages and runs slurmctld, slurmd and munged as root"
    install_packages
    if [[ -e $MARKER ]] && [[ $(node_state) == idle* || $(node_state) == mix* || $(node_state) == alloc* ]]; then
        echo "cluster.sh: already up ($CONF)" >&2
        return 0
    fi
    down   # a stale or half-started state from an earlier run
    mkdir -p "$STATE"/{etc,ctld,spool,log,run}
    touch "$MARKER"
    write_config
    write_srun_shim
    start_munge
    export SLURM_CONF=$CONF
    slurmctld || { log_tails; stop_daemons; die "slurmctld did not start (log above)"; }
    slurmd -N "$NODE" || { log_tails; stop_daemons; die "slurmd did not start (log above)"; }
    local start=$SECONDS state=""
    while ((SECONDS - start < TIMEOUT)); do
        state=$(node_state)
        [[ $state == idle ]] && break
        sleep 0.5
    done
    if [[ $state != idle ]]; then
        log_tails
        stop_daemons
        die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}'); daemons stopped, logs kept in $STATE"
    fi
    echo "cluster.sh: up in $((SECONDS - start))s after start: node $NODE idle, partition $PARTITION ($CONF)" >&2
}

env_lines() {
    echo "export SLURM_CONF=$CONF"
    echo "export RFW2S_SLURM_STATE=$STATE"
    echo "export RFW2S_SLURM_PARTITION=$PARTITION"
    # shellcheck disable=SC2016  # $PATH is expanded by the shell that evals this
    echo "export PATH=$STATE/bin:\$PATH"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    env) env_lines ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac

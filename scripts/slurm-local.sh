#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the `cluster` tests and for trying --launcher slurm by hand:
#   sudo scripts/slurm-local.sh start   # installs nothing: needs Debian's slurm-wlm and munge (apt-get install)
#   sudo scripts/slurm-local.sh stop    # stops the daemons and removes the state
# It writes /etc/slurm/slurm.conf for this host (its CPU count and memory, one partition "debug"), starts munged,
# slurmctld and slurmd without systemd or cgroups (proctrack/linuxproc), and waits until `sinfo` shows the node
# idle. Runs as root (the daemons do); state, logs and spool live in $SLURM_LOCAL_DIR (default /tmp/slurm-local).
set -euo pipefail

STATE="${SLURM_LOCAL_DIR:-/tmp/slurm-local}"
CONF=/etc/slurm/slurm.conf
HOST="$(hostname -s)"

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "slurm-local: $1 is missing: apt-get install slurm-wlm munge (Debian), then run this again" >&2
        exit 2
    }
}

start() {
    [ "$(id -u)" = 0 ] || { echo "slurm-local: run as root (the Slurm and munge daemons need it)" >&2; exit 2; }
    need munged; need slurmctld; need slurmd; need sinfo
    mkdir -p "$STATE"/{state,spool,log} /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none;
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    local cpus mem
    cpus="$(nproc)"
    mem="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"  # Linux only, as Debian's Slurm is
    mkdir -p "$(dirname "$CONF")"
    cat >"$CONF" <<EOF
# written by scripts/slurm-local.sh: a one-node cluster for tests
ClusterName=cnnbench-local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then
            echo "slurm-local: node $HOST idle ($cpus CPUs, $mem MB); conf $CONF, logs $STATE/log"
            return 0
        fi
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm-local: the node did not come up; see $STATE/log/slurmctld.log and slurmd.log" >&2
    sinfo >&2 || true
    exit 1
}

stop() {
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    sleep 1
    rm -rf "$STATE"
    echo "slurm-local: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

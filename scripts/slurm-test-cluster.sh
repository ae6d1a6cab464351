#!/usr/bin/env bash
# A one-node Slurm cluster on loopback for the `slurm` tests: `start` writes a minimal
# slurm.conf, starts munge, slurmctld and slurmd (as root) and waits until `sinfo` shows the
# node idle; `stop` kills them. No accounting (no slurmdbd): `sacct` does not work here, which
# is why jepardy reads job states from squeue/scontrol and the jobs' own result files.
# Installs nothing: the CI installs `slurm-wlm munge` with apt-get first.
#   scripts/slurm-test-cluster.sh start|stop|status
set -euo pipefail

CONF_DIR=${SLURM_CONF_DIR:-/etc/slurm}
CONF=$CONF_DIR/slurm.conf
SPOOL=/var/spool/slurm-jepardy
LOG_DIR=/var/log/slurm-jepardy
PID_DIR=/run/slurm-jepardy
NODE=$(hostname -s)
WAIT_S=${SLURM_START_WAIT_S:-60}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # Half the machine's memory, so the node never goes down for "low RealMemory".
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 2048 ))
    mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOG_DIR" "$PID_DIR"
    cat >"$CONF" <<EOF
# Written by jepardy scripts/slurm-test-cluster.sh: a one-node test cluster on loopback.
ClusterName=jepardy-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$PID_DIR/slurmctld.pid
SlurmdPidFile=$PID_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    # Slurm 22.05 refuses to start without a cgroup.conf only when a cgroup plugin is used;
    # an empty one keeps its warnings out of the logs.
    [ -e "$CONF_DIR/cgroup.conf" ] || echo "CgroupPlugin=autodetect" >"$CONF_DIR/cgroup.conf"
}

start_munge() {
    local socket=/run/munge/munge.socket.2
    if [ -S "$socket" ] && pgrep -x munged >/dev/null; then return; fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged --force
    else
        /usr/sbin/munged --force
    fi
    for _ in $(seq 50); do [ -S "$socket" ] && return; sleep 0.1; done
    echo "munged did not create $socket" >&2
    exit 1
}

node_idle() {
    timeout 5 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'
}

start() {
    command -v slurmctld >/dev/null || { echo "slurmctld not installed (apt-get install slurm-wlm munge)" >&2; exit 1; }
    stop_daemons quiet
    write_conf
    start_munge
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    local deadline=$(( $(date +%s) + WAIT_S ))
    until node_idle; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "node $NODE not idle after ${WAIT_S}s:" >&2
            timeout 5 sinfo -N >&2 || true
            tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
            exit 1
        fi
        # A node left down/drained by an earlier cluster comes back at once.
        timeout 5 scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        sleep 0.5
    done
    echo "slurm cluster up: node $NODE idle ($(nproc) CPUs), partition debug"
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld; do
        pid=$(cat "$PID_DIR/$name.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$PID_DIR/$name.pid"
    done
    [ "${1:-}" = quiet ] || echo "slurm cluster stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop_daemons ;;
    status) timeout 5 sinfo -N ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Start a single-node SLURM on this machine (munged + slurmctld + slurmd), for lubench's
# `slurm`-marked tests and CI. CPU-only partition `debug` (Default=YES), no GRES, no
# accounting database, cons_tres with CR_Core_Memory so memory requests pack tasks onto the node.
#
# Needs root and Debian's `slurm-wlm` + `munge` packages (see .ci/run). Idempotent: when the
# node already answers `sinfo` as idle/mixed/allocated, nothing is done. Stop with
# stop-cluster.sh. Exit codes: 0 cluster up, 3 cannot start here (reason on stderr).
set -euo pipefail

conf_dir=/etc/slurm
conf=$conf_dir/slurm.conf
marker="# written by lubench tests/slurm/start-cluster.sh"
log_dir=/var/log/slurm
state_dir=/var/lib/slurm
timeout_s=${LUBENCH_SLURM_START_TIMEOUT:-60}

die() { echo "start-cluster: $*" >&2; exit 3; }

node_state() {  # sinfo waits ~10 s for a controller that is not there: ping first
  scontrol ping 2>/dev/null | grep -q ' is UP' || return 0
  sinfo -h -N -o '%T' 2>/dev/null | head -n 1
}

for cmd in munged slurmctld slurmd sinfo scontrol; do
  command -v "$cmd" >/dev/null || die "'$cmd' not found (install slurm-wlm and munge)"
done
case "$(node_state)" in
  idle|mixed|allocated|completing) exit 0 ;;  # already up: a second call is a no-op
esac
[ "$(id -u)" = 0 ] || die "must run as root to start munged/slurmd"

if [ -e "$conf" ] && ! grep -qF "$marker" "$conf"; then
  die "$conf exists and was not written by this script; not touching a real cluster's config"
fi

# munge: the key exists once the package is installed; create it if not.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n </dev/null >/dev/null 2>&1 || die "munged did not start (see /var/log/munge)"
fi

# slurm.conf for this node: `slurmd -C` reports the hardware SLURM will verify against.
host=$(hostname -s)
node_line=$(slurmd -C | head -n 1)
case "$node_line" in NodeName=*) ;; *) die "slurmd -C gave no node line: $node_line" ;; esac
mkdir -p "$conf_dir" "$log_dir" "$state_dir/slurmctld" "$state_dir/slurmd"
chown slurm:slurm "$log_dir" "$state_dir/slurmctld"
cat >"$conf" <<CONF
$marker
ClusterName=lubench
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$state_dir/slurmctld
SlurmdSpoolDir=$state_dir/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
$node_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }  # pid file → process alive
running /run/slurmctld.pid || slurmctld
running /run/slurmd.pid || slurmd
for _ in $(seq $((timeout_s * 2))); do
  case "$(node_state)" in
    idle|mixed|allocated) exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
die "node not idle after ${timeout_s}s: sinfo says '$(node_state)' (see $log_dir)"

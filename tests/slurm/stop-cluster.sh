#!/usr/bin/env bash
# Stop what start-cluster.sh started: cancel every job (and wait for them to go), then
# slurmd and slurmctld, then munged, by their pid files. Safe to call when nothing runs.
set -uo pipefail
if scontrol ping 2>/dev/null | grep -q ' is UP'; then
  scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  for _ in $(seq 100); do
    [ -z "$(squeue -h -t PD,R,CG,CF,S 2>/dev/null)" ] && break
    sleep 0.1
  done
fi
stop() {  # pidfile...: TERM all, wait up to 10 s, then KILL
  local f pid pids=()
  for f in "$@"; do
    pid=$(cat "$f" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$f"
  done
  for _ in $(seq 100); do
    local alive=0 p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  return 0
}
stop /run/slurmd.pid /run/slurmctld.pid
stop /run/munge/munged.pid
exit 0

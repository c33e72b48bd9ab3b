#!/usr/bin/env bash
# Runs N processes of main.py on this machine, each with its own CPU devices, coordinated over 127.0.0.1: the
# multi-host code paths (jax.distributed, per-process data shards, global arrays, multi-process Orbax checkpoints)
# without a cluster. Needs bash >= 5.1.
#
#   launch/local.sh N CONFIG [main.py flags...]
#   launch/local.sh 2 configs/tiny/mae.py --workdir=/tmp/mae_2proc --config.total_steps=20
#
# Environment: DEVICES_PER_PROCESS (default 4), PORT (default: a free one), PYTHON (default: python3),
# LOG_DIR (default: the current directory; process i > 0 writes LOG_DIR/local_process_<i>.log, process 0 prints),
# DRY_RUN=1 prints the commands instead of running them, KILL_AFTER (default 30) is the grace in seconds between
# SIGTERM and SIGKILL when the launcher stops the other processes. The exit status is the first failing process's
# (a failure stops the others: SIGTERM, then SIGKILL after KILL_AFTER seconds, so that a hung or frozen process
# cannot keep the job alive), 75 if the run was preempted (every process saves the agreed step and exits 75 on its
# own), 130 after a Ctrl-C (SIGINT: forwarded to every process as a preemption notice, so that all of them save the
# same step and exit; a second Ctrl-C kills them at once, leaving the committed checkpoints intact), else 0.
set -euo pipefail

if [[ $# -lt 2 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N CONFIG [main.py flags...]   (N >= 1 processes)" >&2
  exit 2
fi
n=$1
config=$2
shift 2
devices=${DEVICES_PER_PROCESS:-4}
python=${PYTHON:-python3}
log_dir=${LOG_DIR:-.}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null && kill -CONT "$pid" 2>/dev/null || true; done
  (sleep "${KILL_AFTER:-30}"; for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done) &
}
interrupted=0
# shellcheck disable=SC2329  # called by the INT trap
interrupt() {  # first Ctrl-C: every process saves an agreed step (JAX's preemption service); second: stop at once
  if ((interrupted)); then
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    echo "interrupted again: stopped at once without saving; the committed checkpoints are intact" >&2
    exit 130
  fi
  if ((${#pids[@]} == 0)); then
    echo "interrupted before any process started" >&2
    exit 130
  fi
  interrupted=1
  echo "interrupt: every process saves the current step, then stops (Ctrl-C again stops at once)" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap interrupt INT
trap cleanup TERM
# After the traps: a Ctrl-C while this command runs ends the launcher when it returns (without a trap, bash drops a
# SIGINT that arrives while it waits for a foreground child that does not itself die of it).
if [[ -z "${PORT:-}" ]]; then
  PORT=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi

for ((i = 0; i < n; i++)); do
  cmd=(env "XLA_FLAGS=${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices" JAX_PLATFORMS=cpu
       "$python" "$here/main.py" "--config=$config" "--coordinator_address=127.0.0.1:$PORT"
       "--num_processes=$n" "--process_id=$i" "$@")
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
    continue
  fi
  if ((i == 0)); then
    "${cmd[@]}" &
  else
    "${cmd[@]}" >"$log_dir/local_process_$i.log" 2>&1 &
  fi
  pids+=($!)
done

preempted=75
status=0
live=("${pids[@]}")
while ((${#live[@]} > 0)); do
  code=0
  finished=
  wait -n -p finished "${live[@]}" || code=$?    # whichever process ends first: a failure stops the rest at once
  [[ -n "${finished:-}" ]] || continue               # the wait was cut short by a signal the traps handled
  for i in "${!live[@]}"; do [[ "${live[$i]}" == "$finished" ]] && unset "live[$i]"; done
  if ((code == preempted || code == 130)); then
    ((code == 130)) && interrupted=1       # a process stopped by Ctrl-C (the terminal sent it to every process)
    ((status == 0)) && status=$preempted   # the others are saving the same step: let them finish
  elif ((code != 0 && (status == 0 || status == preempted))); then
    status=$code
    cleanup
  fi
done
((interrupted && (status == 0 || status == preempted))) && status=130
exit $status

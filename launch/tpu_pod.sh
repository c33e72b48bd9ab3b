#!/usr/bin/env bash
# ssl_jax on a Cloud TPU slice: create it (queued resource), put the code on every worker, install, run the same
# `python main.py ...` on all workers at once, follow the logs, tear down. jax.distributed is initialised from the
# TPU environment on each worker (`ssl_jax.runtime.distributed`).
#
#   launch/tpu_pod.sh create                      # queued resource -> TPU VM slice, waits until it is ACTIVE
#   launch/tpu_pod.sh setup                       # copy this checkout's HEAD to every worker and install it
#   launch/tpu_pod.sh run CONFIG WORKDIR [main.py flags...]     # WORKDIR: gs://...
#   launch/tpu_pod.sh logs                        # follow worker 0's log
#   launch/tpu_pod.sh stop                        # stop the run on every worker (SIGTERM: it checkpoints first)
#   launch/tpu_pod.sh delete                      # delete the slice and its queued resource
#
# Environment: TPU_NAME (default ssl-jax), ZONE (default us-central2-b), PROJECT (default: gcloud's), ACCELERATOR
# (default v4-32), RUNTIME (default tpu-ubuntu2204-base), SPOT=1 for spot capacity, DRY_RUN=1 to print the gcloud
# commands instead of running them.
set -euo pipefail

name=${TPU_NAME:-ssl-jax}
zone=${ZONE:-us-central2-b}
accelerator=${ACCELERATOR:-v4-32}
runtime=${RUNTIME:-tpu-ubuntu2204-base}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
project_flag=()
if [[ -n "${PROJECT:-}" ]]; then
  project_flag=("--project=$PROJECT")
fi

gc() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf 'gcloud'
    printf ' %q' "$@"
    echo
  else
    gcloud "$@"
  fi
}

on_all_workers() {
  gc compute tpus tpu-vm ssh "$name" "--zone=$zone" "${project_flag[@]}" --worker=all "--command=$1"
}

usage() {
  sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
action=$1
shift
case "$action" in
  create)
    spot=()
    if [[ "${SPOT:-0}" == 1 ]]; then spot=(--spot); fi
    gc compute tpus queued-resources create "$name-qr" "--node-id=$name" "--zone=$zone" "${project_flag[@]}" \
      "--accelerator-type=$accelerator" "--runtime-version=$runtime" "${spot[@]}"
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
      until [[ "$(gcloud compute tpus queued-resources describe "$name-qr" "--zone=$zone" "${project_flag[@]}" \
                  --format='value(state.state)')" == ACTIVE ]]; do
        sleep 30
      done
    fi
    ;;
  setup)
    # The committed tree (git archive HEAD: no virtual environments, workdirs or uncommitted edits).
    tarball=$(mktemp --suffix=.tar.gz)
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
      echo "git -C $here archive --format=tar.gz -o $tarball HEAD"
    else
      git -C "$here" archive --format=tar.gz -o "$tarball" HEAD
    fi
    gc compute tpus tpu-vm scp "$tarball" "$name:~/ssl_jax.tar.gz" "--zone=$zone" "${project_flag[@]}" --worker=all
    on_all_workers "mkdir -p ~/ssl_jax && tar -xzf ~/ssl_jax.tar.gz -C ~/ssl_jax && cd ~/ssl_jax && \
python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
    ;;
  run)
    [[ $# -ge 2 ]] || usage
    config=$1
    workdir=$2
    shift 2
    args=$(printf ' %q' "--config=$config" "--workdir=$workdir" "$@")
    on_all_workers "cd ~/ssl_jax && SSL_JAX_DISTRIBUTED=1 nohup .venv/bin/python main.py$args > ~/ssl_jax/run.log 2>&1 &"
    ;;
  logs)
    gc compute tpus tpu-vm ssh "$name" "--zone=$zone" "${project_flag[@]}" --worker=0 "--command=tail -f ~/ssl_jax/run.log"
    ;;
  stop)
    on_all_workers "pkill -TERM -f 'python main.py' || true"
    ;;
  delete)
    gc compute tpus queued-resources delete "$name-qr" "--zone=$zone" "${project_flag[@]}" --force --quiet
    ;;
  *)
    usage
    ;;
esac

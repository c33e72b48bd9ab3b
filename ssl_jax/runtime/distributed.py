"""Multi-process (multi-host) start-up: JAX's multi-controller runtime, initialised once, before any device is used.

One process per host (TPU VM worker, GPU node) or per GPU; every process runs the same `python main.py ...`; XLA's
collectives (ICI on TPUs, NCCL on GPUs, Gloo on CPUs) connect them. `initialize` starts `jax.distributed` when the
run has several processes:

- explicitly: `--coordinator_address=host:port --num_processes=N --process_id=i` (what `launch/local.sh` passes);
- on a Slurm job step with several tasks (`srun`, see `launch/gpu_slurm.sbatch`), on a multi-host Cloud TPU slice
  (`TPU_WORKER_HOSTNAMES` lists several workers), or with `SSL_JAX_DISTRIBUTED=1` (launch/tpu_pod.sh sets it):
  `jax.distributed.initialize()` reads the cluster's environment (Slurm variables, the TPU metadata) itself.

A single process does nothing here.

Bounded waits (`config.distributed`, passed here): every process must join within `initialization_timeout_s`; a
process that stops sending heartbeats (dead, hung, or frozen by SIGSTOP) for `heartbeat_timeout_s` is declared
dead by the coordination service, which then stops every other process with an error, so that a job blocked in a
collective on a lost peer ends instead of hanging until the scheduler's time limit; `shutdown_timeout_s` bounds the
exit barrier. Checkpoint writes and their host barriers are bounded by `config.ckpt_timeout_s`.
"""

import os

import jax


def cluster_kind() -> str | None:
  """"env" (`SSL_JAX_DISTRIBUTED=1`, set by launch/tpu_pod.sh), "slurm" or "tpu" when the environment is a
  multi-process job JAX configures itself, else None."""
  if os.environ.get("SSL_JAX_DISTRIBUTED") == "1":
    return "env"
  if "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in os.environ:
    return "slurm"
  if len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
    return "tpu"
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, initialization_timeout_s: int = 300, heartbeat_timeout_s: int = 100,
               shutdown_timeout_s: int = 300) -> bool:
  """Starts `jax.distributed` for a multi-process run (see the module docstring); returns whether it did.

  Raises:
    ValueError: an incomplete explicit setting (all three of address, count and id are needed).
  """
  timeouts = dict(initialization_timeout=initialization_timeout_s, heartbeat_timeout_seconds=heartbeat_timeout_s,
                  shutdown_timeout_seconds=shutdown_timeout_s)
  if min(timeouts.values()) <= 0:
    raise ValueError(f"config.distributed timeouts must be positive, got {timeouts}.")
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ValueError("a multi-process run needs all of --coordinator_address, --num_processes and --process_id "
                       f"(got {coordinator_address!r}, {num_processes!r}, {process_id!r}).")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} must be in [0, --num_processes={num_processes}).")
    if num_processes == 1:
      return False
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id, **timeouts)
    return True
  if cluster_kind() is not None:
    jax.distributed.initialize(**timeouts)
    return True
  return False

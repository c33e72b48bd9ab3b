"""Multi-process (multi-host) start-up: JAX's multi-controller runtime, initialised once, before any device is used.

One process per host (TPU VM worker, GPU node) or per GPU; every process runs the same `python main.py ...`; XLA's
collectives (ICI on TPUs, NCCL on GPUs, Gloo on CPUs) connect them. `initialize` starts `jax.distributed` when the
run has several processes:

- explicitly: `--coordinator_address=host:port --num_processes=N --process_id=i` (what `launch/local.sh` passes);
- on a Slurm job step with several tasks (`srun`, see `launch/gpu_slurm.sbatch`), on a multi-host Cloud TPU slice
  (`TPU_WORKER_HOSTNAMES` lists several workers), or with `SSL_JAX_DISTRIBUTED=1` (launch/tpu_pod.sh sets it):
  `jax.distributed.initialize()` reads the cluster's environment (Slurm variables, the TPU metadata) itself.

A single process does nothing here.
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
               process_id: int | None = None) -> bool:
  """Starts `jax.distributed` for a multi-process run (see the module docstring); returns whether it did.

  Raises:
    ValueError: an incomplete explicit setting (all three of address, count and id are needed).
  """
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ValueError("a multi-process run needs all of --coordinator_address, --num_processes and --process_id "
                       f"(got {coordinator_address!r}, {num_processes!r}, {process_id!r}).")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} must be in [0, --num_processes={num_processes}).")
    if num_processes == 1:
      return False
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    return True
  if cluster_kind() is not None:
    jax.distributed.initialize()
    return True
  return False

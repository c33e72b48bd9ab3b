"""Pretrains a self-supervised model: `python main.py --config=configs/tiny/mae.py --workdir=/tmp/mae`."""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ssl_jax.runtime import host_memory

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (e.g. configs/mae_vit_b.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory (local or gs://) for checkpoints and metrics.")
_RESTART = flags.DEFINE_bool("restart", False, "Archive a previous run in --workdir to <workdir>/archive/<time>/ "
                             "and start afresh, instead of resuming it (or refusing it if its config differs).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-process runs: host:port of process 0 "
                                   "(launch/local.sh sets it; Slurm and multi-host TPU slices are detected).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process runs: the number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index, from 0.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Compile the train step for the configured mesh with abstract inputs "
                              "and print the parameter shardings and per-device memory; read no data, write nothing.")
_TOPOLOGY = flags.DEFINE_string("topology", None, "With --dry_run: compile for this TPU topology (e.g. v5e:4x4, "
                                "v5p:2x2x2) instead of the local devices; needs libtpu (the tpu extra), not a TPU.")
# Exit codes besides 0 and 1 (an error, with its traceback): 75 preempted (SIGTERM; the step is saved), 130 Ctrl-C
# (the step is saved, or a second Ctrl-C stopped at once), 73 another run holds the workdir (nothing was written).
WORKDIR_BUSY_EXIT_CODE = 73

flags.mark_flags_as_required(["config"])
flags.register_validator("workdir", lambda v: v is not None or flags.FLAGS.dry_run,
                         "--workdir is required (unless --dry_run)")
flags.register_validator("topology", lambda v: v is None or flags.FLAGS.dry_run, "--topology needs --dry_run")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)   # Orbax and Grain log every file at INFO
  if _DRY_RUN.value:
    from ssl_jax import dry_run
    dry_run.check(_CONFIG.value, topology=_TOPOLOGY.value)
    return
  from ssl_jax.runtime import distributed   # after flag parsing, so that --help is fast
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,   # before any device is used
                         **_CONFIG.value.distributed.to_dict())
  from ssl_jax.runtime import preemption
  from ssl_jax import train
  from ssl_jax.runtime import workdir
  try:
    train.run(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
  except preemption.Preempted as e:          # SIGTERM or Ctrl-C: the step is saved (75 or 130)
    print(str(e), flush=True)
    sys.exit(e.exit_code)
  except workdir.Busy as e:                  # another live run holds the workdir: nothing was written
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(WORKDIR_BUSY_EXIT_CODE)
  except KeyboardInterrupt:                  # Ctrl-C before training started or during the final evaluation
    print("\ninterrupted outside the training steps: the committed checkpoints are intact; rerun the same command "
          "to resume", file=sys.stderr, flush=True)
    sys.exit(preemption.INTERRUPTED_EXIT_CODE)


if __name__ == "__main__":
  host_memory.restart_with_huge_pages()   # first: glibc's huge pages for XLA:CPU's buffers (ssl_jax/runtime/host_memory.py)
  app.run(main)

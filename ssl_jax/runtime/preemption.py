"""Preemption notices (SIGTERM, or JAX's preemption sync point with several processes) and Ctrl-C (SIGINT).

With several processes, `jax.distributed` runs a preemption service that catches SIGTERM on any host and makes every
host agree on the step at which to save; `reached_preemption_sync_point(step)` turns True on all of them at that
same step. A single process has no such service, so a SIGTERM handler sets a flag checked at the next step.

Ctrl-C is a preemption the user asked for: the first SIGINT makes the trainer save the current step, wait for the
write to commit and stop with `Interrupted` (exit code 130, `INTERRUPTED_EXIT_CODE`); with several processes it is
turned into a SIGTERM to this process, so that JAX's service makes every process save the same step. A second
SIGINT while that happens stops the process at once (`os._exit`, exit code 130): a checkpoint write in flight is
abandoned in its temporary directory, which Orbax never restores, so every committed checkpoint stays intact.
"""

import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

# The exit code of a run that saved a checkpoint because it was preempted: EX_TEMPFAIL, "try again later".
PREEMPTED_EXIT_CODE = 75
# The exit code of a run stopped by Ctrl-C (saved, or stopped at once by a second Ctrl-C): 128 + SIGINT, as shells.
INTERRUPTED_EXIT_CODE = 130


class Preempted(Exception):
  """Raised by the trainer after the checkpoint of `step` is committed; the same command resumes the run."""
  exit_code = PREEMPTED_EXIT_CODE
  message = "preempted: checkpoint of step {step} saved; rerun the same command to resume"

  def __init__(self, step: int):
    super().__init__(self.message.format(step=step))
    self.step = step


class Interrupted(Preempted):
  """Ctrl-C: raised by the trainer after the checkpoint of `step` is committed."""
  exit_code = INTERRUPTED_EXIT_CODE
  message = "interrupted at step {step} (its checkpoint is saved); rerun the same command to resume"


class Watcher:
  """`watcher(step)` is True once a preemption notice or a Ctrl-C has arrived (and, multi-process, all hosts agreed
  on `step`); `interrupted` says whether it was a Ctrl-C."""

  def __init__(self):
    self._flag = threading.Event()
    self._previous = {}
    self._multi = jax.process_count() > 1
    self.interrupted = False
    if threading.current_thread() is threading.main_thread():
      if not self._multi:
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda *_: self._flag.set())
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_interrupt)

  def _on_interrupt(self, signum, frame) -> None:
    del signum, frame
    if self.interrupted:
      os.write(2, b"\ninterrupted again: stopped at once without saving; the committed checkpoints are intact "
                  b"(rerun the same command to resume from the newest)\n")
      os._exit(INTERRUPTED_EXIT_CODE)
    self.interrupted = True
    os.write(2, b"\ninterrupt: saving the current step, then stopping (Ctrl-C again stops at once without saving)\n")
    if self._multi:
      os.kill(os.getpid(), signal.SIGTERM)     # JAX's preemption service: every process saves the same step
    else:
      self._flag.set()

  def __call__(self, step: int) -> bool:
    if self._multi:
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:       # the preemption service is disabled
        return False
    return self._flag.is_set()

  def close(self) -> None:
    """Restores the previous handlers (a Ctrl-C after this raises KeyboardInterrupt again)."""
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

"""Preemption notices: SIGTERM (single process) or JAX's preemption sync point (multi-process).

With several processes, `jax.distributed` runs a preemption service that catches SIGTERM on any host and makes every
host agree on the step at which to save; `reached_preemption_sync_point(step)` turns True on all of them at that
same step. A single process has no such service, so a SIGTERM handler sets a flag checked at the next step.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils

# The exit code of a run that saved a checkpoint because it was preempted: EX_TEMPFAIL, "try again later".
PREEMPTED_EXIT_CODE = 75


class Preempted(Exception):
  """Raised by the trainer after the checkpoint of `step` is committed; the same command resumes the run."""

  def __init__(self, step: int):
    super().__init__(f"preempted: checkpoint of step {step} saved; rerun the same command to resume")
    self.step = step


class Watcher:
  """`watcher(step)` is True once a preemption notice has arrived (and, multi-process, all hosts agreed on `step`)."""

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None
    self._multi = jax.process_count() > 1
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._flag.set())

  def __call__(self, step: int) -> bool:
    if self._multi:
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:       # the preemption service is disabled
        return False
    return self._flag.is_set()

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

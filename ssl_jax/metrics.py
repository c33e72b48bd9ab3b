"""Metric writers (JSON lines, TensorBoard without TensorFlow) and the progress line. Process 0 writes; others no-op."""

import contextlib
import json
import math
import os
import sys
import time

import jax
from etils import epath


def _format_eta(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _step_of(line: str) -> int | None:
  """The step of a metrics line, or None for a line cut short by a crash."""
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


class MetricsWriteError(RuntimeError):
  """metrics.jsonl or the TensorBoard events could not be written (disk full, permissions...)."""


def _write_error(what, e: OSError) -> MetricsWriteError:
  return MetricsWriteError(f"writing {what} failed ({type(e).__name__}: {e}). The committed checkpoints are intact; "
                           "free space or fix the directory, then rerun the same command to resume.")


class _Events:
  """TensorBoard event files, written synchronously (tensorboardX's `SummaryWriter` writes from a thread of its own,
  where a full disk ends the thread silently and the next flush waits forever): a failed write raises
  `MetricsWriteError` here."""

  def __init__(self, logdir: str, purge_step: int | None):
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.event_pb2 import SessionLog
    from tensorboardX.record_writer import directory_check
    self._logdir, self._event = logdir, Event
    with self._raising():
      directory_check(logdir)
      self._writer = EventsWriter(os.path.join(logdir, "events"))
      if purge_step is not None:   # hides the events of steps >= purge_step written before the resume, as TF does
        self._writer.write_event(Event(step=purge_step, file_version="brain.Event:2"))
        self._writer.write_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
      self._writer.flush()

  @contextlib.contextmanager
  def _raising(self):
    try:
      yield
    except OSError as e:
      raise _write_error(f"TensorBoard events to {self._logdir}", e) from e

  def write(self, summaries: list, step: int) -> None:
    wall_time = time.time()
    with self._raising():
      for summary in summaries:
        self._writer.write_event(self._event(wall_time=wall_time, step=int(step), summary=summary))
      self._writer.flush()

  def close(self) -> None:
    with self._raising():
      self._writer.close()


class Writer:
  """Writes one `{"step": s, **metrics}` line per step to `workdir/metrics.jsonl`, and the scalars to
  `workdir/tensorboard/`.

  `write(step, metrics)` adds to the step's record (training metrics, then an evaluation of the same step) and
  `flush()` appends it as one line; the trainer flushes every step it logs, before that step's checkpoint is saved.
  A record for the step of the last line (the final evaluation, after the last step's training metrics were
  flushed and checkpointed) is merged into that line, the file replaced atomically. So steps appear once each and
  in order. On resume from step `resume_step`, lines of later steps (work that is being
  redone) and a line cut short by a crash are dropped first, and the file is replaced atomically (a crash during
  that rewrite leaves the old file), so it reads as one uninterrupted run. A failed write raises
  `MetricsWriteError`.
  """

  def __init__(self, workdir: str, *, resume_step: int = 0, tensorboard: bool = True):
    self.active = jax.process_index() == 0
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._lines: list[str] = []
    self._pending: dict | None = None
    self._tb = None
    if not self.active:
      return
    try:
      if self.path.exists():
        kept = [l for l in self.path.read_text().splitlines()
                if _step_of(l) is not None and _step_of(l) <= resume_step]
        self._lines = [l + "\n" for l in kept]
        self._replace("".join(self._lines))
    except OSError as e:
      raise _write_error(self.path, e) from e
    if tensorboard:
      self._tb = _Events(str(epath.Path(workdir) / "tensorboard"), purge_step=resume_step + 1)

  def _replace(self, text: str) -> None:
    """The file's whole content, atomically where the storage allows (object stores write whole objects anyway)."""
    if "://" in str(self.path):
      self.path.write_text(text)
      return
    tmp = f"{self.path}.tmp"
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)

  def records(self) -> list[dict]:
    """Every line written so far (process 0), including those kept from before a resume."""
    return [json.loads(l) for l in self._lines]

  def write(self, step: int, metrics: dict) -> None:
    """Adds `metrics` to the record of `step` (written by `flush`); a later step flushes the earlier one first."""
    if not self.active:
      return
    if self._pending is not None and self._pending["step"] != int(step):
      self.flush()
    if self._pending is None:
      self._pending = {"step": int(step)}
    self._pending.update({k: float(v) for k, v in metrics.items()})

  def flush(self) -> None:
    """Appends the pending step's line to metrics.jsonl and its scalars to TensorBoard."""
    if not self.active or self._pending is None:
      return
    record, self._pending = self._pending, None
    amend = bool(self._lines) and _step_of(self._lines[-1]) == record["step"]
    line = json.dumps({**json.loads(self._lines[-1]), **record} if amend else record) + "\n"
    lines = self._lines[:-1] + [line] if amend else self._lines + [line]
    try:
      if amend or "://" in str(self.path):   # the step's line again (an evaluation after a resume); object stores
        self._replace("".join(lines))       # cannot append
      else:
        with open(self.path, "a") as f:
          f.write(line)
    except OSError as e:
      raise _write_error(self.path, e) from e
    self._lines = lines
    if self._tb is not None:
      from tensorboardX import summary
      self._tb.write([summary.scalar(k, v) for k, v in record.items() if k != "step"], record["step"])

  def image(self, tag: str, image, step: int) -> None:
    """An RGB uint8 `[H, W, 3]` image to TensorBoard (process 0)."""
    if self.active and self._tb is not None:
      from tensorboardX import summary
      self._tb.write([summary.image(tag, image, dataformats="HWC")], step)

  def close(self) -> None:
    """Flushes the pending record and closes the event file."""
    try:
      self.flush()
    finally:
      if self._tb is not None:
        tb, self._tb = self._tb, None
        tb.close()


class ExampleLog:
  """`workdir/example_ids/process_<i>.jsonl`: the example ids each step consumed on this process (a debug aid, on
  with `config.debug.log_example_ids`), truncated to `resume_step` on resume like metrics.jsonl."""

  def __init__(self, workdir: str, *, resume_step: int = 0):
    folder = epath.Path(workdir) / "example_ids"
    folder.mkdir(parents=True, exist_ok=True)
    self.path = folder / f"process_{jax.process_index()}.jsonl"
    kept = []
    if self.path.exists():
      kept = [l + "\n" for l in self.path.read_text().splitlines()
              if _step_of(l) is not None and _step_of(l) <= resume_step]
    self.path.write_text("".join(kept))
    self._file = open(self.path, "a")

  def write(self, step: int, ids) -> None:
    self._file.write(json.dumps({"step": int(step), "ids": [int(i) for i in ids]}) + "\n")
    self._file.flush()

  def close(self) -> None:
    self._file.close()


class Progress:
  """Prints `step s/T | loss | lr | examples/s | ETA` from the wall time between calls."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int):
    self.total, self.batch = total_steps, batch_size
    self._last_step, self._last_time = start_step, time.perf_counter()

  def restart(self, step: int) -> float:
    """Measures from now and `step` on; returns the seconds since the previous start."""
    now = time.perf_counter()
    elapsed, self._last_step, self._last_time = now - self._last_time, step, now
    return elapsed

  def __call__(self, step: int, metrics: dict) -> dict:
    """Prints the line; returns `{"examples_per_s": ...}`, or {} when no step has passed since the last call."""
    now = time.perf_counter()
    steps, seconds = step - self._last_step, max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    measured = {"examples_per_s": steps * self.batch / seconds} if steps > 0 else {}
    if jax.process_index() == 0:
      speed = f"{measured['examples_per_s']:,.0f} ex/s" if measured else "- ex/s"
      eta = _format_eta((self.total - step) * seconds / steps) if measured else "?"
      print(f"step {step}/{self.total} | loss {metrics.get('loss', float('nan')):.4f} | "
            f"lr {metrics.get('lr', float('nan')):.3e} | {speed} | ETA {eta}", flush=True)
    return measured


def say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stdout, flush=True)

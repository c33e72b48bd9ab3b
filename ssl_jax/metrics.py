"""Metric writers (JSON lines, TensorBoard without TensorFlow) and the progress line. Process 0 writes; others no-op."""

import json
import math
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


class Writer:
  """Writes `{"step": s, **metrics}` lines to `workdir/metrics.jsonl` and scalars to `workdir/tensorboard/`.

  On resume from step `resume_step`, lines of later steps (work that is being redone) are dropped first, so the
  file reads as one uninterrupted run.
  """

  def __init__(self, workdir: str, *, resume_step: int = 0, tensorboard: bool = True):
    self.active = jax.process_index() == 0
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._lines: list[str] = []
    self._tb = None
    if not self.active:
      return
    if self.path.exists():
      kept = [l for l in self.path.read_text().splitlines() if _step_of(l) is not None and _step_of(l) <= resume_step]
      self._lines = [l + "\n" for l in kept]
      self.path.write_text("".join(self._lines))
    if tensorboard:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"), purge_step=resume_step + 1 or None)

  def records(self) -> list[dict]:
    """Every line written so far (process 0), including those kept from before a resume."""
    return [json.loads(l) for l in self._lines]

  def write(self, step: int, metrics: dict) -> None:
    if not self.active:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    line = json.dumps(record) + "\n"
    self._lines.append(line)
    if "://" in str(self.path):   # object stores cannot append: rewrite
      self.path.write_text("".join(self._lines))
    else:
      with open(self.path, "a") as f:
        f.write(line)
    if self._tb is not None:
      for k, v in record.items():
        if k != "step":
          self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def image(self, tag: str, image, step: int) -> None:
    """An RGB uint8 `[H, W, 3]` image to TensorBoard (process 0)."""
    if self.active and self._tb is not None:
      self._tb.add_image(tag, image, step, dataformats="HWC")
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


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

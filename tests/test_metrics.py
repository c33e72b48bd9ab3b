"""metrics.jsonl holds each step once and in order through every interruption point; a failed metrics or TensorBoard
write (disk full) is a clear error that leaves the checkpoints intact."""

import errno
import json
import os

import pytest

from ssl_jax import checkpoint
from ssl_jax import metrics
from ssl_jax import train


def _steps(path):
  return [json.loads(l)["step"] for l in path.read_text().splitlines()]


def test_one_line_per_step_and_the_final_evaluation_joins_its_step(tmp_path):
  w = metrics.Writer(str(tmp_path), tensorboard=False)
  w.write(1, {"loss": 2.0})
  w.write(2, {"loss": 1.5})             # flushes step 1 first
  w.write(2, {"eval/knn_top1": 0.5})    # the same step: one record
  w.flush()
  w.write(2, {"eval/linear_top1": 0.75})   # after its line was written (a final evaluation): merged into it
  w.close()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines == [{"step": 1, "loss": 2.0},
                   {"step": 2, "loss": 1.5, "eval/knn_top1": 0.5, "eval/linear_top1": 0.75}]


def test_resume_drops_redone_steps_and_a_line_cut_by_a_kill(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n{"step": 3, "loss": 1.0}\n{"step": 4, "lo')
  w = metrics.Writer(str(tmp_path), resume_step=2, tensorboard=False)
  assert _steps(path) == [1, 2]
  w.write(3, {"loss": 1.1})
  w.close()
  assert _steps(path) == [1, 2, 3]                     # appended on a clean line, not onto the torn one


def test_a_crash_while_rewriting_on_resume_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "metrics.jsonl"
  before = '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n'
  path.write_text(before)

  def crash(*args):
    raise KeyboardInterrupt      # the process dies between writing the new file and putting it in place

  monkeypatch.setattr(os, "replace", crash)
  with pytest.raises(KeyboardInterrupt):
    metrics.Writer(str(tmp_path), resume_step=1, tensorboard=False)
  assert path.read_text() == before                    # the next resume starts from the intact file
  monkeypatch.undo()
  metrics.Writer(str(tmp_path), resume_step=1, tensorboard=False).close()
  assert _steps(path) == [1]


def _full_disk(*args, **kwargs):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["metrics.jsonl", "tensorboard"])
def test_disk_full_while_writing_metrics_is_a_clear_error_and_checkpoints_stay(tiny_config, tmp_path, monkeypatch,
                                                                             where):
  """No space left while writing metrics.jsonl or the TensorBoard events (tensorboardX's own writer thread would
  die silently there and the next flush wait forever): the run stops with what failed and what to do, the
  committed checkpoints are intact, and the rerun resumes."""
  from tensorboardX.event_file_writer import EventsWriter
  tiny_config.eval.init_baseline = False
  # Writes that reach the disk: metrics.jsonl is opened once per step; the event file is flushed once when it is
  # created, then once per step.
  original, first_failing = (EventsWriter.flush, 5) if where == "tensorboard" else (open, 4)
  calls = []

  def fail_after_step_3(*args, **kwargs):
    calls.append(1)
    if len(calls) >= first_failing:
      _full_disk()
    return original(*args, **kwargs)

  if where == "tensorboard":
    monkeypatch.setattr(EventsWriter, "flush", fail_after_step_3)
  else:
    monkeypatch.setattr(metrics, "open", fail_after_step_3, raising=False)
  with pytest.raises(metrics.MetricsWriteError, match="No space left on device.*committed checkpoints are intact"):
    train.run(tiny_config, str(tmp_path))
  monkeypatch.undo()
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [3] and checkpoint.step_damage(tmp_path / "checkpoints", 3) is None
  train.run(tiny_config, str(tmp_path))
  assert _steps(tmp_path / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]

"""The fault matrix over every registered method: each method's tiny config (shrunk to seconds, on one device:
`devices()`) goes through a non-finite step, a SIGTERM, a kill -9 at a random moment (mid-step, mid-log or
mid-asynchronous-save) in a real process, a damaged newest checkpoint, and a run of another experiment refused on its
workdir, and still ends with the losses of an uninterrupted run, bit for bit, each step logged once; the
uninterrupted run also shows what the method logs (monitors, online probe) and its end-of-run report. A method added
to `ssl_jax.methods.METHODS` is covered by being registered, once a config in `configs/tiny/` names it.

The detailed checks of each fault (exit codes, messages, real-process SIGTERM, metrics after every kill) are in
`test_fault_tolerance.py` on the tiny MAE."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from conftest import ROOT
from conftest import load_config
from ssl_jax import checkpoint
from ssl_jax import methods
from ssl_jax import metrics
from ssl_jax.runtime import preemption
from ssl_jax import train

STEPS, NONFINITE_STEP = 8, 3


def tiny_configs() -> dict[str, str]:
  """Method name -> the first tiny config (by file name) that trains it."""
  found = {}
  for path in sorted((ROOT / "configs" / "tiny").glob("*.py")):
    name = load_config(str(path.relative_to(ROOT))).method.name
    found.setdefault(name, str(path.relative_to(ROOT)))
  return found


def shrunk(method: str):
  """`method`'s tiny config at a few seconds a run: batch 16, a one-block (or width-8) encoder, narrow heads, a
  checkpoint every 2 steps, a NaN gradient at step 3, and a small kNN evaluation only."""
  c = load_config(tiny_configs()[method])
  c.update(dict(batch_size=16, total_epochs=None, total_steps=STEPS, log_every=1, ckpt_every=2, keep_ckpts=10,
                eval_every=0, eval_every_epochs=None, ckpt_every_epochs=None))
  c.optim.warmup_epochs, c.optim.warmup_steps = None, 1
  c.debug.nonfinite_at_steps = (NONFINITE_STEP,)
  c.debug.log_example_ids = True
  if c.model.get("arch") == "resnet":
    c.model.width = 8
  else:                          # a ViT (fine-tuning from scratch: the architecture in full)
    c.model.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
    if c.model.get("patch_size", 1) is None:
      c.model.update(dict(patch_size=4, posemb="sincos2d"))
  m = c.method
  narrow = lambda dims: tuple([32] * (len(dims) - 1) + [16])
  for key in ("projector", "predictor"):
    if key in m and "dims" in m[key]:
      m[key] = dict(m[key], dims=narrow(m[key]["dims"]))
    elif key in m:               # a transformer predictor (I-JEPA)
      m[key] = dict(width=16, depth=1, num_heads=2, mlp_dim=32)
  for key in ("head", "dino_head"):
    if key in m and m.name == "swav":
      m[key] = dict(hidden_dim=32, dim=16, num_prototypes=24)
    elif key in m and m.name == "rotation":      # a linear classifier over the 4 rotations already
      pass
    elif key in m and m.name == "jigsaw":
      m[key], m.num_permutations = dict(m[key], tile_dim=16, hidden_dim=32), 10
    elif key in m:
      m[key] = dict(m[key], out_dim=64, hidden_dim=32, bottleneck_dim=16)
  if "decoder" in m:
    m.decoder = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
  if m.name == "ijepa":          # a 4x4 patch grid (16 tokens, as the other ViTs here): blocks of 2-3 and 9 patches
    c.model.patch_size, m.min_keep = 4, 0
  if m.name == "data2vec":       # a 4x4 patch grid, 10 of its patches masked; the one block's output as the target
    c.model.patch_size, m.top_k = 4, 1
  if m.name == "dinov2":         # two groups of 8 images: masks and KoLeo per group
    m.group_size = 8
  if "text" in m:                # an image-text method's text tower and joint space
    m.text = dict(m.text, width=16, depth=1, num_heads=2, mlp_dim=32)
    if "embed_dim" in m:
      m.embed_dim = 16
  if m.name == "wav2vec2":       # a 16-channel feature encoder on 0.4 s crops (19 frames), a 32-word codebook
    c.model.conv_layers = ((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2
    c.data.audio.max_length = 6400
    m.final_dim, m.latent_dim, m.latent_vars = 16, 16, 32
  if m.name == "swav":           # the queue filled from the first step and in use from the third (resumed with it)
    m.queue_length, m.queue_start_epochs = 32, 0.0
  c.eval.update(dict(train_split="train[:64]", test_split="test[:32]", batch_size=32, init_baseline=False,
                     raw_baseline=False, report=False))
  kept = {k: v for k, v in c.eval.evaluators.items() if v["type"] in ("zero_shot", "retrieval")}   # image-text
  c.eval.evaluators = dict(knn=dict(type="knn", k=5, temperature=0.07), **kept)
  if c.eval.pretext_split:       # a language model: its validation loss on one held-out batch too
    c.eval.evaluators.validation = dict(type="language_model", max_batches=1)
  return c


def devices() -> list:
  """The runs' mesh: one device. Each method's sharded math (the loss and gradients on 1 and 8 devices) is checked
  by test_contract.py, its full-scale train step traced and lowered on the 8-device mesh by test_methods.py, and the
  trainer's multi-device runs through faults on MAE (test_train.py, test_fault_tolerance.py). On one device this
  file's runs take about a quarter less time (no partitioned programs, one device's steps)."""
  return jax.devices()[:1]


def test_every_registered_method_has_a_tiny_config():
  assert set(tiny_configs()) == set(methods.METHODS), "add a configs/tiny/<method>.py for each registered method"


def _records(workdir):
  return [json.loads(l) for l in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _losses(workdir):
  return {r["step"]: r["loss"] for r in _records(workdir) if "loss" in r}


def _committed(workdir):
  return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


# The child of the kill -9: the same shrunk config in a real process, each logged step held for a moment so that the
# kill can land inside a step, a metrics write or an asynchronous save.
CHILD = """
import sys, time
sys.path.insert(0, sys.argv[3])
import test_fault_matrix
from ssl_jax import metrics, train
flush = metrics.Writer.flush
metrics.Writer.flush = lambda self: (flush(self), time.sleep(0.15))
train.run(test_fault_matrix.shrunk(sys.argv[1]), sys.argv[2], devices=test_fault_matrix.devices())
"""


# What each method's run logs beyond the loss, and draws in its end-of-run report (besides embedding.png).
LOGGED = {"simclr": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1"},
          "byol": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1"},
          "mocov3": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1"},
          "barlow_twins": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1", "on_diagonal",
                           "off_diagonal"},
          "simsiam": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1"},
          "rotation": {"probe/train_top1", "rotation_top1"},
          "jigsaw": {"probe/train_top1", "jigsaw_top1"},
          "colorization": {"probe/train_top1", "colorization/top1", "colorization/prior_entropy"},
          "inpainting": {"probe/train_top1", "inpainting/reconstruction"},
          "swav": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1", "queue_in_use"},
          "vicreg": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1", "invariance", "variance",
                     "covariance"},
          "dino": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1", "monitor/teacher_entropy",
                   "monitor/teacher_student_kl", "teacher_temp"},
          "classify": {"train_top1", "eval/top1", "eval/top5"},
          "clip": {"monitor/embedding_std", "monitor/rankme", "logit_scale", "positive_cosine", "eval/zero_shot_top1",
                   "eval/zero_shot_top5", "eval/retrieval_image_to_text_r@5", "eval/retrieval_text_to_image_r@5"},
          "siglip": {"monitor/embedding_std", "monitor/rankme", "logit_scale", "logit_bias", "positive_cosine",
                     "eval/zero_shot_top1", "eval/retrieval_image_to_text_r@5"},
          "gpt": {"next_token_accuracy"},
          "bert": {"masked_token_accuracy"},
          "ijepa": {"monitor/embedding_std", "monitor/rankme", "monitor/target_token_std", "mask/context_tokens",
                    "mask/target_tokens", "mask/context_truncated", "target_momentum"},
          "data2vec": {"monitor/embedding_std", "monitor/rankme", "monitor/target_token_std", "mask/masked_tokens",
                       "teacher_momentum"},
          "beit": {"masked_token_accuracy", "mask/masked_tokens", "tokenizer/usage", "tokenizer/perplexity"},
          "vq_tokenizer": {"tokenizer/usage", "tokenizer/perplexity", "loss/reconstruction", "loss/commitment"},
          "dinov2": {"monitor/embedding_std", "monitor/rankme", "probe/train_top1", "monitor/teacher_entropy",
                     "monitor/teacher_student_kl", "monitor/ibot_teacher_entropy", "teacher_temp", "teacher_momentum",
                     "mask/masked_tokens", "dino_loss", "ibot_loss", "koleo_loss"}}
# The features of methods with more than one (their metrics are named eval/<feature>/...); the first is checked.
FEATURES = {"clip": ("image", "text"), "siglip": ("image", "text")}
PICTURES = {"mae": {"reconstructions.png"}, "ijepa": {"masks.png"}, "data2vec": {"masks.png"}, "beit": {"masks.png"},
            "vq_tokenizer": {"reconstructions.png"}, "dinov2": {"masks.png"}, "jigsaw": {"puzzles.png"},
            "colorization": {"colorizations.png"}, "inpainting": {"inpaintings.png"}}


def _check_reference(method, workdir, results):
  """The uninterrupted run: the NaN step skipped, the method's monitors logged at every step, and the final
  evaluation with the random-init and raw-input baselines and the representation report."""
  records = _records(workdir)
  skipped = [r["skipped_steps"] for r in records if "loss" in r]
  assert skipped == [0] * (NONFINITE_STEP - 1) + [1] * (STEPS - NONFINITE_STEP + 1)   # the NaN step not applied
  logged = {k for r in records for k in r}
  feature = f"{FEATURES[method][0]}/" if method in FEATURES else ""
  expected = LOGGED.get(method, set()) | {f"eval/{feature}knn_top1", f"eval/{feature}knn_top1_init",
                                          f"eval/{feature}knn_top1_raw"}
  assert expected <= logged, expected - logged
  if "monitor/rankme" in expected:
    at_4 = next(r for r in records if r["step"] == 4 and "monitor/rankme" in r)
    assert 1.0 <= at_4["monitor/rankme"] <= 16 and 0 < at_4["monitor/embedding_std"] <= 1   # 16: the projection
  assert {f"report/{feature}rankme", f"report/{feature}alignment", f"report/{feature}uniformity"} <= set(results)
  embeddings = {f"embedding_{f}.png" for f in FEATURES[method]} if method in FEATURES else {"embedding.png"}
  assert {p.name for p in (workdir / "report").glob("*.png")} == embeddings | PICTURES.get(method, set())


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_faults_in_sequence_end_as_the_uninterrupted_run(method, tmp_path, monkeypatch):
  reference, workdir = tmp_path / "reference", tmp_path / "run"
  config = shrunk(method)
  config.eval.update(dict(init_baseline=True, raw_baseline=True, report=True))
  _check_reference(method, reference, train.run(config, str(reference), devices=devices()))

  # 1. SIGTERM during the run (in this process, through the trainer's handler): the step it lands on is saved.
  flush = metrics.Writer.flush
  monkeypatch.setattr(metrics.Writer, "flush", lambda self: (flush(self), time.sleep(0.1)))
  previous = signal.signal(signal.SIGTERM, lambda *_: None)     # a signal arriving after the run must not kill pytest

  def preempt_at_step_2():
    while not (workdir / "metrics.jsonl").exists() or max(_losses(workdir), default=0) < 2:
      time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)

  sender = threading.Thread(target=preempt_at_step_2, daemon=True)
  sender.start()
  try:
    with pytest.raises(preemption.Preempted) as e:
      train.run(shrunk(method), str(workdir), devices=devices())
  finally:
    sender.join(timeout=60)
    signal.signal(signal.SIGTERM, previous)
    monkeypatch.undo()
  assert e.value.step == max(_losses(workdir)) == _committed(workdir)[-1]

  # 2. kill -9 of a real process that resumed it, at a random moment after it logged a new step.
  saved = e.value.step
  child = subprocess.Popen([sys.executable, "-c", CHILD, method, str(workdir), str(ROOT / "tests")], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while max(_losses(workdir), default=0) <= saved:
    assert child.poll() is None, child.stdout.read()
    assert time.time() < deadline
    time.sleep(0.01)
  time.sleep(np.random.default_rng(sum(map(ord, method))).uniform(0.0, 0.4))
  child.kill()
  child.wait()

  # 3. The newest committed step damaged (its commit marker gone): the resume falls back to the one before.
  steps = _committed(workdir)
  damaged = steps[-1] if len(steps) > 1 else None
  if damaged is not None:
    (workdir / "checkpoints" / str(damaged) / checkpoint.COMMIT_MARKER).unlink()

  # 4. Another experiment on this workdir is refused, and nothing there changes.
  files = lambda: {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != "lease.json"}
  before = files()
  other = shrunk(method)
  other.seed += 1
  with pytest.raises(checkpoint.ConfigMismatch, match="seed"):
    train.run(other, str(workdir), devices=devices())
  assert files() == before

  # 5. The resume runs to the end: the uninterrupted run's losses, each step once, and the same examples.
  if damaged is not None:
    with pytest.warns(RuntimeWarning, match=f"checkpoint step {damaged} is damaged"):
      train.run(shrunk(method), str(workdir), devices=devices())
  else:
    train.run(shrunk(method), str(workdir), devices=devices())
  steps_logged = [r["step"] for r in _records(workdir)]
  assert steps_logged == list(range(1, STEPS + 1))
  assert _losses(workdir) == _losses(reference)
  ids = lambda d: (d / "example_ids" / "process_0.jsonl").read_text()
  assert ids(workdir) == ids(reference)

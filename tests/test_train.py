"""End-to-end runs of the trainer on embedded data: resume, 1 vs 8 devices, the full-scale config, mocked TFDS."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import image_run
from conftest import load_config
from conftest import train_steps
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.data import transforms


def _records(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def _losses(workdir):
  return {r["step"]: r["loss"] for r in _records(workdir) if "loss" in r}


def test_run_writes_everything_and_resumes_bit_identically(tiny_config, tmp_path):
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  results = train.run(tiny_config, str(straight))
  assert set(results) == {"eval/knn_top1", "eval/linear_top1", "eval/knn_top1_init", "eval/linear_top1_init"}
  assert all(0.0 <= v <= 1.0 for v in results.values())
  # Checkpoints at the periodic steps and the last one; TensorBoard events; every step logged.
  assert {p.name for p in (straight / "checkpoints").iterdir() if p.name.isdigit()} == {"3", "6"}
  assert list((straight / "tensorboard").glob("events.out.tfevents.*"))
  assert sorted(_losses(straight)) == [1, 2, 3, 4, 5, 6]
  last = _records(straight)[-1]
  assert last["step"] == 6 and last["eval/knn_top1"] == results["eval/knn_top1"]
  assert {"lr", "grad_norm"} <= set(_records(straight)[0]) and "examples_per_s" in _records(straight)[1]
  program = train._last_program[1]

  # Interrupted after step 4 (last checkpoint: 4), then restarted with the same command.
  assert train.run(tiny_config, str(resumed), stop_at=4) is None
  assert sorted(_losses(resumed)) == [1, 2, 3, 4]
  with open(resumed / "metrics.jsonl", "a") as f:
    f.write('{"step": 5, "lo')      # a line cut short by a crash is dropped on resume
  again = train.run(tiny_config, str(resumed))
  assert _losses(resumed) == _losses(straight)     # exact equality: same data order and random numbers
  assert again["eval/knn_top1"] == results["eval/knn_top1"]
  assert again["eval/linear_top1"] == results["eval/linear_top1"]

  # Restarting a finished run evaluates nothing new and loses nothing.
  before = (straight / "metrics.jsonl").read_text()
  assert train.run(tiny_config, str(straight)) == results
  assert (straight / "metrics.jsonl").read_text() == before
  # The four runs of one experiment in this process share one program, its train step traced once.
  assert train._last_program[1] is program and program.step._cache_size() == 1


def test_workdir_with_another_config_is_refused(tiny_config, tmp_path, monkeypatch):
  tiny_config.total_steps = 2
  tiny_config.eval.init_baseline = False
  monkeypatch.chdir(tmp_path)
  train.run(tiny_config, "run", stop_at=1)    # a relative workdir
  before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
  assert "1" in before
  program = train._last_program[1]
  tiny_config.batch_size = 16
  with pytest.raises(ValueError, match="different config.*batch_size"):
    train.run(tiny_config, "run")
  assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
  assert train._last_program[1] is program        # a refused run leaves the program a later run may reuse
  tiny_config.init_from = str(tmp_path / "run")   # a pretrained encoder is read afresh: the program built anew
  assert train._program_key(tiny_config, None) is None


def test_one_device_and_eight_devices_give_the_same_losses(tiny_config):
  assert jax.device_count() == 8
  src = sources.digits("train")
  batches = []
  it = iter(pipeline.train_dataset(src, seed=0, global_batch_size=tiny_config.batch_size,
                                   transform=transforms.train_transform(image_size=16)))
  batches = [next(it) for _ in range(3)]
  out = {}
  for n in (1, 8):
    mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1), jax.devices()[:n])
    program = train.build(tiny_config, mesh, len(src))
    with jax.set_mesh(mesh), nn.logical_axis_rules(tiny_config.sharding_rules):
      state, losses = program.init(), []
      for b in batches:
        state, m = program.step(state, pipeline.to_global(b, sharding.batch_sharding(mesh)))
        losses.append(float(m["loss"]))
    assert len(state.params["encoder"]["embedding"]["kernel"].sharding.device_set) == n
    out[n] = (losses, jax.device_get(state.params))
  np.testing.assert_allclose(out[1][0], out[8][0], rtol=1e-5)
  assert out[1][0][0] != out[1][0][2]   # it trained
  # Adam turns reduction-order noise in near-zero gradients into differences of up to ~lr per step.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-4), out[1][1], out[8][1])


def test_tfds_path_under_mock_data(tiny_config, tmp_path):
  tiny_config.data.name = "imagenet2012"
  tiny_config.eval.data_name = None
  tiny_config.eval.train_split, tiny_config.eval.test_split = "train", "validation"
  tiny_config.total_steps = 2
  tiny_config.eval.init_baseline = False
  with tfds.testing.mock_data(num_examples=64):
    results = train.run(tiny_config, str(tmp_path))
  assert sorted(_losses(tmp_path)) == [1, 2]
  assert 0 <= results["eval/linear_top1"] <= 1


def test_end_of_run_report_and_extra_evaluators(tiny_config, tmp_path):
  from PIL import Image
  tiny_config.total_steps, tiny_config.eval.init_baseline, tiny_config.eval.report = 3, False, True
  tiny_config.eval.evaluators.fewshot = dict(type="fewshot", shots=(1, 5))
  tiny_config.eval.evaluators.majority = dict(type="knn", k=5, vote="majority")
  tiny_config.eval.raw_baseline = True
  results = train.run(tiny_config, str(tmp_path))
  # The raw-input column: the same kNN on the evaluation view's normalised pixels, flattened.
  from ssl_jax import evaluators
  from ssl_jax.ops import image
  raw = lambda split: (np.stack([np.asarray(image.normalize(transforms.center_crop(e["image"], 16, 1.0))).ravel()
                                 for e in sources.digits(split)]), [e["label"] for e in sources.digits(split)])
  expected = evaluators.knn_accuracy(*raw("train[:200]"), *raw("test[:80]"), num_classes=10, k=20, temperature=0.07)
  assert results["eval/knn_top1_raw"] == pytest.approx(expected, abs=1 / 80)
  assert results["eval/majority_top1_raw"] > 0.8 and "report/rankme_raw" not in results
  assert {"eval/fewshot_1shot_top1", "eval/fewshot_5shot_top1", "eval/majority_top1", "report/rankme",
          "report/alignment", "report/uniformity", "report/embedding_std"} <= set(results)
  assert 1.0 <= results["report/rankme"] <= 32 and results["report/uniformity"] < 0   # width 32, not collapsed
  assert 0.0 <= results["report/alignment"] <= 4.0
  emb = np.asarray(Image.open(tmp_path / "report" / "embedding.png"))
  rec = np.asarray(Image.open(tmp_path / "report" / "reconstructions.png"))
  assert emb.ndim == 3 and emb.shape[1] > emb.shape[0] > 200      # PCA and t-SNE side by side
  assert rec.shape[0] > rec.shape[1]                               # 8 rows of 3 pictures
  assert _records(tmp_path)[-1]["report/rankme"] == results["report/rankme"]


def test_mae_reconstruction_pictures(tiny_config):
  from ssl_jax import methods
  from ssl_jax.data import inputs
  m = methods.create("mae", model=tiny_config.model.to_dict(), run=image_run(16),
                     **{k: v for k, v in tiny_config.method.to_dict().items() if k != "name"})
  images = jax.random.randint(jax.random.key(0), (4, 16, 16, 3), 0, 256).astype(np.uint8)
  batch = inputs.eval_stage({"image": images})                      # normalised, as the method receives it
  params, extra = jax.jit(m.init)(jax.random.key(1), batch)          # jitted: one compile each, not one per primitive
  shown, masked, recon = jax.jit(m.reconstruct)(nn.unbox(params), extra, batch, jax.random.key(2))
  np.testing.assert_array_equal(shown, images)                       # the input row: the uint8 images themselves
  assert masked.dtype == recon.dtype == np.uint8 and masked.shape == recon.shape == images.shape
  patches = lambda x: np.asarray(x).reshape(4, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(4, 16, 48)
  grey = np.all(patches(masked) == 128, axis=-1)
  assert np.all(grey.sum(1) == 12)                                  # 75% of the 16 patches are masked
  # Visible patches come back exactly (uint8 -> normalised -> uint8); masked ones are the model's prediction.
  np.testing.assert_array_equal(patches(recon)[~grey], patches(images)[~grey])
  np.testing.assert_array_equal(patches(masked)[~grey], patches(images)[~grey])
  assert not np.array_equal(patches(recon)[grey], patches(images)[grey])


def test_gradient_accumulation_equals_the_large_batch():
  """A loss that is a mean over independent examples (supervised ViT, no random regularisers): 4 micro-batches on 8
  devices give the large batch's losses and parameters; indivisible settings are refused before compiling."""
  c = load_config("configs/tiny/finetune.py")
  c.model.update(dict(variant=None, patch_size=4, width=32, depth=2, num_heads=2, mlp_dim=64, posemb="learn",
                      drop_path=0.0))
  c.method.update(dict(mixup=0.0, cutmix=0.0, random_erasing=0.0))
  c.update(dict(batch_size=64, total_epochs=None, total_steps=3))
  c.optim.warmup_epochs, c.optim.warmup_steps = None, 1
  it = iter(pipeline.train_dataset(sources.digits("train"), seed=0, global_batch_size=64,
                                   transform=transforms.train_transform(image_size=16, rand_augment=(1, 5, 0.5))))
  batches = [next(it) for _ in range(3)]
  runs = {}
  for k in (1, 4):
    c.grad_accum_steps = k
    _, state, losses = train_steps(c, dict(data=8, fsdp=1, tensor=1), batches)
    runs[k] = losses, state.params
  np.testing.assert_allclose(runs[4][0], runs[1][0], rtol=1e-5)
  assert runs[1][0][0] != runs[1][0][2]
  for a, b in zip(jax.tree.leaves(runs[4][1]), jax.tree.leaves(runs[1][1])):
    np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, float(np.max(np.abs(b)))))

  c.grad_accum_steps = 3
  with pytest.raises(ValueError, match="grad_accum_steps=3 must be >= 1 and divide config.batch_size=64"):
    train.run(c, "/nonexistent/never_written")
  c.grad_accum_steps, c.mesh = 16, dict(data=8, fsdp=1, tensor=1)
  with pytest.raises(ValueError, match="does not split evenly over the 8 batch shards.*multiple of 128"):
    train.run(c, "/nonexistent/never_written")


def test_training_loop_never_syncs_with_the_devices_between_log_steps(tiny_config, tmp_path):
  """Under `jax.transfer_guard("disallow")` outside log, eval and checkpoint steps, any implicit transfer between host
  and devices in the loop (a hidden synchronisation that would stall the device queue) is an error. On the CPU jax
  guards host-to-device transfers only (its device arrays are host memory): this catches implicit uploads (a numpy
  or Python value fed to the step each iteration); on GPUs and TPUs the same setting also catches downloads."""
  tiny_config.update(dict(log_every=3, ckpt_every=6))
  tiny_config.debug.transfer_guard = "disallow"
  tiny_config.eval.evaluators = {}
  train.run(tiny_config, str(tmp_path))
  assert sorted(_losses(tmp_path)) == [3, 6]

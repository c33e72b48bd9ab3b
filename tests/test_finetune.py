"""Downstream protocols: init_from a pretraining workdir, fine-tuning (regularisers, layer decay, RandAugment), the
frozen linear probe and standalone evaluation, through the one trainer."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import load_config
from ssl_jax import optim
from ssl_jax import pretrained
from ssl_jax.ops import regularization
from ssl_jax import train
from ssl_jax.data import transforms


def test_smooth_labels_by_hand():
  t = regularization.smooth_labels(jnp.array([2, 0]), 4, 0.1)
  np.testing.assert_allclose(t, [[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]], rtol=1e-6)


def test_mixup_is_a_convex_combination_with_the_reversed_batch():
  x = jax.random.normal(jax.random.key(0), (6, 8, 8, 3))
  t = regularization.smooth_labels(jnp.arange(6) % 4, 4)
  mixed, targets, lam = regularization.mixup_cutmix(jax.random.key(1), x, t, mixup_alpha=0.8)
  assert 0 < float(lam) < 1
  np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(targets, lam * t + (1 - lam) * t[::-1], rtol=1e-6)
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  # prob=0: nothing mixed.
  same, t0, lam0 = regularization.mixup_cutmix(jax.random.key(1), x, t, mixup_alpha=0.8, prob=0.0)
  assert float(lam0) == 1.0 and np.array_equal(same, x) and np.array_equal(t0, t)


@pytest.mark.parametrize("seed", range(4))
def test_cutmix_pastes_one_box_and_weighs_targets_by_its_area(seed):
  x = jnp.broadcast_to(jnp.arange(6, dtype=jnp.float32)[:, None, None, None], (6, 16, 20, 3))
  t = regularization.smooth_labels(jnp.arange(6), 6)
  mixed, targets, lam = regularization.mixup_cutmix(jax.random.key(seed), x, t, cutmix_alpha=1.0)
  pasted = np.asarray(mixed[0, :, :, 0] != 0)                  # example 0 receives example 5's pixels
  rows, cols = np.nonzero(pasted)
  if rows.size:                                                # one axis-aligned box, all of it pasted
    assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert np.all(np.asarray(mixed[0])[pasted] == 5.0)
  assert float(lam) == pytest.approx(1 - pasted.sum() / (16 * 20), abs=1e-6)
  np.testing.assert_allclose(targets[0], lam * t[0] + (1 - lam) * t[5], rtol=1e-6)


def test_random_erasing_erases_one_rectangle_per_image():
  x = jnp.full((32, 24, 24, 3), 7.0)
  out = np.asarray(regularization.random_erasing(jax.random.key(0), x, prob=1.0))
  for img in out:
    erased = np.any(img != 7.0, axis=-1)
    rows, cols = np.nonzero(erased)
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert erased.sum() == area                                 # a full rectangle
    assert 0.02 * 576 * 0.8 <= area <= 576 / 3 * 1.2            # area fraction in [0.02, 1/3] (rounded sides)
  assert np.array_equal(np.asarray(regularization.random_erasing(jax.random.key(0), x, prob=0.0)), np.asarray(x))
  n = sum(np.any(img != 7.0) for img in np.asarray(regularization.random_erasing(jax.random.key(1), x, prob=0.25)))
  assert 2 <= n <= 16                                           # about a quarter of 32


def test_layer_decay_scales_each_layer_of_a_vit():
  params = {"encoder": {"vit": {"embedding": {"kernel": 1.0}, "cls": 1.0, "pos_embedding": 1.0, "mask_token": 1.0,
                                "encoder": {f"block{i}": {"attn": {"qkv_kernel": 1.0}} for i in range(3)}},
                        "fc_norm": {"scale": 1.0}},
            "head": {"fc": {"kernel": 1.0}}}
  params = jax.tree.map(jnp.asarray, params)
  out, _ = optim.scale_by_layer_decay(0.5).update(params, optax.EmptyState(), params)
  vit = out["encoder"]["vit"]
  # 3 blocks: embedding/cls/pos/[MASK] are layer 0 (scale 0.5^4), block i is layer i+1, the rest layer 4 (scale 1).
  assert float(vit["embedding"]["kernel"]) == float(vit["cls"]) == float(vit["pos_embedding"]) == 0.5 ** 4
  assert float(vit["mask_token"]) == 0.5 ** 4                  # DINOv2's `get_vit_lr_decay_rate`
  assert [float(vit["encoder"][f"block{i}"]["attn"]["qkv_kernel"]) for i in range(3)] == [0.125, 0.25, 0.5]
  assert float(out["encoder"]["fc_norm"]["scale"]) == float(out["head"]["fc"]["kernel"]) == 1.0


def test_rand_augment_is_seeded_and_changes_images():
  img = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
  a = transforms.rand_augment(img, np.random.default_rng(5))
  b = transforms.rand_augment(img, np.random.default_rng(5))
  assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
  changed = [not np.array_equal(transforms.rand_augment(img, np.random.default_rng(s)), img) for s in range(20)]
  assert sum(changed) >= 10           # two operations, each applied with probability 1/2
  assert np.array_equal(transforms.rand_augment(img, np.random.default_rng(0), num_ops=0), img)


def test_merge_copies_by_path_resizes_position_embeddings_and_rejects_other_shapes():
  target = {"params": {"vit": {"pos_embedding": np.zeros((1, 16, 8)), "w": np.zeros((3,)), "fc_norm": np.ones(2)}}}
  source = {"params": {"vit": {"pos_embedding": np.ones((1, 4, 8)), "w": np.arange(3.0), "norm": np.ones(2)}}}
  merged, report = pretrained.merge(target, source)
  np.testing.assert_array_equal(merged["params"]["vit"]["w"], [0, 1, 2])
  np.testing.assert_allclose(merged["params"]["vit"]["pos_embedding"], 1.0, atol=1e-5)   # 2x2 -> 4x4 of a constant
  assert report.missing == ("params/vit/fc_norm",) and report.unused == ("params/vit/norm",)
  assert report.resized == ("params/vit/pos_embedding",)
  with pytest.raises(ValueError, match=r"params/vit/w: pretrained \(4,\) vs \(3,\)"):
    pretrained.merge(target, {"params": {"vit": {"w": np.zeros(4)}}})
  with pytest.raises(ValueError, match="no pretrained array matches"):
    pretrained.merge(target, {"params": {"other": np.zeros(3)}})


def _snapshot(workdir):
  return {os.path.relpath(os.path.join(d, f), workdir): os.stat(os.path.join(d, f)).st_mtime_ns
          for d, _, files in os.walk(workdir) for f in files}


def _downstream(name, init_from, **overrides):
  c = load_config(f"configs/{name}.py", *(("digits",) if name == "knn" else ()))
  c.init_from = str(init_from)
  c.batch_size = 32
  if c.total_steps != 0:
    c.total_epochs, c.total_steps, c.log_every, c.ckpt_every = None, 3, 1, 3
    c.optim.warmup_epochs, c.optim.warmup_steps = None, 1
  c.eval.update(dict(train_split="train[:200]", test_split="test[:80]", batch_size=40, report=False))
  c.update(overrides)
  return c


def test_init_from_loads_the_pretrained_encoder_and_leaves_its_workdir_untouched(mae_workdir, tmp_path):
  workdir, _ = mae_workdir
  before = _snapshot(workdir)
  c = _downstream("tiny/finetune", workdir)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(-1, 1, 1), ("data", "fsdp", "tensor"))
  program = train.build(c, mesh, 1437, 10)
  state = train.load_pretrained(program, program.init())
  source = pretrained.open_workdir(str(workdir))
  expected = source.variables()["params"]["vit"]
  got = jax.device_get(state.params["encoder"]["vit"])
  assert "norm" not in got["encoder"] and "fc_norm" in jax.device_get(state.params["encoder"])  # gap_fc_norm pool
  expected["encoder"].pop("norm")
  jax.tree.map(np.testing.assert_array_equal, got, expected)
  # The fine-tuning run trains, reports its classifier's accuracy and never writes into the pretraining workdir.
  results = train.run(c, str(tmp_path / "ft"))
  assert {"eval/top1", "eval/top5"} <= set(results) and 0 <= results["eval/top1"] <= results["eval/top5"] <= 1
  assert _snapshot(workdir) == before


def test_linear_probe_keeps_the_encoder_frozen(mae_workdir, tmp_path):
  workdir, _ = mae_workdir
  c = _downstream("tiny/linear_probe", workdir)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(-1, 1, 1), ("data", "fsdp", "tensor"))
  program = train.build(c, mesh, 1437, 10)
  state = train.load_pretrained(program, program.init())
  start = jax.device_get(state.params)
  from ssl_jax.data import sources
  src = sources.digits("train")
  batch = {"image": np.stack([src[i]["image"] for i in range(32)]), "label": np.arange(32, dtype=np.int32) % 10,
           "index": np.arange(32, dtype=np.int32)}
  with jax.set_mesh(mesh), nn.logical_axis_rules(c.sharding_rules):
    for _ in range(3):
      state, m = program.step(state, batch)
  end = jax.device_get(state.params)
  jax.tree.map(np.testing.assert_array_equal, end["encoder"], start["encoder"])
  assert not np.array_equal(end["head"]["fc"]["kernel"], start["head"]["fc"]["kernel"])
  assert np.isfinite(float(m["loss"]))


def test_standalone_knn_reproduces_the_pretraining_runs_evaluation(mae_workdir, tmp_path):
  workdir, mae_results = mae_workdir
  c = _downstream("knn", workdir)
  c.eval.evaluators = dict(knn=dict(type="knn", k=20, temperature=0.07),
                           fewshot=dict(type="fewshot", shots=(1, 5), l2=32.0))
  results = train.run(c, str(tmp_path / "knn"))
  # Same encoder, same feature (MAE tiny: mean patch token), same splits: the same kNN accuracy, with no training.
  assert results["eval/knn_top1"] == mae_results["eval/knn_top1"]
  assert {"eval/fewshot_1shot_top1", "eval/fewshot_5shot_top1", "eval/knn_top1_init"} <= set(results)
  assert not (tmp_path / "knn" / "checkpoints").exists() or not any((tmp_path / "knn" / "checkpoints").iterdir())


def test_init_from_errors_name_the_problem(mae_workdir, tmp_path):
  workdir, _ = mae_workdir
  with pytest.raises(FileNotFoundError, match="holds no complete checkpoint"):
    train.run(_downstream("tiny/finetune", tmp_path / "nothing"), str(tmp_path / "a"))
  # An encoder of another shape fails before the new workdir is created.
  c = _downstream("tiny/finetune", workdir)
  c.model.mlp_dim = 48
  with pytest.raises(ValueError, match=r"does not fit the configured one: .*mlp/fc1/kernel: pretrained \(\d+, \d+\) "
                                       r"vs \(\d+, 48\)"):
    train.run(c, str(tmp_path / "d"))
  assert not (tmp_path / "d").exists()
  mae = load_config("configs/tiny/mae.py")
  mae.init_from, mae.total_steps = str(workdir), 2
  with pytest.raises(ValueError, match="method 'mae' cannot start from a pretrained encoder"):
    train.run(mae, str(tmp_path / "b"))
  mae.init_from, mae.total_epochs, mae.total_steps = None, None, 0
  with pytest.raises(ValueError, match=r"total_steps must be positive \(0 only evaluates, with config.init_from\)"):
    train.run(mae, str(tmp_path / "c"))


@pytest.mark.parametrize("method", ["byol", "dino"])
def test_joint_methods_release_their_encoder_with_its_batchnorm_statistics(method, tmp_path):
  """BYOL (ResNet: running BatchNorm statistics travel with the weights) and DINO (the teacher is released): the
  standalone kNN of the released encoder equals the pretraining run's own final kNN. The pretraining run is the
  fault matrix's (`shrunk`, its NaN step skipped), on its device: the same programs, compiled once in the session's
  cache."""
  from test_fault_matrix import devices
  from test_fault_matrix import shrunk
  c = shrunk(method)
  pre = train.run(c, str(tmp_path / "pre"), devices=devices())
  k = _downstream("knn", tmp_path / "pre")
  k.eval.update(dict(train_split=c.eval.train_split, test_split=c.eval.test_split, batch_size=c.eval.batch_size,
                     init_baseline=False))
  k.eval.evaluators = c.eval.evaluators
  post = train.run(k, str(tmp_path / "knn"), devices=devices())
  assert post["eval/knn_top1"] == pre["eval/knn_top1"]


def test_fine_tuning_from_scratch_takes_the_architecture_from_the_config(tmp_path):
  c = _downstream("tiny/finetune", "unused")
  c.init_from = None
  c.model.update(dict(patch_size=4, width=32, depth=1, num_heads=2, mlp_dim=64))   # posemb, dtype: defaults
  results = train.run(c, str(tmp_path))
  assert 0.0 <= results["eval/top1"] <= results["eval/top5"] <= 1.0
  with pytest.raises(ValueError, match=r"model: set `variant` \(e.g. 'B/16'\) or all of \['patch_size'"):
    c.model.patch_size = None
    train.run(c, str(tmp_path / "b"))

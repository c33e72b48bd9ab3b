"""Parts of the joint-embedding methods: ResNet with global BatchNorm, heads, EMA schedules, monitors, optimizer
masks and schedules, multi-view input."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax import monitors
from ssl_jax import optim
from ssl_jax import sharding
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.data import transforms
from ssl_jax.methods import teacher
from ssl_jax.models import heads
from ssl_jax.models import resnet


def test_resnet50_has_torchvisions_parameter_count():
  m = resnet.ResNet(depth=50)
  v = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), False))
  # torchvision resnet50: 25,557,032 parameters, minus the 2048x1000 classifier and its bias.
  assert sum(x.size for x in jax.tree.leaves(v["params"])) == 25_557_032 - 2048 * 1000 - 1000
  assert m.num_features == 2048


def test_batchnorm_statistics_are_global_on_eight_devices():
  m = resnet.ResNet(stages=(1, 1), block="basic", width=8, stem="small")
  x = jnp.asarray(np.random.RandomState(0).normal(size=(16, 8, 8, 3)), jnp.float32)
  # Shift half the batch so per-device statistics would differ from global ones.
  x = x.at[8:].add(3.0)
  variables = m.init(jax.random.key(0), x[:1], False)
  apply = jax.jit(lambda v, x: m.apply(v, x, True, mutable=["batch_stats"]))
  out1, upd1 = apply(variables, jax.device_put(x, jax.devices()[0]))
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, jax.devices())
  out8, upd8 = apply(variables, jax.device_put(x, sharding.batch_sharding(mesh)))
  for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out8)):     # pooled features and the last feature map
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
  for a, b in zip(jax.tree.leaves(upd1), jax.tree.leaves(upd8)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
  # The stem's running mean moved towards the global batch mean of its conv output (momentum 0.9, from 0).
  conv = nn.Conv(8, (3, 3), 1, padding=1, use_bias=False)
  y = conv.apply({"params": variables["params"]["stem_conv"]}, x)
  np.testing.assert_allclose(np.asarray(upd8["batch_stats"]["stem_bn"]["mean"]), 0.1 * np.asarray(y.mean((0, 1, 2))),
                             rtol=1e-4, atol=1e-6)


def test_mlp_head_last_batchnorm_variants():
  x = jnp.asarray(np.random.RandomState(0).normal(size=(32, 6)), jnp.float32)
  for last_bn, n_bn_params in (("", 1), ("affine", 2), ("scale", 2), ("plain", 1)):
    m = heads.MLP(dims=(16, 4), last_bn=last_bn, use_bias=False)
    v = m.init(jax.random.key(0), x, False)
    assert len(v["params"]) == 2 + n_bn_params, last_bn
    if last_bn == "plain":
      y, _ = m.apply(v, x, True, mutable=["batch_stats"])
      np.testing.assert_allclose(np.asarray(y.mean(0)), 0.0, atol=1e-5)
      np.testing.assert_allclose(np.asarray(y.std(0)), 1.0, atol=1e-3)


def test_dino_head_gives_cosines_to_the_prototypes():
  m = heads.DINOHead(out_dim=10, hidden_dim=16, bottleneck_dim=8)
  x = jnp.asarray(np.random.RandomState(0).normal(size=(5, 12)), jnp.float32)
  v = nn.unbox(m.init(jax.random.key(0), x))
  logits = m.apply(v, x)
  assert logits.shape == (5, 10) and float(jnp.max(jnp.abs(logits))) <= 1.0 + 1e-5
  # The prototypes start as DINO's do (PyTorch's default nn.Linear init: U(-1/sqrt(8), 1/sqrt(8)) for 8 inputs);
  # the MLP layers truncated-normal with std 0.02.
  wide = nn.unbox(heads.DINOHead(out_dim=4096, hidden_dim=16, bottleneck_dim=8).init(jax.random.key(1), x))["params"]
  proto = np.asarray(wide["prototypes"])
  assert proto.shape == (8, 4096) and np.abs(proto).max() <= 8 ** -0.5
  assert abs(proto.std() - 8 ** -0.5 / 3 ** 0.5) < 0.01 and abs(proto.mean()) < 0.01
  assert abs(np.asarray(wide["dense0"]["kernel"]).std() - 0.02) < 0.004
  # Weight normalisation: the scale of the prototypes does not matter.
  scaled = {"params": dict(v["params"], prototypes=7.0 * v["params"]["prototypes"])}
  np.testing.assert_allclose(np.asarray(m.apply(scaled, x)), np.asarray(logits), atol=1e-5)
  # DINO's use_bn_in_head: BatchNorm after the two hidden layers, statistics of the batch in training.
  bn = heads.DINOHead(out_dim=10, hidden_dim=16, bottleneck_dim=8, use_bn=True)
  v = nn.unbox(bn.init(jax.random.key(0), x))
  assert set(v["batch_stats"]) == {"bn0", "bn1"}
  y, upd = bn.apply(v, x, True, mutable=["batch_stats"])
  assert y.shape == (5, 10) and float(jnp.max(jnp.abs(y))) <= 1.0 + 1e-5
  assert not np.allclose(np.asarray(upd["batch_stats"]["bn0"]["mean"]), 0.0)


def test_cosine_momentum_and_temperature_schedules():
  cos = lambda s: float(teacher.cosine_increase(s, 100, 0.996))
  assert cos(0) == pytest.approx(0.996) and cos(100) == pytest.approx(1.0) and cos(50) == pytest.approx(0.998)
  assert cos(25) == pytest.approx(1 - 0.004 * (np.cos(np.pi / 4) + 1) / 2)
  assert cos(1000) == pytest.approx(1.0)
  # DINO: np.linspace(0.04, 0.07, 3) over epochs of 10 steps, then 0.07.
  warm = lambda s: float(teacher.epoch_warmup(s, 10, 3, 0.04, 0.07))
  assert [warm(s) for s in (0, 9, 10, 19, 20, 29, 30, 1000)] == pytest.approx([0.04] * 2 + [0.055] * 2 + [0.07] * 4)
  assert float(teacher.epoch_warmup(5, 10, 0, 0.04, 0.07)) == pytest.approx(0.07)
  assert [float(teacher.epoch_warmup(s, 10, 1, 0.04, 0.07)) for s in (9, 10)] == pytest.approx([0.04, 0.07])
  t = {"w": jnp.array([1.0, 2.0])}
  s = {"w": jnp.array([3.0, 0.0])}
  np.testing.assert_allclose(np.asarray(teacher.ema_update(t, s, 0.9)["w"]), [1.2, 1.8], rtol=1e-6)


def test_weight_decay_schedule_and_frozen_parameters():
  wd = optim.weight_decay_schedule(0.04, 0.4, 100)
  assert float(wd(0)) == pytest.approx(0.04) and float(wd(100)) == pytest.approx(0.4)
  assert float(wd(50)) == pytest.approx(0.22)
  assert optim.weight_decay_schedule(0.05, None, 100) == 0.05
  params = {"net": {"encoder": {"vit": {"embedding": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}},
                                "other": {"kernel": jnp.ones((3, 3))}}}}
  with pytest.raises(ValueError, match=r"optim.frozen: \['net/encoder/embedding/.\*'\] match no parameter path"):
    optim.make(name="adamw", learning_rate=0.1, frozen=("net/encoder/embedding/.*",)).init(params)   # a typo
  tx = optim.make(name="adamw", learning_rate=0.1, weight_decay=wd, frozen=("net/encoder/vit/embedding/.*",))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, state = tx.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(np.asarray(new["net"]["encoder"]["vit"]["embedding"]["kernel"]), 1.0)
  np.testing.assert_array_equal(np.asarray(new["net"]["encoder"]["vit"]["embedding"]["bias"]), 1.0)
  # adamw's first step: -lr * (sign(g) + wd(0) * p) = -0.1 * (1 + 0.04)
  np.testing.assert_allclose(np.asarray(new["net"]["encoder"]["other"]["kernel"]), 1 - 0.1 * 1.04, rtol=1e-5)


@pytest.mark.parametrize("everything", [False, True])
def test_weight_decay_skips_biases_and_norms_unless_told(everything):
  """MAE/DINO/BYOL/SimCLR leave biases and normalisation parameters undecayed; MoCo v3's AdamW decays them all, and
  LARS over every parameter (SwAV's LARC) adapts them too."""
  params = {"net": {"fc": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)}, "ln": {"scale": jnp.ones(3)},
                    "attn": {"qkv_bias": jnp.ones((2, 3, 4))}}}

  def step(name):          # one update from a zero gradient: only the weight decay moves a parameter
    tx = optim.make(name=name, learning_rate=0.1, weight_decay=0.5, decay_biases_and_norms=everything)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    return jax.tree.map(np.asarray, optax.apply_updates(params, updates))["net"]
  adamw, lars = step("adamw"), step("lars")
  np.testing.assert_allclose(adamw["fc"]["kernel"], 1 - 0.1 * 0.5, rtol=1e-6)
  # LARS scales a matrix's update by its trust ratio 0.001 * |p| / |wd p|, never a bias's or a norm's.
  np.testing.assert_allclose(lars["fc"]["kernel"], 1 - 0.1 * 0.5 * 0.001 / 0.5, rtol=1e-6)
  for new, decayed in ((adamw, 1 - 0.1 * 0.5), (lars, 1 - 0.1 * 0.5 * 0.001 / 0.5)):
    for leaf in (new["fc"]["bias"], new["ln"]["scale"], new["attn"]["qkv_bias"]):
      np.testing.assert_allclose(leaf, decayed if everything else 1.0, rtol=1e-6)


@pytest.mark.parametrize("lr_in_momentum", [True, False])
def test_lars_momentum_with_the_learning_rate_inside_or_outside(lr_in_momentum):
  """SimCLR's LARS: v = 0.9 v + lr g; BYOL's and MoCo v3's: v = 0.9 v + g, p -= lr v. A bias (no trust ratio), g = 1,
  lr 0.1 then 0.2: 1 - 0.1 - (0.09 + 0.2) = 0.61, or 1 - 0.1 - 0.2 * 1.9 = 0.52. A matrix's first step is scaled by
  the trust ratio 0.001 * |p| / |g| = 0.001 either way."""
  params = {"fc": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
  tx = optim.make(name="lars", learning_rate=lambda count: 0.1 * (count + 1), lr_in_momentum=lr_in_momentum)
  state, grads = tx.init(params), jax.tree.map(jnp.ones_like, params)
  history = []
  for _ in range(2):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(jax.tree.map(np.asarray, params))
  np.testing.assert_allclose(history[0]["fc"]["kernel"], 1 - 0.1 * 0.001, rtol=1e-7)
  np.testing.assert_allclose(history[1]["fc"]["bias"], 0.61 if lr_in_momentum else 0.52, rtol=1e-6)


def test_frozen_until_leaves_parameters_out_then_starts_their_optimizer_afresh():
  """DINO's frozen last layer: untouched (no update, no decay) for n updates, then AdamW's first step of a fresh
  optimizer at the learning rate of the current step: -lr(n) * (g / |g| + wd * p)."""
  params = {"net": {"a": {"kernel": jnp.ones((2, 2))}, "b": {"kernel": jnp.ones((2, 2))}}}
  lr = lambda count: 0.1 * (count + 1)
  tx = optim.make(name="adamw", learning_rate=lr, weight_decay=0.5, frozen_until=(("net/b/.*", 2),), grad_clip=1.0)
  state = tx.init(params)
  grads = jax.tree.map(lambda p: 3.0 * jnp.ones_like(p), params)
  history = []
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(jax.tree.map(np.asarray, params))
  np.testing.assert_array_equal(history[0]["net"]["b"]["kernel"], 1.0)
  np.testing.assert_array_equal(history[1]["net"]["b"]["kernel"], 1.0)
  np.testing.assert_allclose(history[2]["net"]["b"]["kernel"], 1.0 - 0.3 * (1.0 + 0.5), rtol=1e-5)
  np.testing.assert_allclose(history[0]["net"]["a"]["kernel"], 1.0 - 0.1 * (1.0 + 0.5), rtol=1e-5)
  with pytest.raises(ValueError, match=r"\['net/c/.\*'\] match no parameter path"):
    optim.make(name="adamw", learning_rate=lr, frozen_until=(("net/c/.*", 2),)).init(params)


def test_zero_lr_until_holds_parameters_while_adam_accumulates():
  """DINOv2's last layer: learning rate 0 for n updates, Adam's moments and step count accumulating meanwhile, so
  update n is Adam's (n+1)-th step, not a fresh optimizer's first (contrast `frozen_until` above)."""
  params = {"net": {"a": {"kernel": jnp.ones((2,))}, "b": {"kernel": jnp.ones((2,))}}}
  tx = optim.make(name="adamw", learning_rate=0.1, zero_lr_until_steps=(("net/b/.*", 2),))
  state = tx.init(params)
  grads = [jax.tree.map(lambda p: g * jnp.ones_like(p), params) for g in (1.0, -3.0, 2.0)]
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    if g is grads[1]:
      np.testing.assert_array_equal(params["net"]["b"]["kernel"], 1.0)
  m = sum((1 - 0.9) * 0.9 ** (2 - i) * g for i, g in enumerate((1.0, -3.0, 2.0))) / (1 - 0.9 ** 3)
  v = sum((1 - 0.999) * 0.999 ** (2 - i) * g * g for i, g in enumerate((1.0, -3.0, 2.0))) / (1 - 0.999 ** 3)
  np.testing.assert_allclose(params["net"]["b"]["kernel"], 1.0 - 0.1 * m / (np.sqrt(v) + 1e-8), rtol=1e-5)
  with pytest.raises(ValueError, match=r"zero_lr_until: \['net/c/.\*'\] match no parameter path"):
    optim.make(name="adamw", learning_rate=0.1, zero_lr_until_steps=(("net/c/.*", 2),)).init(params)


def test_lr_multipliers_per_module_clipping_and_sqrt_scaling():
  """DINOv2's patch-embedding lr x 0.2, its `clip_grad_norm_` per submodel, and its `sqrt_wrt_1024` rule."""
  params = {"net": {"vit": {"embedding": {"kernel": jnp.ones((2,))}, "block0": {"kernel": jnp.ones((2,))}},
                    "dino": {"kernel": jnp.ones((2,))}}}
  tx = optim.make(name="sgd", learning_rate=1.0, momentum=0.0, lr_multipliers=(("vit/embedding/", 0.2),))
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  assert updates["net"]["vit"]["embedding"]["kernel"].tolist() == pytest.approx([-0.2, -0.2])
  assert updates["net"]["vit"]["block0"]["kernel"].tolist() == updates["net"]["dino"]["kernel"].tolist() == [-1, -1]
  with pytest.raises(ValueError, match="optim.lr_multipliers"):
    optim.make(name="sgd", learning_rate=1.0, lr_multipliers=(("patch_embed", 0.2),)).init(params)
  clip = optim.clip_per_module(1.0)
  grads = {"net": {"vit": {"embedding": {"kernel": jnp.array([3.0, 0.0])}, "block0": {"kernel": jnp.array([0.0, 4.0])}},
                   "dino": {"kernel": jnp.array([0.3, 0.4])}}}
  out, _ = clip.update(grads, clip.init(grads))
  # net/vit has norm 5 (scaled by 1 / (5 + 1e-6)); net/dino has norm 0.5 (left alone).
  np.testing.assert_allclose(out["net"]["vit"]["embedding"]["kernel"], [0.6, 0.0], rtol=1e-5)
  np.testing.assert_allclose(out["net"]["vit"]["block0"]["kernel"], [0.0, 0.8], rtol=1e-5)
  np.testing.assert_allclose(out["net"]["dino"]["kernel"], [0.3, 0.4])
  assert optim.peak_learning_rate(4e-3, 2048, 1024, "sqrt") == pytest.approx(4e-3 * 2 ** 0.5)
  assert optim.peak_learning_rate(4e-3, 2048, 1024) == pytest.approx(8e-3)


# Lowers the per-module clip over eight modules and prints the program's digest.
CLIP_PROGRAM = """
import hashlib, jax, jax.numpy as jnp
from ssl_jax import optim
grads = {"net": {f"m{i}": {"kernel": jnp.ones((2,))} for i in range(8)}}
text = jax.jit(optim.clip_per_module(1.0).update).lower(grads, ()).as_text(debug_info=False)
print(hashlib.sha256(text.encode()).hexdigest())
"""


def test_per_module_clipping_is_the_same_program_in_every_process():
  """The modules' norms in the parameters' order, not a set's, which follows Python's per-process string hashing:
  a different program in each process would miss the persistent compilation cache on every restart."""
  digests = {subprocess.run([sys.executable, "-c", CLIP_PROGRAM], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONHASHSEED=str(seed))).stdout for seed in (1, 2)}
  assert len(digests) == 1, digests


def test_monitors_see_collapse():
  rng = np.random.RandomState(0)
  healthy = jnp.asarray(rng.normal(size=(256, 32)), jnp.float32)
  collapsed = jnp.broadcast_to(healthy[:1], healthy.shape) + 1e-6 * healthy
  m_ok, m_bad = monitors.collapse_metrics(healthy), monitors.collapse_metrics(collapsed)
  assert float(m_ok["monitor/embedding_std"]) == pytest.approx(1 / np.sqrt(32), rel=0.1)
  assert float(m_bad["monitor/embedding_std"]) < 1e-4
  assert float(m_ok["monitor/rankme"]) > 25 and float(m_bad["monitor/rankme"]) < 1.5
  assert float(monitors.effective_rank(jnp.eye(8))) == pytest.approx(8.0, rel=1e-4)
  assert float(monitors.entropy(jnp.zeros((3, 16)))) == pytest.approx(np.log(16), rel=1e-5)
  p = jnp.array([[2.0, 0.0]])
  expected = float(jnp.sum(jax.nn.softmax(p) * (jax.nn.log_softmax(p) - jnp.log(0.5))))
  assert float(monitors.kl_divergence(p, jnp.zeros((1, 2)))) == pytest.approx(expected, rel=1e-5)


def test_reports_effective_rank_is_float64_and_stable_where_the_monitors_is_not():
  """The report's RankMe (float64 singular values) against its closed form, and against the float32 monitor on a
  spectrum decaying over two decades: the monitor reads high, and moves under rounding-sized changes of its input
  (what differs between CPUs' kernels), where the report's does not."""
  from ssl_jax.evaluators import report
  eps = 1e-7
  p = np.array([3.0, 1.0, 0.0, 0.0]) / (4 + eps) + eps
  assert report.effective_rank(np.diag([3.0, 1.0, 0.0, 0.0])) == pytest.approx(np.exp(-np.sum(p * np.log(p))),
                                                                                rel=1e-12)
  rng = np.random.default_rng(0)
  n, d = 360, 192
  u, v = np.linalg.qr(rng.normal(size=(n, d)))[0], np.linalg.qr(rng.normal(size=(d, d)))[0]
  features = ((u * 10 * np.exp(-np.arange(d) / 12)) @ v.T + 0.5).astype(np.float32)
  exact = report.effective_rank(features)
  assert exact == pytest.approx(10.880, abs=1e-3)
  assert float(monitors.effective_rank(jnp.asarray(features))) - exact > 0.1      # the float32 Gram matrix's tail
  nudged = [features] + [(features * (1 + 1e-7 * rng.normal(size=features.shape))).astype(np.float32)
                         for _ in range(3)]
  spread = lambda values: max(values) - min(values)
  assert spread([report.effective_rank(f) for f in nudged]) < 1e-4
  assert spread([float(monitors.effective_rank(jnp.asarray(f))) for f in nudged]) > 1e-3


def test_multi_view_pipeline_groups_and_single_decode():
  src = sources.digits("train[:64]")
  calls = []

  class Counting:
    num_classes = 10

    def __len__(self):
      return len(src)

    def __getitem__(self, i):
      calls.append(i)
      return src[i]

  groups = (transforms.ViewGroup("global_crops", 2, 16, (0.4, 1.0), flip=False),
            transforms.ViewGroup("local_crops", 3, 8, (0.05, 0.4)))
  ds = pipeline.train_dataset(Counting(), seed=1, global_batch_size=16, transform=transforms.MultiViewAugment(groups))
  batch = next(iter(ds))
  views = batch["views"]
  assert views["global_crops"].shape == (16, 2, 16, 16, 3) and views["local_crops"].shape == (16, 3, 8, 8, 3)
  assert "image" not in batch and batch["label"].shape == (16,)
  assert len(calls) >= 16 and len(calls) == len(set(calls))   # each image read (decoded) once for its 5 views
  assert not np.array_equal(views["global_crops"][:, 0], views["global_crops"][:, 1])
  again = next(iter(pipeline.train_dataset(src, seed=1, global_batch_size=16,
                                           transform=transforms.MultiViewAugment(groups))))
  np.testing.assert_array_equal(views["local_crops"], again["views"]["local_crops"])


def test_alignment_and_uniformity_by_hand():
  from ssl_jax import monitors
  z1 = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
  z2 = np.array([[0.0, 5.0], [0.0, 1.0], [-1.0, -1.0]], np.float32)
  # Unit vectors: the pairs are at distances sqrt(2), 0 and 2.
  assert float(monitors.alignment(z1, z2)) == pytest.approx((2.0 + 0.0 + 4.0) / 3, rel=1e-6)
  # Pairs of z1 (normalised): squared distances 2, 2 - sqrt(2), 2 - sqrt(2).
  d2 = np.array([2.0, 2 - np.sqrt(2), 2 - np.sqrt(2)])
  assert float(monitors.uniformity(z1)) == pytest.approx(np.log(np.mean(np.exp(-2 * d2))), rel=1e-5)
  assert float(monitors.uniformity(np.ones((5, 3)))) == pytest.approx(0.0, abs=1e-6)   # collapsed


def test_learning_rate_schedules_warm_up_then_decay_by_hand():
  """Warm-up 0 -> peak over 4 steps, then to min_lr 0.1 at step 12: linear (BERT) passes 0.55 half way, cosine
  (MAE) 0.55 too at the half-way point and (1 + cos(pi / 4)) / 2 * 0.9 + 0.1 a quarter of the way; constant stays."""
  kw = dict(peak_lr=1.0, warmup_steps=4, total_steps=12, min_lr=0.1)
  linear, cosine = optim.lr_schedule(schedule="linear", **kw), optim.lr_schedule(schedule="cosine", **kw)
  constant = optim.lr_schedule(schedule="constant", **kw)
  for schedule in (linear, cosine, constant):
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 2, 4)], [0.0, 0.5, 1.0], rtol=1e-6)
  np.testing.assert_allclose([float(linear(s)) for s in (6, 8, 12, 20)], [0.775, 0.55, 0.1, 0.1], rtol=1e-6)
  np.testing.assert_allclose(float(cosine(6)), 0.1 + 0.9 * (1 + np.cos(np.pi / 4)) / 2, rtol=1e-6)
  np.testing.assert_allclose([float(cosine(s)) for s in (8, 12)], [0.55, 0.1], rtol=1e-6)
  np.testing.assert_allclose(float(constant(12)), 1.0)
  with pytest.raises(ValueError, match="unknown lr schedule"):
    optim.lr_schedule(schedule="exponential", **kw)
  # "step" (RotNet's lr table): the peak after the warm-up, x0.1 from step 6 on, x0.01 from step 9 on.
  step = optim.lr_schedule(schedule="step", decay_steps=(6, 9), decay_factor=0.1, **kw)
  np.testing.assert_allclose([float(step(s)) for s in (2, 4, 5, 6, 8, 9, 20)], [0.5, 1, 1, 0.1, 0.1, 0.01, 0.01],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="must increase and come after the warm-up"):
    optim.lr_schedule(schedule="step", decay_steps=(4, 9), **kw)
  # I-JEPA's warm-up starts at init_lr (2e-4 -> 1e-3 in the paper): 0.2 -> 1 over 4 steps here.
  for name in ("linear", "cosine", "constant"):
    warm = optim.lr_schedule(schedule=name, init_lr=0.2, **kw)
    np.testing.assert_allclose([float(warm(s)) for s in (0, 2, 4)], [0.2, 0.6, 1.0], rtol=1e-6)


def test_ijepa_momentum_is_linear_from_its_first_update():
  """The official `momentum_scheduler`: 0.996 at the first update (step 0), + 0.004 * step / total, 1 at the end."""
  values = [float(teacher.linear_increase(s, 100, 0.996)) for s in (0, 25, 100, 150)]
  np.testing.assert_allclose(values, [0.996, 0.997, 1.0, 1.0], rtol=1e-7)

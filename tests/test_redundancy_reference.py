"""Barlow Twins and VICReg through the trainer against transcriptions of their official training steps
(facebookresearch/barlowtwins `main.py`, facebookresearch/vicreg `main_vicreg.py`).

The reference re-implements, from the official code, what one iteration does after the backbone: the projector
(`Linear(bias=False)`-`BatchNorm1d`-`ReLU` layers and a last `Linear(bias=False)`; VICReg's hidden `Linear` layers
with a bias), called once per view (`self.projector(self.backbone(y1))`, then `y2`); Barlow Twins' `BatchNorm1d(affine
=False)` of the projections, `c = bn(z1).T @ bn(z2) / batch_size`, `on_diag + lambd * off_diag` with the official
`off_diagonal` (the flatten-and-view trick); VICReg's `mse_loss`, centred embeddings, `sqrt(var + 1e-4)` (unbiased),
the covariance over `batch_size - 1` divided by the feature count; `adjust_learning_rate` (10 warm-up "epochs" from 0,
cosine to 0.001 x the peak; Barlow Twins' separate learning rates for weights and for biases and BatchNorm, `p.ndim ==
1`), and the official `LARS.step` (weight decay and adaptation skipped for 1-D parameters, `q = eta * |p| / |dp|`,
`mu = momentum * mu + dp`, `p -= lr * mu`). The backbone is ours on both sides (the ResNet is checked against
torchvision elsewhere), each view its own training-mode batch as in the official code. The reference is written with
`jax.numpy` (PyTorch is not a test dependency) and differentiated by `jax.grad`; its optimizer is numpy.

Both sides start from the same weights and see the same augmented views; the test compares the loss of every step
and every parameter after the steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.methods import joint

STEPS, TOTAL, WARMUP = 4, 12, 2          # the learning rate: 0, half the peak, the peak, then cosine
BATCH = 16


def _config(method):
  c = load_config(f"configs/tiny/{method}.py")
  c.update(dict(batch_size=BATCH, total_epochs=None, total_steps=TOTAL, log_every=1, ckpt_every=0))
  c.optim.warmup_epochs, c.optim.warmup_steps = None, WARMUP
  c.optim.min_lr = 0.001 * c.optim.base_lr * BATCH / 256          # the official end learning rate
  c.model.width = 8
  c.method.projector = dict(c.method.projector, dims=(32, 32, 16))
  return c


def off_diagonal(x):
  """The official `off_diagonal`: every element of a square matrix but its diagonal, flattened."""
  n = x.shape[0]
  return x.flatten()[:-1].reshape(n - 1, n + 1)[:, 1:].flatten()


def projector(w, x, hidden_bias):
  """The official projector on one view's features: (Linear-BN-ReLU) x 2, Linear; `hidden_bias` adds VICReg's
  biases (random, as at initialisation) to the hidden Linear layers."""
  for i in range(2):
    x = x @ w[f"dense{i}"]["kernel"] + hidden_bias[i]
    mean, var = x.mean(0), x.var(0)                             # BatchNorm1d in training: the biased variance
    x = (x - mean) / jnp.sqrt(var + 1e-5) * w[f"bn{i}"]["scale"] + w[f"bn{i}"]["bias"]
    x = jnp.maximum(x, 0)
  return x @ w["dense2"]["kernel"]


def barlow_twins(z1, z2, lambd=0.0051):
  bn = lambda z: (z - z.mean(0)) / jnp.sqrt(z.var(0) + 1e-5)   # BatchNorm1d(affine=False)
  c = bn(z1).T @ bn(z2) / z1.shape[0]
  return jnp.sum((jnp.diagonal(c) - 1) ** 2) + lambd * jnp.sum(off_diagonal(c) ** 2)


def vicreg(x, y, sim=25.0, std=25.0, cov=1.0):
  repr_loss = jnp.mean((x - y) ** 2)
  x, y = x - x.mean(0), y - y.mean(0)
  std_x, std_y = jnp.sqrt(x.var(0, ddof=1) + 1e-4), jnp.sqrt(y.var(0, ddof=1) + 1e-4)
  std_loss = jnp.mean(jax.nn.relu(1 - std_x)) / 2 + jnp.mean(jax.nn.relu(1 - std_y)) / 2
  n, d = x.shape
  cov_loss = jnp.sum(off_diagonal(x.T @ x / (n - 1)) ** 2) / d + jnp.sum(off_diagonal(y.T @ y / (n - 1)) ** 2) / d
  return sim * repr_loss + std * std_loss + cov * cov_loss


class Reference:
  """The official iteration after the backbone, with the official LARS and learning-rate schedule (numpy)."""

  def __init__(self, method, config, net_params, encoder_stats, rng):
    self.method, self.config = method, config
    self.params = jax.tree.map(np.array, net_params)
    self.stats = encoder_stats
    width = config.method.projector["dims"][0]
    self.hidden_bias = [rng.normal(size=width).astype(np.float32) * 0.1 if method == "vicreg" else
                        np.zeros(width, np.float32) for _ in range(2)]
    self.mu = jax.tree.map(np.zeros_like, self.params)

  def lr(self, step):
    """`adjust_learning_rate`: the schedule times the weights' (and Barlow Twins' biases') base rate."""
    base = BATCH / 256
    if step < WARMUP:
      lr = base * step / WARMUP
    else:
      q = 0.5 * (1 + np.cos(np.pi * (step - WARMUP) / (TOTAL - WARMUP)))
      lr = base * q + base * 0.001 * (1 - q)
    if self.method == "barlow_twins":
      return lr * 0.2, lr * 0.0048                    # --learning-rate-weights, --learning-rate-biases
    return lr * 0.2, lr * 0.2                         # VICReg: one group, base_lr 0.2

  def step(self, it, net, views):
    value, grads = jax.value_and_grad(self._loss_fn(net))(self.params, views)
    lr_w, lr_b = self.lr(it)
    wd, eta, momentum = self.config.optim.weight_decay, 0.001, self.config.optim.momentum

    def update(p, g, mu):
      p, dp = np.asarray(p, np.float64), np.asarray(g, np.float64)
      if p.ndim != 1:                                 # weight_decay_filter, lars_adaptation_filter: p.ndim == 1
        dp = dp + wd * p
        param_norm, update_norm = np.linalg.norm(p), np.linalg.norm(dp)
        q = eta * param_norm / update_norm if param_norm > 0 and update_norm > 0 else 1.0
        dp = dp * q
      mu = momentum * mu + dp
      return (p - (lr_w if p.ndim != 1 else lr_b) * mu).astype(np.float32), mu

    out = jax.tree.map(update, self.params, grads, self.mu)
    self.params = jax.tree.map(lambda o: o[0], out, is_leaf=lambda x: isinstance(x, tuple))
    self.mu = jax.tree.map(lambda o: o[1], out, is_leaf=lambda x: isinstance(x, tuple))
    return float(value)

  def _loss_fn(self, net):
    encoder = net.encoder

    def loss(params, views):
      zs = []
      for v in range(2):                              # self.projector(self.backbone(y1)), then y2
        variables = {"params": params["encoder"], "batch_stats": self.stats}
        out, _ = encoder.apply(variables, views[:, v], True, mutable=["batch_stats"])
        zs.append(projector(params["projector"], out["pooled"], self.hidden_bias))
      return barlow_twins(*zs) if self.method == "barlow_twins" else vicreg(*zs)
    return loss


@pytest.mark.parametrize("method", ["barlow_twins", "vicreg"])
def test_steps_equal_the_official_training_step(method):
  """Four updates through the trainer (LARS with its exclusions, Barlow Twins' learning rate for biases and
  BatchNorm, the warm-up and cosine schedule) equal the official iteration's: the loss of every step and every
  parameter of the encoder and projector after them."""
  c = _config(method)
  src = sources.digits("train[:64]")
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  augment = inputs.device_stage(c.data)
  data = iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=BATCH))
  state = program.init()
  ref = Reference(method, c, state.params["net"], state.extra["batch_stats"]["encoder"], np.random.default_rng(0))
  ours, theirs = [], []
  with jax.set_mesh(mesh):
    for it in range(STEPS):
      batch = pipeline.to_global(next(data), sharding.batch_sharding(mesh))
      # The views the jitted step augments, drawn here with the step's own key (train.train_step).
      key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
      views = np.asarray(augment(batch, jax.random.split(key)[0])["views"]["global_crops"])
      # Running BatchNorm statistics only matter in evaluation; the reference reads the trainer's at each step.
      ref.stats = state.extra["batch_stats"]["encoder"]
      theirs.append(ref.step(it, program.method.net, views))
      state, metrics = program.step(state, batch)
      ours.append(float(metrics["ssl_loss"]))
  np.testing.assert_allclose(ours, theirs, rtol=2e-5)
  assert abs(ours[-1] - ours[0]) > 1e-3 * abs(ours[0]), ours         # the steps did something
  ours_params = jax.tree.leaves_with_path(state.params["net"])
  theirs_params = dict((jax.tree_util.keystr(p), v) for p, v in jax.tree.leaves_with_path(ref.params))
  moved = 0
  for path, x in ours_params:
    name = jax.tree_util.keystr(path)
    np.testing.assert_allclose(np.asarray(x), theirs_params[name], rtol=1e-4, atol=1e-5, err_msg=name)
    moved += name in theirs_params
  assert moved == len(theirs_params)

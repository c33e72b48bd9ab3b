"""Barlow Twins, VICReg and SimSiam through the trainer against transcriptions of their official training steps
(facebookresearch/barlowtwins `main.py`, facebookresearch/vicreg `main_vicreg.py`, facebookresearch/simsiam
`main_simsiam.py` and `simsiam/builder.py`).

The reference re-implements, from the official code, what one iteration does after the backbone, called once per
view (`self.projector(self.backbone(y1))`, then `y2`):
- the heads: `Linear(bias=False)`-`BatchNorm1d`-`ReLU` layers and a last `Linear(bias=False)` (VICReg's hidden
  `Linear` layers with a bias; SimSiam's last projector layer followed by `BatchNorm1d(affine=False)`, its
  predictor `Linear(bias=False)`-`BatchNorm1d`-`ReLU`-`Linear` with a bias);
- the losses: Barlow Twins' `BatchNorm1d(affine=False)` of the projections, `c = bn(z1).T @ bn(z2) / batch_size`,
  `on_diag + lambd * off_diag` with the official `off_diagonal` (the flatten-and-view trick); VICReg's `mse_loss`,
  centred embeddings, `sqrt(var + 1e-4)` (unbiased), the covariance over `batch_size - 1` divided by the feature
  count; SimSiam's `-(cos(p1, z2.detach()).mean() + cos(p2, z1.detach()).mean()) * 0.5` (`nn.CosineSimilarity`);
- the optimizers: `adjust_learning_rate` (Barlow Twins, VICReg: 10 warm-up "epochs" from 0, cosine to 0.001 x the
  peak; Barlow Twins' separate learning rates for weights and for biases and BatchNorm, `p.ndim == 1`) and the
  official `LARS.step` (weight decay and adaptation skipped for 1-D parameters, `q = eta * |p| / |dp|`, `mu =
  momentum * mu + dp`, `p -= lr * mu`); SimSiam's `torch.optim.SGD` (weight decay on every parameter, `buf =
  momentum * buf + dp`) with the cosine learning rate and `--fix-pred-lr` (the predictor at the initial rate).
The backbone is ours on both sides (the ResNet is checked against torchvision elsewhere), each view its own
training-mode batch as in the official code. The reference is written with `jax.numpy` (PyTorch is not a test
dependency) and differentiated by `jax.grad`; its optimizers are numpy. SimSiam's learning rate follows the cosine
per step here (the official code sets it once per epoch: the one deviation, named in its config).

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

STEPS, TOTAL, WARMUP = 4, 12, 2          # LARS methods' learning rate: 0, half the peak, the peak, then cosine
BATCH = 16


def _config(method):
  c = load_config(f"configs/tiny/{method}.py")
  c.update(dict(batch_size=BATCH, total_epochs=None, total_steps=TOTAL, log_every=1, ckpt_every=0))
  c.model.width = 8
  c.method.projector = dict(c.method.projector, dims=(32, 32, 16))
  if method == "simsiam":
    c.method.predictor = dict(c.method.predictor, dims=(8, 16))
  else:
    c.optim.warmup_epochs, c.optim.warmup_steps = None, WARMUP
    c.optim.min_lr = 0.001 * c.optim.base_lr * BATCH / 256          # the official end learning rate
  return c


def off_diagonal(x):
  """The official `off_diagonal`: every element of a square matrix but its diagonal, flattened."""
  n = x.shape[0]
  return x.flatten()[:-1].reshape(n - 1, n + 1)[:, 1:].flatten()


def batch_norm(x, w=None):
  """`BatchNorm1d` in training: the batch's mean and biased variance, eps 1e-5, then the affine map if any."""
  x = (x - x.mean(0)) / jnp.sqrt(x.var(0) + 1e-5)
  return x if w is None else x * w["scale"] + w["bias"]


def mlp(w, x, layers, biases=None, last_bias=False, last_norm=False):
  """(Linear-BN-ReLU) x (layers - 1), then Linear [+ bias] [-> BatchNorm1d(affine=False)]; `biases` adds VICReg's
  hidden-layer biases (random, as at initialisation)."""
  for i in range(layers - 1):
    x = x @ w[f"dense{i}"]["kernel"] + (0 if biases is None else biases[i])
    x = jnp.maximum(batch_norm(x, w[f"bn{i}"]), 0)
  last = w[f"dense{layers - 1}"]
  x = x @ last["kernel"] + (last["bias"] if last_bias else 0)
  return batch_norm(x) if last_norm else x


def barlow_twins(z1, z2, lambd=0.0051):
  c = batch_norm(z1).T @ batch_norm(z2) / z1.shape[0]                 # bn: BatchNorm1d(affine=False)
  return jnp.sum((jnp.diagonal(c) - 1) ** 2) + lambd * jnp.sum(off_diagonal(c) ** 2)


def vicreg(x, y, sim=25.0, std=25.0, cov=1.0):
  repr_loss = jnp.mean((x - y) ** 2)
  x, y = x - x.mean(0), y - y.mean(0)
  std_x, std_y = jnp.sqrt(x.var(0, ddof=1) + 1e-4), jnp.sqrt(y.var(0, ddof=1) + 1e-4)
  std_loss = jnp.mean(jax.nn.relu(1 - std_x)) / 2 + jnp.mean(jax.nn.relu(1 - std_y)) / 2
  n, d = x.shape
  cov_loss = jnp.sum(off_diagonal(x.T @ x / (n - 1)) ** 2) / d + jnp.sum(off_diagonal(y.T @ y / (n - 1)) ** 2) / d
  return sim * repr_loss + std * std_loss + cov * cov_loss


def simsiam(p1, p2, z1, z2):
  def cos(a, b):                                  # nn.CosineSimilarity(dim=1), eps 1e-8
    return jnp.sum(a * b, 1) / jnp.maximum(jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1), 1e-8)
  z1, z2 = jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2)
  return -(cos(p1, z2).mean() + cos(p2, z1).mean()) * 0.5


class Reference:
  """The official iteration after the backbone, with the official optimizer and learning-rate schedule (numpy)."""

  def __init__(self, method, config, net, net_params):
    self.method, self.config, self.encoder = method, config, net.encoder
    self.params = jax.tree.map(np.array, net_params)
    self.mu = jax.tree.map(np.zeros_like, self.params)
    width = config.method.projector["dims"][0]
    rng = np.random.default_rng(0)
    self.hidden_bias = [rng.normal(size=width).astype(np.float32) * 0.1 for _ in range(2)] \
        if method == "vicreg" else None
    self.stats = None
    self.value_and_grad = jax.jit(jax.value_and_grad(self.loss))    # one compile, not one per operation

  def lr(self, step, path):
    """The learning rate of the parameter at `path` at `step`."""
    base = BATCH / 256
    if self.method == "simsiam":                    # adjust_learning_rate, --fix-pred-lr
      init_lr = 0.05 * base
      return init_lr if path.startswith("['predictor']") else init_lr * 0.5 * (1 + np.cos(np.pi * step / TOTAL))
    if step < WARMUP:
      lr = base * step / WARMUP
    else:
      q = 0.5 * (1 + np.cos(np.pi * (step - WARMUP) / (TOTAL - WARMUP)))
      lr = base * q + base * 0.001 * (1 - q)
    if self.method == "barlow_twins" and path.endswith(("['bias']", "['scale']")):
      return lr * 0.0048                              # --learning-rate-biases (p.ndim == 1)
    return lr * 0.2                                   # --learning-rate-weights; VICReg's base_lr

  def loss(self, params, views, stats):
    heads = []
    for v in range(2):                                # self.projector(self.backbone(y1)), then y2
      out, _ = self.encoder.apply({"params": params["encoder"], "batch_stats": stats}, views[:, v], True,
                                  mutable=["batch_stats"])
      if self.method == "simsiam":
        z = mlp(params["projector"], out["pooled"], 3, last_norm=True)
        heads.append((z, mlp(params["predictor"], z, 2, last_bias=True)))
      else:
        heads.append(mlp(params["projector"], out["pooled"], 3, biases=self.hidden_bias))
    if self.method == "simsiam":
      (z1, p1), (z2, p2) = heads
      return simsiam(p1, p2, z1, z2)
    return barlow_twins(*heads) if self.method == "barlow_twins" else vicreg(*heads)

  def step(self, it, views):
    value, grads = self.value_and_grad(self.params, views, self.stats)
    wd, momentum = self.config.optim.weight_decay, self.config.optim.momentum

    def update(path, p, g, mu):
      p, dp = np.asarray(p, np.float64), np.asarray(g, np.float64)
      if self.method == "simsiam":                    # SGD: weight decay on every parameter
        dp = dp + wd * p
      elif p.ndim != 1:                               # LARS: weight_decay_filter, lars_adaptation_filter
        dp = dp + wd * p
        param_norm, update_norm = np.linalg.norm(p), np.linalg.norm(dp)
        dp = dp * (0.001 * param_norm / update_norm if param_norm > 0 and update_norm > 0 else 1.0)
      mu = momentum * mu + dp
      return (p - self.lr(it, jax.tree_util.keystr(path)) * mu).astype(np.float32), mu

    out = jax.tree.map_with_path(update, self.params, grads, self.mu)
    pick = lambda i: jax.tree.map(lambda o: o[i], out, is_leaf=lambda x: isinstance(x, tuple))
    self.params, self.mu = pick(0), pick(1)
    return float(value)


@pytest.mark.parametrize("method", ["barlow_twins", "vicreg", "simsiam"])
def test_steps_equal_the_official_training_step(method):
  """Four updates through the trainer (LARS with its exclusions and Barlow Twins' learning rate for biases and
  BatchNorm through the warm-up and cosine; SimSiam's SGD with its constant predictor learning rate) equal the
  official iteration's: the loss of every step and every parameter of the encoder and heads after them."""
  c = _config(method)
  src = sources.digits("train[:64]")
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  augment = inputs.device_stage(c.data)
  data = iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=BATCH))
  state = program.init()
  ref = Reference(method, c, program.method.net, state.params["net"])
  ours, theirs = [], []
  with jax.set_mesh(mesh):
    for it in range(STEPS):
      batch = pipeline.to_global(next(data), sharding.batch_sharding(mesh))
      # The views the jitted step augments, drawn here with the step's own key (train.train_step).
      key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
      views = np.asarray(augment(batch, jax.random.split(key)[0])["views"]["global_crops"])
      # Running BatchNorm statistics only matter in evaluation; the reference reads the trainer's at each step.
      ref.stats = state.extra["batch_stats"]["encoder"]
      theirs.append(ref.step(it, views))
      state, metrics = program.step(state, batch)
      ours.append(float(metrics["ssl_loss"]))
  np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-6)
  assert abs(ours[-1] - ours[0]) > 1e-3 * abs(ours[0]), ours         # the steps did something
  theirs_params = {jax.tree_util.keystr(p): v for p, v in jax.tree.leaves_with_path(ref.params)}
  ours_params = {jax.tree_util.keystr(p): v for p, v in jax.tree.leaves_with_path(state.params["net"])}
  assert ours_params.keys() == theirs_params.keys()
  for name, x in ours_params.items():
    np.testing.assert_allclose(np.asarray(x), theirs_params[name], rtol=1e-4, atol=1e-5, err_msg=name)

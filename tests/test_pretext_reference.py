"""The pretext-task methods through the trainer against transcriptions of their official training steps.

RotNet (gidariss/FeatureLearningRotNet): `dataloader.py`'s `rotate_img` (90: `flipud(transpose)`, 180:
`fliplr(flipud)`, 270: `transpose(flipud)`) applied to the same augmented image, the four copies stacked per image and
flattened example-major (`_collate_fun`, then `batch.view([batch_size * rot, C, H, W])`), one training-mode forward
of the 4B images (BatchNorm over all of them), the classifier (AlexNet's fc block: `Linear(bias=False)`-
`BatchNorm1d`-`ReLU` layers and a last `Linear` with a bias), `CrossEntropyLoss`; the optimizer of
`Algorithm.py`: `torch.optim.SGD(lr, momentum=0.9, nesterov=True, weight_decay)` over every parameter, with the
learning rate of the `LUT_lr` table (here: the peak, x0.1 from step 2, x0.01 from step 3).

Jigsaw (bbrattoli/JigsawPuzzlePytorch, the paper's PyTorch reimplementation): from the jittered tiles in [0, 1]
(their cutting, crops and jitter are `ssl_jax.pretext`'s, checked in tests/test_pretext.py), `JigsawImageLoader`'s
`Normalize` with ImageNet's statistics then each tile normalised by its own `tile.mean()` and `tile.std()`
(unbiased), the tiles in puzzle order; `JigsawNetwork.forward`: the shared conv layers on each of the nine tiles, fc6
and ReLU per tile, `cat` in puzzle order, fc7 and ReLU, fc8 (dropout off here, so that both sides are
deterministic); `CrossEntropyLoss`; `torch.optim.SGD(momentum=0.9, weight_decay=5e-4)` over every parameter with
`adjust_learning_rate`'s step decay.

Colorization (richzhang/colorization, `resources/caffe_traininglayers.py` and the training net
`models/colorization_train_val_v2.prototxt`): every fourth pixel's ab (`data_ab_ss`, a 1 x 1 convolution of stride
4), `NNEncode` on the 10 nearest bins with Gaussian weights (sigma 5), `NonGrayMaskLayer` (an image counts when some
|ab| > 5), `PriorFactor` (the prior mixed with the uniform distribution over its non-zero bins, gamma 0.5, inverted and
normalised by its expectation under the prior) picked at each pixel's strongest bin, and the softmax cross-entropy
whose gradient `ClassRebalanceMultLayer` scales by that factor: the loss and its gradient with respect to every
parameter of one step, against the method's.

Context encoders (pathak22/context-encoder `train.lua`, centre region, `wtl2=0.999 overlapPred=4`): the centre square
but its 4-pixel ring filled with the mean colour, `MSECriterion` on the whole square with the gradient scaled by
`wtl2Matrix` (10 wtl2 on the ring, wtl2 inside), `BCECriterion` on the discriminator's real and fake batches, and the
generator's `(1 - wtl2)` adversarial term through the discriminator: the loss and the gradients of the generator and of
the discriminator of one step, against the method's.

The backbone is ours on both sides (the ResNet is checked against torchvision elsewhere); the references are written
with `jax.numpy` and numpy and differentiated by `jax.grad`. Both sides start from the same weights and see the same
augmented images; the tests compare the loss of every step and every parameter after the steps.
"""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import load_config
from ssl_jax import pretext
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.methods import colorization
from test_siamese_reference import mlp

STEPS, BATCH, DECAY = 4, 16, (2, 3)


def rotate_img(img, rot):
  """The official `rotate_img` of an `[H, W, C]` image."""
  if rot == 0:
    return img
  if rot == 90:
    return np.flipud(np.transpose(img, (1, 0, 2)))
  if rot == 180:
    return np.fliplr(np.flipud(img))
  return np.transpose(np.flipud(img), (1, 0, 2))


def _assert_equal_runs(ours, theirs, our_params, their_params):
  """The losses of every step within 2e-5 (and moving), every parameter after the steps within 1e-4."""
  np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-6)
  assert abs(ours[-1] - ours[0]) > 1e-3 * abs(ours[0]), ours                 # the steps did something
  named = lambda tree: {jax.tree_util.keystr(p): v for p, v in jax.tree.leaves_with_path(tree)}
  ours_named, theirs_named = named(our_params), named(their_params)
  assert ours_named.keys() == theirs_named.keys()
  for name, x in ours_named.items():
    np.testing.assert_allclose(np.asarray(x), theirs_named[name], rtol=1e-4, atol=1e-5, err_msg=name)


class RotNetReference:
  """The official iteration after the backbone, with PyTorch's SGD (Nesterov) and the LUT learning rate (numpy)."""

  def __init__(self, config, net, net_params):
    self.config, self.encoder = config, net.encoder
    self.params = jax.tree.map(np.array, net_params)
    self.buf = None                                   # PyTorch creates the momentum buffer at the first step
    self.layers = len(config.method.head["dims"])
    self.value_and_grad = jax.jit(jax.value_and_grad(self.loss))

  def lr(self, step):
    peak = self.config.optim.base_lr * BATCH / self.config.optim.lr_batch_base
    return peak * 0.1 ** sum(step >= d for d in DECAY)

  def loss(self, params, images, labels, stats):
    out, _ = self.encoder.apply({"params": params["encoder"], "batch_stats": stats}, images, True,
                                mutable=["batch_stats"])
    logits = mlp(params["projector"], out["pooled"], self.layers, last_bias=True)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

  def step(self, it, images):
    rotated = np.stack([np.stack([rotate_img(x, r) for r in (0, 90, 180, 270)]) for x in images])   # [B, 4, ...]
    labels = np.tile(np.arange(4), len(images))
    value, grads = self.value_and_grad(self.params, rotated.reshape((-1,) + images.shape[1:]), labels, self.stats)
    wd, momentum = self.config.optim.weight_decay, self.config.optim.momentum
    grads = jax.tree.map(lambda g, p: np.asarray(g, np.float64) + wd * np.asarray(p, np.float64), grads, self.params)
    self.buf = grads if self.buf is None else jax.tree.map(lambda b, d: momentum * b + d, self.buf, grads)
    step = jax.tree.map(lambda d, b: d + momentum * b, grads, self.buf)                  # nesterov
    self.params = jax.tree.map(lambda p, s: (p - self.lr(it) * s).astype(np.float32), self.params, step)
    return float(value)


def test_rotnet_steps_equal_the_official_training_step():
  """Four updates through the trainer (SGD with Nesterov momentum and weight decay on every parameter, the step
  schedule across two decays, the fc-block classifier) equal the official iteration's: the loss of every step and
  every parameter of the encoder and classifier after them."""
  c = load_config("configs/tiny/rotation.py")
  c.update(dict(batch_size=BATCH, total_epochs=None, total_steps=6, log_every=1, ckpt_every=0))
  c.model.width = 8
  c.method.head = dict(dims=(16, 4), hidden_bn=True)
  c.optim.decay_epochs = tuple(float(d) / (64 // BATCH) for d in DECAY)               # 4 steps per epoch
  src = sources.digits("train[:64]")
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  assert program.durations.lr_decay == DECAY
  augment = inputs.device_stage(c.data)
  data = iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=BATCH))
  state = program.init()
  ref = RotNetReference(c, program.method.net, state.params["net"])
  ours, theirs = [], []
  with jax.set_mesh(mesh):
    for it in range(STEPS):
      batch = pipeline.to_global(next(data), sharding.batch_sharding(mesh))
      key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
      images = np.asarray(augment(batch, jax.random.split(key)[0])["image"])
      ref.stats = state.extra["batch_stats"]["encoder"]
      theirs.append(ref.step(it, images))
      state, metrics = program.step(state, batch)
      ours.append(float(metrics["ssl_loss"]))
  _assert_equal_runs(ours, theirs, state.params["net"], ref.params)


class JigsawReference:
  """The reimplementation's iteration after the backbone, with PyTorch's SGD and the step learning rate (numpy)."""

  def __init__(self, config, net, net_params):
    self.config, self.encoder = config, net.encoder
    self.params = jax.tree.map(np.array, net_params)
    self.buf = None
    self.value_and_grad = jax.jit(jax.value_and_grad(self.loss))

  def lr(self, step):
    return self.config.optim.base_lr * BATCH / 256 * 0.1 ** sum(step >= d for d in DECAY)

  def loss(self, params, tiles, labels, stats):
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    tiles = (tiles - mean) / std                                          # transforms.Normalize (ImageNet)
    m = tiles.mean(axis=(2, 3, 4), keepdims=True)
    s = tiles.std(axis=(2, 3, 4), keepdims=True, ddof=1)
    tiles = (tiles - m) / s                                               # Normalize(mean=[m] * 3, std=[s] * 3)
    b, t = tiles.shape[:2]
    out, _ = self.encoder.apply({"params": params["encoder"], "batch_stats": stats},
                                tiles.reshape((b * t,) + tiles.shape[2:]), True, mutable=["batch_stats"])
    w = params["projector"]
    dense = lambda name, x: x @ w[name]["kernel"] + w[name]["bias"]
    fc6 = jnp.maximum(dense("fc6", out["pooled"]), 0).reshape(b, -1)    # per tile, then cat in puzzle order
    logits = dense("fc8", jnp.maximum(dense("fc7", fc6), 0))
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

  def step(self, it, tiles, labels):
    value, grads = self.value_and_grad(self.params, tiles, labels, self.stats)
    wd, momentum = self.config.optim.weight_decay, self.config.optim.momentum
    grads = jax.tree.map(lambda g, p: np.asarray(g, np.float64) + wd * np.asarray(p, np.float64), grads, self.params)
    self.buf = grads if self.buf is None else jax.tree.map(lambda b, d: momentum * b + d, self.buf, grads)
    self.params = jax.tree.map(lambda p, b: (p - self.lr(it) * b).astype(np.float32), self.params, self.buf)
    return float(value)


def test_jigsaw_steps_equal_the_official_training_step():
  """Four updates through the trainer (the per-tile normalisations, the context-free classifier over the tiles in
  puzzle order, SGD with weight decay on every parameter across two decays) equal the reimplementation's: the loss
  of every step and every parameter of the encoder and classifier after them."""
  c = load_config("configs/tiny/jigsaw.py")
  c.update(dict(batch_size=BATCH, total_epochs=None, total_steps=6, log_every=1, ckpt_every=0))
  c.model.width = 8
  c.method.head = dict(tile_dim=8, hidden_dim=16, dropout=0.0)
  c.method.num_permutations = 10
  c.optim.decay_epochs = tuple(float(d) / (64 // BATCH) for d in DECAY)
  src = sources.digits("train[:64]")
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  method = program.method
  stage = inputs.device_stage(c.data)
  data = iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=BATCH))
  state = program.init()
  ref = JigsawReference(c, method.net, state.params["net"])
  ours, theirs = [], []
  with jax.set_mesh(mesh):
    for it in range(STEPS):
      batch = pipeline.to_global(next(data), sharding.batch_sharding(mesh))
      # The puzzle the step draws (train.train_step's key, then Jigsaw.loss's split), its jittered tiles in [0, 1].
      key = jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))[0]
      k_puzzle, k_jitter = jax.random.split(key)
      images = np.asarray(stage(batch)["image"], np.float64)                   # normalised, as the method receives it
      unit = images * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])
      tiles, labels = pretext.jigsaw(k_puzzle, jnp.asarray(unit, jnp.float32), np.asarray(method.permutations),
                                     tile_crop=method.tile_size)
      tiles = pretext.jitter_tiles(k_jitter, tiles)
      ref.stats = state.extra["batch_stats"]["encoder"]
      theirs.append(ref.step(it, np.asarray(tiles, np.float64), np.asarray(labels)))
      state, metrics = program.step(state, batch)
      ours.append(float(metrics["ssl_loss"]))
  _assert_equal_runs(ours, theirs, state.params["net"], ref.params)


def colorization_reference_loss(logits, unit, bins, prior, momentum, stride=2, neighbours=10, sigma=5.0, lam=0.5):
  """The official training layers' loss on `[B, h, w, Q]` logits for images in [0, 1] (the prior's update, as the
  method keeps it, first)."""
  ab = pretext.rgb_to_lab(unit)[:, ::stride, ::stride, 1:]                                 # data_ab_ss
  d2 = jnp.sum((ab[..., None, :] - bins) ** 2, axis=-1)
  order = jnp.argsort(d2, axis=-1)[..., :neighbours]                                      # nbrs.kneighbors
  wts = jnp.exp(-jnp.take_along_axis(d2, order, axis=-1) / (2 * sigma ** 2))
  wts = wts / jnp.sum(wts, axis=-1, keepdims=True)
  target = jnp.sum(jax.nn.one_hot(order, len(bins)) * wts[..., None], axis=-2)            # encode_points_mtx_nd
  nearest = jnp.argmax(target, axis=-1)
  prior = momentum * prior + (1 - momentum) * jnp.mean(jax.nn.one_hot(nearest, len(bins)), axis=(0, 1, 2))
  kernel = jnp.exp(-jnp.sum((bins[:, None] - bins[None]) ** 2, axis=-1) / (2 * sigma ** 2))
  prior_probs = kernel @ prior / jnp.sum(kernel @ prior)                                  # the paper's smoothing
  uni = (prior_probs != 0) / jnp.sum(prior_probs != 0)
  factor = ((1 - lam) * prior_probs + lam * uni) ** -1.0                                  # PriorFactor
  factor = factor / jnp.sum(prior_probs * factor)
  nongray = jnp.any(jnp.abs(ab) > 5, axis=(1, 2, 3))                                      # NonGrayMaskLayer
  boost = jax.lax.stop_gradient(factor[nearest] * nongray[:, None, None])
  return jnp.mean(boost * -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def test_colorization_loss_and_gradients_equal_the_official_layers():
  """One step's loss and its gradient with respect to every network parameter equal the official training layers'
  (soft encoding on 10 bins, the rebalancing factor of each pixel's strongest bin, the grey-image mask), with the
  method's moving prior half-way from uniform so that the factors differ between bins."""
  c = load_config("configs/tiny/colorization.py")
  c.update(dict(batch_size=BATCH, total_epochs=None, total_steps=2, log_every=1, ckpt_every=0))
  c.model.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  src = sources.emoji("train[:64]")
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  method = program.method
  batch = inputs.device_stage(c.data)(next(iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=BATCH))))
  state = program.init()
  params, extra = state.params, state.extra
  bins = jnp.asarray(method.bins, jnp.float32)
  skewed = jax.nn.softmax(-jnp.sum(bins ** 2, axis=-1) / 2000.0)                          # a prior favouring grey
  extra = dict(extra, prior=(skewed + extra["prior"]) / 2)
  rng = jax.random.key(3)

  def ours(net):
    _, (metrics, _) = method.loss(dict(params, net=net), extra, batch, rng, 0)
    return metrics["ssl_loss"]

  def theirs(net):
    x, unit = colorization.grey_input(batch["image"])
    _, logits = method.net.apply({"params": net}, x, True)
    return colorization_reference_loss(logits, unit, bins, extra["prior"], method.prior_momentum)

  (loss, grads), (ref_loss, ref_grads) = jax.jit(jax.value_and_grad(ours))(params["net"]), \
      jax.jit(jax.value_and_grad(theirs))(params["net"])                  # jitted: one compile each, not ~300
  np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
  for (path, g), r in zip(jax.tree.leaves_with_path(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-7, err_msg=jax.tree_util.keystr(path))


def test_context_encoder_losses_and_gradients_equal_train_lua():
  """One step of the joint loss (reconstruction with the overlap ring weighted 10x, adversarial at 0.001) and of the
  discriminator's: the generator's loss and gradients and the discriminator's gradients equal `train.lua`'s."""
  c = load_config("configs/tiny/inpainting.py")
  c.update(dict(batch_size=BATCH, total_epochs=None, total_steps=2, log_every=1, ckpt_every=0))
  c.model.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  c.method.update(dict(adversarial=True, overlap=2, discriminator_width=8))
  src = sources.digits("train[:64]")
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  method = program.method
  batch = inputs.device_stage(c.data)(next(iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=BATCH))))
  state = program.init()
  params, extra, rng = state.params, state.extra, jax.random.key(5)
  wtl2, side = 0.999, 16

  def ours(p):
    _, (metrics, _) = method.loss(p, extra, batch, rng, 0)
    return metrics["ssl_loss"], metrics

  def theirs(net, disc, which):
    images = batch["image"]
    lo, hi = side // 4, side // 4 + side // 2                                   # the centre 8 x 8 of 16 x 16
    fill = (np.array([117.0, 104.0, 123.0]) / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    ctx = images.at[:, lo + 2:hi - 2, lo + 2:hi - 2].set(jnp.asarray(fill, jnp.float32))   # overlapPred = 2
    _, pred = method.net.apply({"params": net}, ctx, True, rngs={"dropout": jax.random.split(rng)[1]})
    fake, real = pred[:, lo:hi, lo:hi], images[:, lo:hi, lo:hi]
    w = jnp.full(fake.shape, 10 * wtl2).at[:, 2:-2, 2:-2].set(wtl2)             # wtl2Matrix
    l2 = jnp.mean(w * (fake - real) ** 2)                                        # its gradient, as train.lua's
    d = lambda p, x: method.discriminator.apply({"params": p, "batch_stats": extra["discriminator_stats"]}, x, True,
                                                mutable=["batch_stats"])[0]
    bce = lambda logits, y: jnp.mean(-(y * jax.nn.log_sigmoid(logits) + (1 - y) * jax.nn.log_sigmoid(-logits)))
    if which == "generator":
      return (1 - wtl2) * bce(d(jax.lax.stop_gradient(disc), fake), 1.0) + l2
    return bce(d(disc, real), 1.0) + bce(d(disc, jax.lax.stop_gradient(fake)), 0.0)

  (_, metrics), grads = jax.jit(jax.value_and_grad(ours, has_aux=True))(params)
  g_loss, g_grads = jax.jit(jax.value_and_grad(theirs), static_argnums=2)(params["net"], params["discriminator"],
                                                                          "generator")
  d_loss, d_grads = jax.jit(jax.value_and_grad(theirs, argnums=1), static_argnums=2)(
      params["net"], params["discriminator"], "discriminator")
  np.testing.assert_allclose(float(metrics["inpainting/discriminator"]), float(d_loss), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["ssl_loss"] - metrics["inpainting/discriminator"]), float(g_loss), rtol=1e-5)
  for ours_tree, theirs_tree in ((grads["net"], g_grads), (grads["discriminator"], d_grads)):
    for (path, g), r in zip(jax.tree.leaves_with_path(ours_tree), jax.tree.leaves(theirs_tree)):
      np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-7,
                                 err_msg=jax.tree_util.keystr(path))

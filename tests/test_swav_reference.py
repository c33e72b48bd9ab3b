"""SwAV through the trainer against a transcription of its official training iteration (facebookresearch/swav
`main_swav.py`, `src/resnet50.py`), on 1 and on 8 devices.

The reference re-implements, from the official code, what one iteration does after the backbone: the prototypes
normalised in place before the forward pass; the head over every crop at once (`forward_head`: Linear-BatchNorm1d-
ReLU-Linear, `F.normalize`, the prototype layer), after one backbone pass per crop size; for each crop of
`crops_for_assign` the scores of the queued embeddings prepended once the queue is full (`not torch.all(queue[i, -1,
:] == 0)`), the queue shifted and this batch's embeddings written at its front, `distributed_sinkhorn` (the `exp`-then-
normalise loop of 3 iterations, as written), and the swapped prediction loss; the prototypes' gradient set to None
for the first `freeze_prototypes_niters` iterations; apex's `LARC` (trust coefficient 1e-3, no clipping: `eta |p| /
(|g| + wd |p| + eps)` on every parameter whose norm and gradient are non-zero, weight decay added there) around
`torch.optim.SGD` (momentum 0.9), and the cosine learning-rate schedule of the batch-256 recipe (no warm-up). The
backbone is ours on both sides (checked against torchvision elsewhere). The reference is written with `jax.numpy`
and differentiated by `jax.grad`; its optimizer is numpy.

Both sides start from the same weights and see the same augmented crops; the test compares the loss of every step,
every parameter and the queue after the steps, with the queue in use from the third step and the prototypes frozen
for the first two; and the same steps on 8 devices (the batch, the Sinkhorn-Knopp normalisations and the queue
spread over them) against the 1-device run.
"""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import load_config
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs
from ssl_jax.data import pipeline
from ssl_jax.data import sources

STEPS, TOTAL, BATCH = 5, 12, 16
QUEUE, FREEZE = 32, 2                   # the queue is full after 2 steps; the prototypes move from the third update


def _config():
  c = load_config("configs/tiny/swav.py")
  c.update(dict(batch_size=BATCH, total_epochs=None, total_steps=TOTAL, log_every=1, ckpt_every=0))
  c.model.width = 8
  c.method.head = dict(hidden_dim=32, dim=16, num_prototypes=24)
  c.method.queue_length, c.method.queue_start_epochs = QUEUE, 0.0
  c.method.freeze_prototypes_epochs = FREEZE / 4                       # 64 examples, batch 16: 4 steps an epoch
  c.optim.min_lr = 0.0006
  return c


def distributed_sinkhorn(out, epsilon=0.05, iterations=3):
  """The official `distributed_sinkhorn` on one process, as written."""
  q = jnp.exp(out / epsilon).T
  b, k = q.shape[1], q.shape[0]
  q = q / jnp.sum(q)
  for _ in range(iterations):
    q = q / jnp.sum(q, axis=1, keepdims=True) / k
    q = q / jnp.sum(q, axis=0, keepdims=True) / b
  return (q * b).T


class Reference:
  def __init__(self, config, net, net_params):
    self.config, self.encoder = config, net.encoder
    self.params = jax.tree.map(np.array, net_params)
    self.buf = {}                                      # SGD's momentum buffers, created at a parameter's first step
    self.queue = np.zeros((2, QUEUE, config.method.head["dim"]), np.float32)
    self.stats = None
    # One compiled program per pattern of full queues (the reference's branch on the queue's last row).
    self.value_and_grad = jax.jit(jax.value_and_grad(self.loss, has_aux=True), static_argnums=4)

  def lr(self, it):
    base, final = self.config.optim.base_lr * BATCH / 256, 0.0006   # the config's base_lr x batch / 256, min_lr
    return final + 0.5 * (base - final) * (1 + np.cos(np.pi * it / TOTAL))

  def loss(self, params, stats, crops, queue, full):
    """`crops`: the global crops `[B, 2, ...]` and the local crops `[B, 4, ...]` as the trainer feeds them; `full`:
    for each queue, whether its last row is non-zero (the official test, made outside the compiled program)."""
    feats = []
    for group in crops:                                              # one backbone pass per crop size, crop-major
      x = jnp.concatenate([group[:, v] for v in range(group.shape[1])])
      out, _ = self.encoder.apply({"params": params["encoder"], "batch_stats": stats}, x, True,
                                  mutable=["batch_stats"])
      feats.append(out["pooled"])
    h, w = jnp.concatenate(feats), params["projector"]
    x = h @ w["mlp"]["dense0"]["kernel"] + w["mlp"]["dense0"].get("bias", 0)
    x = (x - x.mean(0)) / jnp.sqrt(x.var(0) + 1e-5) * w["mlp"]["bn0"]["scale"] + w["mlp"]["bn0"]["bias"]
    x = jnp.maximum(x, 0) @ w["mlp"]["dense1"]["kernel"] + w["mlp"]["dense1"]["bias"]
    embedding = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)       # F.normalize
    output = embedding @ w["prototypes"]
    embedding = jax.lax.stop_gradient(embedding)
    bs, n_crops = BATCH, output.shape[0] // BATCH
    loss, new_queue = 0.0, []
    for i, crop_id in enumerate((0, 1)):
      out = jax.lax.stop_gradient(output[bs * crop_id: bs * (crop_id + 1)])
      if full[i]:                                                    # the queue is full: use it
        out = jnp.concatenate([queue[i] @ jax.lax.stop_gradient(w["prototypes"]), out])
      new_queue.append(jnp.concatenate([embedding[crop_id * bs: (crop_id + 1) * bs], queue[i, :-bs]]))
      q = jax.lax.stop_gradient(distributed_sinkhorn(out, self.config.method.epsilon)[-bs:])
      subloss = 0.0
      for v in np.delete(np.arange(n_crops), crop_id):
        x = output[bs * v: bs * (v + 1)] / 0.1
        subloss -= jnp.mean(jnp.sum(q * jax.nn.log_softmax(x, axis=1), axis=1))
      loss += subloss / (n_crops - 1)
    return loss / 2, jnp.stack(new_queue)

  def step(self, it, crops):
    c = self.params["projector"]["prototypes"]                       # normalised in place before the forward pass
    self.params["projector"]["prototypes"] = c / np.maximum(np.linalg.norm(c, axis=0, keepdims=True), 1e-12)
    full = tuple(bool(not np.all(self.queue[i, -1] == 0)) for i in range(len(self.queue)))
    (value, queue), grads = self.value_and_grad(self.params, self.stats, crops, self.queue, full)
    self.queue = np.asarray(queue)
    wd, lr = self.config.optim.weight_decay, self.lr(it)

    def update(path, p, g):
      name = jax.tree_util.keystr(path)
      if it < FREEZE and name == "['projector']['prototypes']":
        return p                                                     # p.grad = None: LARC and SGD skip it
      p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
      param_norm, grad_norm = np.linalg.norm(p), np.linalg.norm(g)
      if param_norm != 0 and grad_norm != 0:                         # LARC, clip=False
        adaptive_lr = 0.001 * param_norm / (grad_norm + param_norm * wd + 1e-8)
        g = (g + wd * p) * adaptive_lr
      self.buf[name] = g if name not in self.buf else 0.9 * self.buf[name] + g
      return (p - lr * self.buf[name]).astype(np.float32)

    self.params = jax.tree.map_with_path(update, self.params, grads)
    return float(value)


def _trainer_steps(c, mesh, src, ref=None):
  program = train.build(c, mesh, len(src), src.num_classes)
  augment = inputs.device_stage(c.data)
  data = iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=BATCH))
  state = program.init()
  if ref is not None:
    ref = Reference(c, program.method.net, state.params["net"])
  losses, theirs = [], []
  with jax.set_mesh(mesh):
    for it in range(STEPS):
      batch = pipeline.to_global(next(data), sharding.batch_sharding(mesh))
      if ref is not None:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        views = augment(batch, jax.random.split(key)[0])["views"]
        ref.stats = state.extra["batch_stats"]["encoder"]
        theirs.append(ref.step(it, [np.asarray(views["global_crops"]), np.asarray(views["local_crops"])]))
      state, metrics = program.step(state, batch)
      losses.append(float(metrics["ssl_loss"]))
  return state, np.array(losses), ref, np.array(theirs)


def test_swav_steps_equal_the_official_iteration_on_one_and_eight_devices():
  c = _config()
  src = sources.digits("train[:64]")
  one = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  state, ours, ref, theirs = _trainer_steps(c, one, src, ref=True)
  np.testing.assert_allclose(ours, theirs, rtol=1e-5)
  assert abs(ours[-1] - ours[0]) > 1e-3 * abs(ours[0]), ours
  assert float(state.extra["queue_filled"]) == QUEUE
  np.testing.assert_allclose(np.asarray(state.extra["queue"]), ref.queue, atol=1e-5)
  theirs_params = {jax.tree_util.keystr(p): v for p, v in jax.tree.leaves_with_path(ref.params)}
  # The reference's prototypes are normalised at the start of its next iteration; ours right after the update.
  c_ref = theirs_params["['projector']['prototypes']"]
  theirs_params["['projector']['prototypes']"] = c_ref / np.linalg.norm(c_ref, axis=0, keepdims=True)
  ours_params = {jax.tree_util.keystr(p): v for p, v in jax.tree.leaves_with_path(state.params["net"])}
  assert ours_params.keys() == theirs_params.keys()
  for name, x in ours_params.items():
    np.testing.assert_allclose(np.asarray(x), theirs_params[name], rtol=1e-4, atol=2e-5, err_msg=name)

  eight = sharding.make_mesh(dict(data=8, fsdp=1, tensor=1), jax.devices())
  state8, ours8, _, _ = _trainer_steps(c, eight, src)
  np.testing.assert_allclose(ours8, ours, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(state8.extra["queue"]), np.asarray(state.extra["queue"]), atol=1e-5)
  for a, b in zip(jax.tree.leaves(state8.params["net"]), jax.tree.leaves(state.params["net"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-5)

"""Linear probes on frozen features.

- `linear_probe_accuracy`: standardised features and an L2-regularised multinomial logistic regression fitted
  full-batch with L-BFGS (optax): deterministic, seconds on a CPU, for quick runs and periodic evaluation.
- `lars_probe_accuracy`: the MAE linear-probing protocol (He et al. 2022, appendix A.2; `main_linprobe.py`) on
  cached features: BatchNorm without affine transform (eps 1e-6) before a linear layer initialised N(0, 0.01),
  LARS (momentum 0.9, no weight decay), lr = base_lr x batch / 256 with linear warm-up and half-cycle cosine,
  mini-batches of shuffled features, evaluated with the BatchNorm running statistics. Deviation: MAE trains on
  features of random-resized crops recomputed every epoch; features cached once from the evaluation view are the
  cheaper variant (the full protocol with augmentation is `configs/linear_probe.py`, which trains through the
  trainer with the encoder frozen).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax import sharding


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit_linear(features, labels, weights, *, num_classes: int, l2: float = 1e-4, steps: int = 500):
  """Fits `softmax(standardise(x) @ W + b)` by L-BFGS.

  Args:
    features: `[N, D]` training features.
    labels: `[N]` int labels in [0, num_classes).
    weights: `[N]` per-example weights (0 for padding).
    num_classes: C.
    l2: weight of `0.5 * ||W||^2` added to the mean cross-entropy.
    steps: L-BFGS iterations (with zoom line search).

  Returns:
    (params {"w": [D, C], "b": [C]}, mean, std) where mean/std standardise the inputs.
  """
  features = features.astype(jnp.float32)
  weights = weights.astype(jnp.float32)
  total = jnp.maximum(jnp.sum(weights), 1.0)
  mean = jnp.sum(features * weights[:, None], 0) / total
  std = jnp.sqrt(jnp.sum(jnp.square(features - mean) * weights[:, None], 0) / total + 1e-6)
  x = (features - mean) / std
  onehot = jax.nn.one_hot(labels, num_classes)

  def loss_fn(p):
    logits = x @ p["w"] + p["b"]
    ce = optax.softmax_cross_entropy(logits, onehot)
    return jnp.sum(ce * weights) / total + 0.5 * l2 * jnp.sum(jnp.square(p["w"]))

  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)

  def step(carry, _):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss_fn)
    return (optax.apply_updates(p, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
  return params, mean, std


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels, *, l2: float = 1e-4,
                          steps: int = 500, num_classes: int | None = None) -> float:
  """Top-1 accuracy in [0, 1] of a linear classifier fitted on frozen training features (labels < 0 ignored)."""
  train_labels = jnp.asarray(train_labels, jnp.int32)
  test_labels = jnp.asarray(test_labels, jnp.int32)
  if num_classes is None:
    num_classes = int(max(jnp.max(train_labels), jnp.max(test_labels))) + 1
  weights = (train_labels >= 0).astype(jnp.float32)
  params, mean, std = fit_linear(train_features, jnp.maximum(train_labels, 0), weights, num_classes=num_classes,
                                 l2=l2, steps=steps)
  logits = ((jnp.asarray(test_features, jnp.float32) - mean) / std) @ params["w"] + params["b"]
  valid = test_labels >= 0
  return float(jnp.sum((jnp.argmax(logits, -1) == test_labels) & valid) / jnp.maximum(jnp.sum(valid), 1))


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs", "batch_size", "base_lr", "warmup_epochs",
                                             "bn_momentum"))
def fit_lars_probe(features, labels, key, *, num_classes: int, epochs: int = 90, batch_size: int = 16384,
                   base_lr: float = 0.1, warmup_epochs: int = 10, bn_momentum: float = 0.9):
  """Trains BatchNorm(no affine) + linear on `features` `[N, D]` / `labels` `[N]` (all valid) by LARS.

  Every epoch visits a fresh permutation in `N // batch_size` full mini-batches (the remainder is dropped, as
  MAE's loader does; `batch_size` is clipped to N). BatchNorm normalises by mini-batch statistics in training and
  keeps running averages (`running = m * running + (1 - m) * batch`, PyTorch's momentum 0.1) for evaluation.

  Returns:
    (params {"w": [D, C], "b": [C]}, running mean `[D]`, running variance `[D]`).
  """
  n, d = features.shape
  b = min(batch_size, n)
  steps_per_epoch = n // b
  total = epochs * steps_per_epoch
  peak = base_lr * b / 256
  schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup_epochs * steps_per_epoch,
                                                max(total, warmup_epochs * steps_per_epoch + 1))
  matrices = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
  tx = optax.lars(schedule, weight_decay=0.0, trust_ratio_mask=matrices, momentum=0.9)
  init_key, key = jax.random.split(key)
  params = {"w": 0.01 * jax.random.truncated_normal(init_key, -2.0, 2.0, (d, num_classes)),
            "b": jnp.zeros((num_classes,))}
  features = features.astype(jnp.float32)

  def loss_fn(p, x, y):
    mean, var = jnp.mean(x, 0), jnp.var(x, 0)
    logits = ((x - mean) * jax.lax.rsqrt(var + 1e-6)) @ p["w"] + p["b"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y)), (mean, var)

  def step(carry, idx):
    p, opt_state, rmean, rvar = carry
    x, y = features[idx], labels[idx]
    (_, (mean, var)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, x, y)
    updates, opt_state = tx.update(grads, opt_state, p)
    unbiased = var * b / max(b - 1, 1)           # PyTorch keeps the unbiased variance
    rmean = bn_momentum * rmean + (1 - bn_momentum) * mean
    rvar = bn_momentum * rvar + (1 - bn_momentum) * unbiased
    return (optax.apply_updates(p, updates), opt_state, rmean, rvar), None

  def epoch(carry, epoch_key):
    order = jax.random.permutation(epoch_key, n)[:steps_per_epoch * b].reshape(steps_per_epoch, b)
    return jax.lax.scan(step, carry, order)[0], None

  carry = (params, tx.init(params), jnp.zeros((d,)), jnp.ones((d,)))
  (params, _, rmean, rvar), _ = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
  return params, rmean, rvar


def lars_probe_accuracy(train_features, train_labels, test_features, test_labels, *, epochs: int = 90,
                        batch_size: int = 16384, base_lr: float = 0.1, warmup_epochs: int = 10, seed: int = 0,
                        num_classes: int | None = None) -> float:
  """Top-1 accuracy in [0, 1] of `fit_lars_probe` (the MAE linear-probe protocol on cached features); labels < 0
  are ignored."""
  ytr = sharding.to_host(train_labels)
  yte = jnp.asarray(test_labels, jnp.int32)
  if num_classes is None:
    num_classes = int(max(ytr.max(), int(jnp.max(yte)))) + 1
  keep = np.flatnonzero(ytr >= 0)
  xtr = jnp.asarray(train_features)[keep] if len(keep) < len(ytr) else jnp.asarray(train_features)
  params, mean, var = fit_lars_probe(xtr, jnp.asarray(ytr[keep], jnp.int32), jax.random.key(seed),
                                     num_classes=num_classes, epochs=epochs, batch_size=batch_size,
                                     base_lr=base_lr, warmup_epochs=warmup_epochs)
  x = (jnp.asarray(test_features, jnp.float32) - mean) * jax.lax.rsqrt(var + 1e-6)
  logits = x @ params["w"] + params["b"]
  valid = yte >= 0
  return float(jnp.sum((jnp.argmax(logits, -1) == yte) & valid) / jnp.maximum(jnp.sum(valid), 1))

"""Linear probe on frozen features: standardised features (BatchNorm without affine, as in MAE's protocol) and an
L2-regularised multinomial logistic regression fitted full-batch with L-BFGS (optax)."""

import functools

import jax
import jax.numpy as jnp
import optax


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

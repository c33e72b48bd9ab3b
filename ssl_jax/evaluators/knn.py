"""Weighted cosine k-nearest-neighbour classification (Wu et al. 2018, as used by DINO, Caron et al. 2021)."""

import functools

import jax
import jax.numpy as jnp


def _l2_normalize(x):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


@functools.partial(jax.jit, static_argnames=("num_classes", "k", "chunk"))
def knn_predict(train_features, train_labels, test_features, *, num_classes: int, k: int = 20,
                temperature: float = 0.07, chunk: int = 256):
  """Predicts test labels by a vote of the k most cosine-similar training examples.

  Each neighbour votes for its label with weight `exp(cos / temperature)` (DINO's `knn_classifier`); `temperature
  = inf` would be a plain majority vote.

  Args:
    train_features: `[N, D]` the labelled bank (may be sharded over devices along N).
    train_labels: `[N]` int labels in [0, num_classes); negative labels never vote.
    test_features: `[M, D]`.
    num_classes: C.
    k: number of neighbours (clipped to N).
    temperature: weight temperature.
    chunk: test examples compared with the bank at once (bounds memory at `chunk x N`).

  Returns:
    `[M]` int32 predicted labels.
  """
  bank = _l2_normalize(train_features)
  k = min(k, bank.shape[0])
  m = test_features.shape[0]
  pad = (-m) % chunk
  test = _l2_normalize(jnp.pad(test_features, ((0, pad), (0, 0)))).reshape(-1, chunk, bank.shape[1])
  onehot_bank = jax.nn.one_hot(train_labels, num_classes, dtype=jnp.float32)  # all-zero rows for labels < 0

  def predict(q):
    sim, idx = jax.lax.top_k(q @ bank.T, k)
    # exp((cos - max cos) / T): the same vote ratios as exp(cos / T), without overflow at small T.
    weights = jnp.exp((sim - sim[:, :1]) / temperature)
    votes = jnp.einsum("ck,ckn->cn", weights, onehot_bank[idx])
    return jnp.argmax(votes, axis=-1).astype(jnp.int32)

  return jax.lax.map(predict, test).reshape(-1)[:m]


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = 20,
                 temperature: float = 0.07, num_classes: int | None = None) -> float:
  """Top-1 accuracy in [0, 1] of `knn_predict` on a labelled test set (labels < 0 are ignored)."""
  train_labels = jnp.asarray(train_labels, jnp.int32)
  test_labels = jnp.asarray(test_labels, jnp.int32)
  if num_classes is None:
    num_classes = int(max(jnp.max(train_labels), jnp.max(test_labels))) + 1
  pred = knn_predict(train_features, train_labels, test_features, num_classes=num_classes, k=k,
                     temperature=temperature)
  valid = test_labels >= 0
  return float(jnp.sum((pred == test_labels) & valid) / jnp.maximum(jnp.sum(valid), 1))

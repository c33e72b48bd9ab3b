"""k-nearest-neighbour classification on frozen features: DINO's weighted cosine vote (Wu et al. 2018, Caron et al.
2021) or a plain majority vote, with the labelled bank sharded over devices.

The bank (ImageNet: 1.28M x 768 float32 = 3.9 GB) never has to fit on one device: with a mesh, each device keeps
its slice of the bank, finds the top-k neighbours of every query among its own rows, and only those `k` candidates
per device are gathered (`k x devices` per query) for the final top-k — the same result as a top-k over the whole
bank, with `O(chunk x N / devices)` memory per device.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

VOTES = ("weighted", "majority")


def _l2_normalize(x):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def _local_top_k(queries, bank, labels, k):
  """Cosine similarities and labels `[Q, k]` of each query's k most similar bank rows; rows with labels < 0 (padding)
  never qualify unless the bank has fewer than k valid rows (then they come last, with similarity -inf)."""
  sim = queries @ bank.T
  sim = jnp.where(labels[None, :] >= 0, sim, -jnp.inf)
  top, idx = jax.lax.top_k(sim, min(k, bank.shape[0]))
  return top, labels[idx]


def _vote(sim, labels, num_classes, temperature, vote):
  """Predicted class `[Q]` from neighbour similarities and labels `[Q, k]`."""
  if vote == "weighted":
    # exp((cos - max cos) / T): the same vote ratios as DINO's exp(cos / T), without overflow at small T.
    weights = jnp.exp((sim - sim[:, :1]) / temperature)
  else:
    weights = jnp.ones_like(sim)
  weights = jnp.where(jnp.isfinite(sim) & (labels >= 0), weights, 0.0)
  votes = jnp.einsum("qk,qkc->qc", weights, jax.nn.one_hot(labels, num_classes, dtype=jnp.float32))
  return jnp.argmax(votes, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_classes", "k", "vote", "chunk", "mesh", "axes"))
def knn_predict(train_features, train_labels, test_features, *, num_classes: int, k: int = 20,
                temperature: float = 0.07, vote: str = "weighted", chunk: int = 256,
                mesh: jax.sharding.Mesh | None = None, axes: tuple[str, ...] = ("data", "fsdp")):
  """Predicts test labels by a vote of the k most cosine-similar training examples.

  `vote="weighted"`: each neighbour votes for its label with weight `exp(cos / temperature)` (DINO's
  `knn_classifier`); `vote="majority"`: one vote each (ties go to the smaller label).

  Args:
    train_features: `[N, D]` the labelled bank.
    train_labels: `[N]` int labels in [0, num_classes); rows with negative labels (padding) are never neighbours.
    test_features: `[M, D]`.
    num_classes: C.
    k: number of neighbours.
    temperature: weight temperature of the weighted vote.
    vote: "weighted" or "majority".
    chunk: test examples compared with the bank at once (bounds memory at `chunk x N / devices`).
    mesh: shard the bank over the mesh axes `axes` (padded to whole shards); None: the bank as it comes.

  Returns:
    `[M]` int32 predicted labels.
  """
  if vote not in VOTES:
    raise ValueError(f"kNN vote {vote!r} is unknown; use one of {VOTES}.")
  bank = _l2_normalize(train_features)
  labels = jnp.asarray(train_labels, jnp.int32)
  m = test_features.shape[0]
  pad = (-m) % chunk
  queries = _l2_normalize(jnp.pad(test_features, ((0, pad), (0, 0)))).reshape(-1, chunk, bank.shape[1])

  if mesh is None:
    def neighbours(q):
      return _local_top_k(q, bank, labels, k)
  else:
    shards = int(np.prod([mesh.shape[a] for a in axes]))
    extra = (-bank.shape[0]) % shards          # pad to whole shards with rows that never vote
    bank = jnp.pad(bank, ((0, extra), (0, 0)))
    labels = jnp.pad(labels, (0, extra), constant_values=-1)
    bank = jax.lax.with_sharding_constraint(bank, NamedSharding(mesh, P(axes)))
    labels = jax.lax.with_sharding_constraint(labels, NamedSharding(mesh, P(axes)))

    # After the all-gathers every device holds the same candidates, so the outputs are replicated (P()).
    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P(axes), P(axes)), out_specs=(P(), P()),
                       check_vma=False)
    def sharded_top_k(q, local_bank, local_labels):
      sim, lab = _local_top_k(q, local_bank, local_labels, k)
      sim = jax.lax.all_gather(sim, axes, axis=1, tiled=True)       # [Q, k x shards]
      lab = jax.lax.all_gather(lab, axes, axis=1, tiled=True)
      top, idx = jax.lax.top_k(sim, min(k, sim.shape[1]))
      return top, jnp.take_along_axis(lab, idx, axis=1)

    def neighbours(q):
      return sharded_top_k(q, bank, labels)

  def predict(q):
    sim, lab = neighbours(q)
    return _vote(sim, lab, num_classes, temperature, vote)

  return jax.lax.map(predict, queries).reshape(-1)[:m]


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = 20,
                 temperature: float = 0.07, num_classes: int | None = None, vote: str = "weighted",
                 mesh: jax.sharding.Mesh | None = None) -> float:
  """Top-1 accuracy in [0, 1] of `knn_predict` on a labelled test set (test labels < 0 are ignored).

  Works on numpy arrays or (sharded) `jax.Array`s; pass `mesh` to keep the bank sharded over its batch axes.
  """
  train_labels = jnp.asarray(train_labels, jnp.int32)
  test_labels = jnp.asarray(test_labels, jnp.int32)
  if num_classes is None:
    num_classes = int(max(jnp.max(train_labels), jnp.max(test_labels))) + 1
  pred = knn_predict(train_features, train_labels, test_features, num_classes=num_classes, k=k,
                     temperature=temperature, vote=vote, mesh=mesh)
  valid = test_labels >= 0
  return float(jnp.sum((pred == test_labels) & valid) / jnp.maximum(jnp.sum(valid), 1))

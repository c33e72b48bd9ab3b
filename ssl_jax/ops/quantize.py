"""Discrete codes of continuous vectors: the frozen random-projection quantizer of BEST-RQ (Chiu et al. 2022,
"Self-supervised Learning with Random-projection Quantizer for Speech Recognition"), the l2-normalised codebook with
EMA updates of BEiT v2's tokenizer (Peng et al. 2022, `NormEMAVectorQuantizer`) with its k-means initialisation, and
the statistics of a code assignment that tell a collapsed tokenizer from a used one.

The quantizer needs no training: a random projection `[in_dim, dim]` (Xavier-normal, as the paper's) maps each input
vector to `dim` dimensions, and its code is the nearest of `vocab_size` random unit vectors (standard normal,
l2-normalised) to the l2-normalised projection. BEST-RQ quantizes stacked speech frames; here, for BEiT-style
targets, it quantizes image patches (their normalised pixels, flattened), which makes predicting a masked patch's
code a discretised prediction of its content.
"""

import jax
import jax.numpy as jnp


def random_projection_init(key: jax.Array, in_dim: int, *, dim: int = 16, vocab_size: int = 8192) -> dict:
  """The quantizer's frozen parameters: `projection` `[in_dim, dim]` (Xavier-normal: std sqrt(2 / (in + out))) and
  `codebook` `[vocab_size, dim]` of unit vectors (standard normal, l2-normalised)."""
  k1, k2 = jax.random.split(key)
  projection = jax.random.normal(k1, (in_dim, dim)) * (2.0 / (in_dim + dim)) ** 0.5
  codebook = jax.random.normal(k2, (vocab_size, dim))
  return {"projection": projection, "codebook": codebook / jnp.linalg.norm(codebook, axis=-1, keepdims=True)}


def random_projection_codes(params: dict, x: jax.Array) -> jax.Array:
  """The codes `[...]` int32 of vectors `x` `[..., in_dim]`: the nearest codebook vector to the l2-normalised
  projection (the largest cosine similarity, which for unit vectors is the smallest distance).

  Example:
    >>> p = {"projection": jnp.eye(2), "codebook": jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])}
    >>> random_projection_codes(p, jnp.array([[3.0, 0.5], [-2.0, 0.1], [0.2, 5.0]])).tolist()
    [0, 2, 1]
  """
  z = x.astype(jnp.float32) @ params["projection"].astype(jnp.float32)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  return jnp.argmax(z @ params["codebook"].astype(jnp.float32).T, axis=-1).astype(jnp.int32)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """`x / max(||x||, eps)` over the last axis (`F.normalize`), in float32."""
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def nearest_codes(z: jax.Array, codebook: jax.Array) -> jax.Array:
  """The index of the nearest row of a unit-norm `codebook` `[V, d]` to each unit vector of `z` `[..., d]` (the
  largest dot product, which for unit vectors is the smallest distance): int32 `[...]`."""
  return jnp.argmax(z.astype(jnp.float32) @ codebook.astype(jnp.float32).T, axis=-1).astype(jnp.int32)


def norm_ema_update(codebook: jax.Array, z: jax.Array, codes: jax.Array, decay: float,
                    weight: jax.Array | None = None) -> jax.Array:
  """BEiT v2's codebook update (`NormEMAVectorQuantizer.forward` in training): each code used in the batch moves to
  `normalize(decay * code + (1 - decay) * normalize(mean of the unit vectors z assigned to it))`; unused codes stay.

  Args:
    codebook: `[V, d]` unit vectors.
    z: `[N, d]` unit vectors (the whole global batch; under `jit` on a mesh the sums are global, as the official
      all-reduce makes them).
    codes: `[N]` their codes.
    decay: the EMA decay (0.99).
    weight: optional `[N]` 0/1: vectors that count.

  Returns:
    the new `[V, d]` codebook.
  """
  v = codebook.shape[0]
  w = jnp.ones(codes.shape, jnp.float32) if weight is None else weight.astype(jnp.float32)
  # Sums by code without an [N, V] one-hot matrix (3 GB at ViT-B's batch of 512 x 196 vectors and 8192 codes).
  bins = jax.ops.segment_sum(w, codes, num_segments=v)                           # [V]
  sums = jax.ops.segment_sum(z.astype(jnp.float32) * w[:, None], codes, num_segments=v)     # [V, d]
  means = l2_normalize(sums / jnp.maximum(bins, 1.0)[:, None])
  moved = l2_normalize(decay * codebook + (1.0 - decay) * means)
  return jnp.where((bins > 0)[:, None], moved, codebook).astype(codebook.dtype)


def spherical_kmeans(key: jax.Array, z: jax.Array, num_codes: int, iterations: int = 10) -> jax.Array:
  """BEiT v2's `kmeans_init`: `iterations` of k-means with cosine similarity on unit vectors `z` `[N, d]`, started
  from `num_codes` of them drawn at random (with replacement, as `sample_vectors` when N < V); an empty cluster keeps
  its centre. Returns `[num_codes, d]` unit vectors."""
  n = z.shape[0]
  z = z.astype(jnp.float32)
  means = z[jax.random.choice(key, n, (num_codes,), replace=n < num_codes)]

  def step(means, _):
    codes = nearest_codes(z, means)
    bins = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), codes, num_segments=num_codes)
    new = l2_normalize(jax.ops.segment_sum(z, codes, num_segments=num_codes) / jnp.maximum(bins, 1.0)[:, None])
    return jnp.where((bins > 0)[:, None], new, means), None

  means, _ = jax.lax.scan(step, means, None, length=iterations)
  return means


def code_usage(codes: jax.Array, vocab_size: int, weight: jax.Array | None = None) -> dict[str, jax.Array]:
  """How a batch of `codes` (int, any shape; `weight` 0/1 of the same shape, default all) uses the vocabulary:
  `usage`, the fraction of the codes that occur, and `perplexity`, `exp` of the entropy of their frequencies (1 when
  one code takes everything, `vocab_size` when all are equally frequent).

  Example:
    >>> {k: round(float(v), 3) for k, v in code_usage(jnp.array([0, 0, 1, 1]), 4).items()}
    {'perplexity': 2.0, 'usage': 0.5}
  """
  weight = jnp.ones(codes.shape, jnp.float32) if weight is None else weight.astype(jnp.float32)
  counts = jnp.zeros((vocab_size,), jnp.float32).at[codes.reshape(-1)].add(weight.reshape(-1))
  p = counts / jnp.maximum(jnp.sum(counts), 1.0)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return {"perplexity": jnp.exp(entropy), "usage": jnp.mean((counts > 0).astype(jnp.float32))}

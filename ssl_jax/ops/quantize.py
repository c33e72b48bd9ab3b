"""Discrete codes of continuous vectors: the frozen random-projection quantizer of BEST-RQ (Chiu et al. 2022,
"Self-supervised Learning with Random-projection Quantizer for Speech Recognition"), and the statistics of a
code assignment that tell a collapsed tokenizer from a used one.

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

"""Mask generators and token gather/scatter helpers, as pure functions with static shapes and explicit rng.

Only jax and numpy are imported here: the functions can be used alone in a notebook.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class RandomMask(NamedTuple):
  """The output of `random_masking`.

  Attributes:
    ids_keep: `[B, K]` int32 indices of the visible tokens, in shuffle order.
    mask: `[B, T]` float32, 1 for masked (removed) tokens, 0 for visible ones, in the original token order.
    ids_restore: `[B, T]` int32 permutation that puts `concat([visible, masked])` back into the original order.
  """
  ids_keep: jax.Array
  mask: jax.Array
  ids_restore: jax.Array


def num_visible(num_tokens: int, mask_ratio: float) -> int:
  """Number of tokens MAE keeps: `int(T * (1 - mask_ratio))`, as in the official code (at least 1)."""
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}.")
  return max(1, int(num_tokens * (1.0 - mask_ratio)))


def random_masking(rng: jax.Array, batch_size: int, num_tokens: int, mask_ratio: float) -> RandomMask:
  """MAE's per-sample random masking by shuffling (He et al. 2022, Sec. 3).

  Each example draws i.i.d. uniform noise per token; the tokens with the `K = int(T * (1 - mask_ratio))` smallest
  noise values are kept. Every example therefore keeps exactly K tokens, and every subset of size K is equally likely.

  Args:
    rng: a PRNG key.
    batch_size: B.
    num_tokens: T, the number of patches.
    mask_ratio: the fraction of tokens to remove, in [0, 1).

  Returns:
    a `RandomMask` (ids_keep `[B, K]`, mask `[B, T]`, ids_restore `[B, T]`).
  """
  keep = num_visible(num_tokens, mask_ratio)
  noise = jax.random.uniform(rng, (batch_size, num_tokens))
  ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
  ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
  ids_keep = ids_shuffle[:, :keep]
  mask = (ids_restore >= keep).astype(jnp.float32)
  return RandomMask(ids_keep, mask, ids_restore)


def gather_tokens(x: jax.Array, ids: jax.Array) -> jax.Array:
  """Selects tokens per example: `out[b, k] = x[b, ids[b, k]]`.

  Args:
    x: `[B, T, D]` tokens.
    ids: `[B, K]` integer token indices.

  Returns:
    `[B, K, D]`.
  """
  return jnp.take_along_axis(x, ids[:, :, None], axis=1)


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """Cuts images into non-overlapping square patches, row-major.

  Args:
    images: `[B, H, W, C]`; H and W divisible by `patch_size`.
    patch_size: p.

  Returns:
    `[B, (H/p)*(W/p), p*p*C]`, each patch flattened in (row, column, channel) order.
  """
  b, h, w, c = images.shape
  p = patch_size
  if h % p or w % p:
    raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}.")
  x = images.reshape(b, h // p, p, w // p, p, c)
  x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.Array, patch_size: int, height: int, width: int) -> jax.Array:
  """Inverse of `patchify`: `[B, T, p*p*C]` -> `[B, H, W, C]`."""
  b, t, d = patches.shape
  p = patch_size
  c = d // (p * p)
  gh, gw = height // p, width // p
  if gh * gw != t or p * p * c != d:
    raise ValueError(f"cannot unpatchify {patches.shape} into {height}x{width} images with patch size {p}.")
  x = patches.reshape(b, gh, gw, p, p, c)
  x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
  return x.reshape(b, height, width, c)

"""Mask generators and token gather/scatter helpers, as pure functions with static shapes and explicit rng.

  random_masking      MAE per-sample shuffle (mask, ids_keep, ids_restore)
  blockwise_masking   BEiT block-wise masking
  multiblock_masking  I-JEPA target blocks and a context block that excludes them
  mlm_masking         BERT's 80/10/10 corruption, special tokens never masked
  span_masking        wav2vec 2.0 span masking
  gather_tokens, mask_to_indices, patchify, unpatchify

Every generator returns arrays whose shapes depend only on its static arguments, so it runs under `jit` and `vmap`;
random quantities (how many tokens, which ones) are values, not shapes. Only jax and numpy are imported here.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


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
  """Number of tokens MAE keeps: `int(T * (1 - mask_ratio))`, as in the official code (at least 1).

  Example:
    >>> num_visible(196, 0.75)
    49
  """
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

  Example:
    >>> m = random_masking(jax.random.key(0), batch_size=2, num_tokens=8, mask_ratio=0.75)
    >>> m.ids_keep.shape, m.mask.sum(axis=1).tolist()
    ((2, 2), [6.0, 6.0])
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

  Example:
    >>> gather_tokens(jnp.arange(6.0).reshape(1, 3, 2), jnp.array([[2, 0]])).tolist()
    [[[4.0, 5.0], [0.0, 1.0]]]
  """
  return jnp.take_along_axis(x, ids[:, :, None], axis=1)


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """Cuts images into non-overlapping square patches, row-major.

  Args:
    images: `[B, H, W, C]`; H and W divisible by `patch_size`.
    patch_size: p.

  Returns:
    `[B, (H/p)*(W/p), p*p*C]`, each patch flattened in (row, column, channel) order.

  Example:
    >>> patchify(jnp.zeros((2, 32, 32, 3)), 16).shape
    (2, 4, 768)
  """
  b, h, w, c = images.shape
  p = patch_size
  if h % p or w % p:
    raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}.")
  x = images.reshape(b, h // p, p, w // p, p, c)
  x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.Array, patch_size: int, height: int, width: int) -> jax.Array:
  """Inverse of `patchify`: `[B, T, p*p*C]` -> `[B, H, W, C]`.

  Example:
    >>> x = jax.random.normal(jax.random.key(0), (1, 8, 4, 3))
    >>> bool(jnp.all(unpatchify(patchify(x, 2), 2, 8, 4) == x))
    True
  """
  b, t, d = patches.shape
  p = patch_size
  c = d // (p * p)
  gh, gw = height // p, width // p
  if gh * gw != t or p * p * c != d:
    raise ValueError(f"cannot unpatchify {patches.shape} into {height}x{width} images with patch size {p}.")
  x = patches.reshape(b, gh, gw, p, p, c)
  x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
  return x.reshape(b, height, width, c)


def mask_to_indices(mask: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """The first k positions where `mask` is set, per example, in increasing order (static shape).

  Args:
    mask: `[B, T]` bool/0-1.
    k: how many indices to return (static); I-JEPA truncates every mask of a batch to the smallest count.

  Returns:
    (`[B, k]` int32 indices, `[B, k]` bool validity: False where the example has fewer than k set positions; those
    slots repeat position 0's index and must be ignored).

  Example:
    >>> ids, ok = mask_to_indices(jnp.array([[0, 1, 0, 1, 1]]), 2)
    >>> ids.tolist(), ok.tolist()
    ([[1, 3]], [[True, True]])
  """
  mask = mask.astype(bool)
  order = jnp.argsort(~mask, axis=1, stable=True).astype(jnp.int32)[:, :k]
  valid = jnp.arange(k)[None, :] < jnp.sum(mask, axis=1, keepdims=True)
  return jnp.where(valid, order, order[:, :1]), valid


def mlm_masking(rng: jax.Array, tokens: jax.Array, *, vocab_size: int, mask_token_id: int,
                special_mask: jax.Array | None = None, mask_prob: float = 0.15, replace_prob: float = 0.8,
                random_prob: float = 0.1) -> tuple[jax.Array, jax.Array]:
  """BERT's masked-LM corruption (Devlin et al. 2019, Sec. 3.1 and appendix A.1).

  In each sequence, `max(1, round(mask_prob * n))` of its n maskable tokens are chosen uniformly (the original
  `create_masked_lm_predictions`; special tokens and padding, marked in `special_mask`, are never chosen). A chosen
  token becomes `mask_token_id` with probability `replace_prob`, a uniformly random token id with probability
  `random_prob`, and stays unchanged otherwise; its loss counts in every case.

  Args:
    rng: PRNG key.
    tokens: `[B, T]` int token ids.
    vocab_size: random replacements are drawn from [0, vocab_size).
    mask_token_id: the [MASK] id.
    special_mask: optional `[B, T]` bool, True at [CLS], [SEP], padding and any other position never to mask.
    mask_prob, replace_prob, random_prob: 0.15, 0.8, 0.1 in BERT.

  Returns:
    (`[B, T]` corrupted inputs, `[B, T]` float32 mask: 1 at the chosen positions, whose original ids are the labels).

  Example:
    >>> inputs, mask = mlm_masking(jax.random.key(0), jnp.arange(2, 22)[None], vocab_size=100, mask_token_id=1)
    >>> int(mask.sum())      # round(0.15 * 20)
    3
  """
  if not 0 <= replace_prob + random_prob <= 1:
    raise ValueError("mlm_masking: replace_prob + random_prob must be in [0, 1].")
  b, t = tokens.shape
  k_choose, k_action, k_random = jax.random.split(rng, 3)
  maskable = jnp.ones((b, t), bool) if special_mask is None else ~special_mask.astype(bool)
  n = jnp.sum(maskable, axis=1)
  num = jnp.where(n > 0, jnp.maximum(1, jnp.round(mask_prob * n)), 0).astype(jnp.int32)
  scores = jnp.where(maskable, jax.random.uniform(k_choose, (b, t)), 2.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
  chosen = rank < num[:, None]
  action = jax.random.uniform(k_action, (b, t))
  random_ids = jax.random.randint(k_random, (b, t), 0, vocab_size, dtype=tokens.dtype)
  inputs = jnp.where(chosen & (action < replace_prob), mask_token_id, tokens)
  inputs = jnp.where(chosen & (action >= replace_prob) & (action < replace_prob + random_prob), random_ids, inputs)
  return inputs, chosen.astype(jnp.float32)


def span_masking(rng: jax.Array, batch_size: int, length: int, *, mask_prob: float = 0.65, span_length: int = 10,
                 min_spans: int = 2, lengths: jax.Array | None = None) -> jax.Array:
  """wav2vec 2.0's span masking (Baevski et al. 2020; fairseq `compute_mask_indices`, "static" spans).

  A sequence of real length L gets `num = max(min_spans, int(mask_prob * L / span_length + u))` span starts (u ~
  U[0, 1), probabilistic rounding), drawn without replacement from [0, L - span_length - 1] (fairseq's
  `rng.choice(sz - min_len, num_mask)`); each masks the `span_length` steps from its start. Spans may overlap, so
  with the paper's settings (fairseq `mask_prob = 0.65`, `mask_length = 10`, i.e. p = 0.065 per step in the paper's
  notation) about 49% of steps end up masked. Deviations: fairseq then trims every sequence's mask to the batch's
  smallest count (`require_same_masks`, for its `[B, M, C]` view of the masked steps); here each keeps its own. When
  fewer than `num` starts fit, all of them are taken (fairseq shortens the range instead).

  Args:
    rng: PRNG key.
    batch_size: B.
    length: T, the padded length of every sequence.
    mask_prob: expected fraction of steps covered before overlaps (fairseq `mask_prob`, 0.65).
    span_length: M (10).
    min_spans: at least this many spans (fairseq `min_masks`, 2 in wav2vec 2.0's configs).
    lengths: optional `[B]` int, each sequence's real length L (the rest is padding, never masked; fairseq's
      `padding_mask`); default T.

  Returns:
    `[B, T]` float32 mask, 1 at masked steps.

  Example:
    >>> m = span_masking(jax.random.key(0), 2, 50, mask_prob=0.0, span_length=5, min_spans=1)
    >>> m.sum(axis=1).tolist()     # exactly one span of 5 each
    [5.0, 5.0]
  """
  if span_length >= length:
    raise ValueError(f"span_masking: span_length {span_length} must be shorter than the length {length}.")
  k_num, k_start = jax.random.split(rng)
  real = jnp.full((batch_size,), length, jnp.int32) if lengths is None else jnp.asarray(lengths, jnp.int32)
  available = jnp.maximum(real - span_length, 0)                              # starts in [0, L - M - 1]
  num = jnp.floor(mask_prob * real / span_length + jax.random.uniform(k_num, (batch_size,))).astype(jnp.int32)
  num = jnp.minimum(jnp.maximum(num, min_spans), available)
  scores = jax.random.uniform(k_start, (batch_size, length - span_length))
  scores = jnp.where(jnp.arange(length - span_length)[None, :] < available[:, None], scores, 2.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
  starts = (rank < num[:, None]).astype(jnp.int32)
  starts = jnp.pad(starts, ((0, 0), (0, span_length)))                        # [B, T]
  covered = jnp.cumsum(starts, axis=1) - jnp.pad(jnp.cumsum(starts, axis=1), ((0, 0), (span_length, 0)))[:, :length]
  return (covered > 0).astype(jnp.float32)


def _block(top, left, h, w, grid_h, grid_w):
  rows = jnp.arange(grid_h)[:, None]
  cols = jnp.arange(grid_w)[None, :]
  return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def blockwise_masking(rng: jax.Array, batch_size: int, grid: tuple[int, int], *, num_masking_patches: int | jax.Array,
                      min_num_patches: int = 16, max_num_patches: int | None = None,
                      min_aspect: float = 0.3, max_aspect: float | None = None, attempts: int = 10) -> jax.Array:
  """BEiT's block-wise masking (Bao et al. 2022, Algorithm 1; the official `MaskingGenerator`).

  Rectangular blocks are added until `num_masking_patches` patches are masked: each block has an area uniform in
  [min_num_patches, remaining budget] and an aspect ratio log-uniform in [min_aspect, 1 / min_aspect]; a block is
  accepted only if it masks at least one new patch and no more than the remaining budget (up to `attempts` tries
  per block). The count therefore never exceeds the target; it stops short of it when no small enough block fits
  in `attempts` tries, as the official generator does.

  Args:
    rng: PRNG key.
    batch_size: B.
    grid: (H, W) patch grid (BEiT-B/16 at 224 px: (14, 14)).
    num_masking_patches: target count (BEiT: 75 of 196, i.e. 40%), or one per example, `[B]` int (DINOv2's
      `ibot_masks`; 0 masks nothing).
    min_num_patches: smallest block area (16).
    max_num_patches: largest block area (default: the target count).
    min_aspect, max_aspect: aspect-ratio range (0.3, 1/0.3).
    attempts: tries per block.

  Returns:
    `[B, H * W]` float32 mask, row-major, 1 at masked patches.

  Example:
    >>> m = blockwise_masking(jax.random.key(0), 4, (14, 14), num_masking_patches=75)
    >>> counts = m.sum(axis=1)
    >>> bool(jnp.all(counts <= 75) & jnp.all(counts >= 65))
    True
  """
  gh, gw = grid
  targets = jnp.broadcast_to(jnp.asarray(num_masking_patches, jnp.int32), (batch_size,))
  log_ratio = (math.log(min_aspect), math.log(max_aspect or 1.0 / min_aspect))

  def one(key, target):
    max_num = target if max_num_patches is None else max_num_patches

    def try_block(state):
      mask, key, attempt, added, budget = state
      key, k1, k2, k3, k4 = jax.random.split(key, 5)
      area = min_num_patches + jax.random.uniform(k1) * (budget - min_num_patches)
      aspect = jnp.exp(jax.random.uniform(k2, minval=log_ratio[0], maxval=log_ratio[1]))
      h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
      w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
      fits = (w < gw) & (h < gh)
      top = jax.random.randint(k3, (), 0, jnp.maximum(gh - h + 1, 1))
      left = jax.random.randint(k4, (), 0, jnp.maximum(gw - w + 1, 1))
      block = _block(top, left, h, w, gh, gw)
      new = jnp.sum(block & ~mask)
      accept = fits & (new > 0) & (new <= budget)
      return (jnp.where(accept, mask | block, mask), key, attempt + 1, jnp.where(accept, new, 0), budget)

    def add_block(state):
      mask, key, count, _ = state
      budget = jnp.minimum(target - count, max_num)
      mask, key, _, added, _ = jax.lax.while_loop(
          lambda s: (s[2] < attempts) & (s[3] == 0), try_block, (mask, key, 0, jnp.int32(0), budget))
      return mask, key, count + added, added

    init = (jnp.zeros((gh, gw), bool), key, jnp.int32(0), jnp.int32(1))
    mask, *_ = jax.lax.while_loop(lambda s: (s[2] < target) & (s[3] > 0), add_block, init)
    return mask.reshape(-1)

  return jax.vmap(one)(jax.random.split(rng, batch_size), targets).astype(jnp.float32)


def stratified_mask_counts(rng: jax.Array, num_crops: int, num_tokens: int, *, mask_probability: float = 0.5,
                           ratio: tuple[float, float] = (0.1, 0.5)) -> jax.Array:
  """How many patches iBOT / DINOv2 mask in each of `num_crops` crops (DINOv2's `collate_data_and_cast`).

  `int(num_crops * mask_probability)` crops are masked; the ratio range is cut into that many equal strata, crop i
  masks `int(num_tokens * U(lo_i, hi_i))` patches of its stratum, the others none, and the counts are shuffled over
  the crops. The total never exceeds `ibot_capacity` (DINOv2's `upperbound`).

  Args:
    rng: PRNG key.
    num_crops: the crops drawn together (DINOv2: every global crop of one GPU's batch).
    num_tokens: patches per crop.
    mask_probability: the fraction of crops masked (0.5).
    ratio: (min, max) fraction of a masked crop's patches (0.1, 0.5).

  Returns:
    `[num_crops]` int32 target counts (`blockwise_masking` may stop short of a target).

  Example:
    >>> c = stratified_mask_counts(jax.random.key(0), 4, 100)
    >>> sorted(c.tolist())[:2], 10 <= sorted(c.tolist())[2] < 30 <= sorted(c.tolist())[3] <= 50
    ([0, 0], True)
  """
  masked = int(num_crops * mask_probability)
  k_ratio, k_perm = jax.random.split(rng)
  edges = jnp.linspace(ratio[0], ratio[1], masked + 1)
  u = jax.random.uniform(k_ratio, (masked,))
  counts = jnp.floor(num_tokens * (edges[:-1] + u * (edges[1:] - edges[:-1])))
  counts = jnp.minimum(counts, jnp.floor(num_tokens * edges[1:])).astype(jnp.int32)    # float32 rounding
  counts = jnp.concatenate([counts, jnp.zeros((num_crops - masked,), jnp.int32)])
  return jax.random.permutation(k_perm, counts)


def ibot_capacity(num_crops: int, num_tokens: int, *, mask_probability: float = 0.5,
                  ratio: tuple[float, float] = (0.1, 0.5)) -> int:
  """The most patches `stratified_mask_counts` can mask in `num_crops` crops together: the sum of
  `int(num_tokens * hi_i)` over the masked strata (DINOv2's `upperbound`, the static size of its masked-token
  buffer)."""
  masked = int(num_crops * mask_probability)
  edges = np.linspace(ratio[0], ratio[1], masked + 1, dtype=np.float32)
  return int(sum(int(np.float32(num_tokens) * hi) for hi in edges[1:]))


class MultiBlockMask(NamedTuple):
  """The output of `multiblock_masking`.

  Attributes:
    context: `[B, T]` bool, the patches the context encoder sees (a block minus every target block).
    targets: `[B, num_targets, T]` bool, one block per target (all of one batch have the same size).
  """
  context: jax.Array
  targets: jax.Array


def multiblock_block_size(u, grid: tuple[int, int], scale: tuple[float, float],
                          aspect: tuple[float, float]) -> tuple:
  """I-JEPA's `_sample_block_size`: the (height, width) of a block from one uniform `u` in [0, 1).

  One draw sets both the scale and the aspect ratio (`scale[0] + u * (scale[1] - scale[0])`, likewise the aspect),
  as the official collator does; the area kept is `int(H * W * scale)`, `h = round(sqrt(area * aspect))`, `w =
  round(sqrt(area / aspect))`, each reduced below the grid size. Works on python floats and on traced arrays.

  Example:
    >>> multiblock_block_size(0.5, (14, 14), (0.15, 0.2), (0.75, 1.5))     # area int(196 * 0.175) = 34
    (6, 5)
  """
  gh, gw = grid
  np_like = isinstance(u, float)
  floor, sqrt, rnd = (math.floor, math.sqrt, round) if np_like else (jnp.floor, jnp.sqrt, jnp.round)
  s = scale[0] + u * (scale[1] - scale[0])
  area = floor(gh * gw * s)
  ar = aspect[0] + u * (aspect[1] - aspect[0])
  h, w = rnd(sqrt(area * ar)), rnd(sqrt(area / ar))
  if np_like:
    return min(int(h), gh - 1), min(int(w), gw - 1)
  return jnp.minimum(h, gh - 1).astype(jnp.int32), jnp.minimum(w, gw - 1).astype(jnp.int32)


def multiblock_extremes(grid: tuple[int, int], scale: tuple[float, float],
                        aspect: tuple[float, float]) -> tuple[int, int]:
  """(smallest, largest) block area `h * w` that `multiblock_block_size` can give (a fine sweep of `u`, both ends
  included): the static capacity of the target tokens, and the check that a block can ever exceed `min_keep`."""
  areas = [math.prod(multiblock_block_size(i / 4096, grid, scale, aspect)) for i in range(4097)]
  return min(areas), max(areas)


def multiblock_masking(rng: jax.Array, batch_size: int, grid: tuple[int, int], *, num_targets: int = 4,
                       target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0),
                       context_aspect=(1.0, 1.0), min_keep: int = 10, tries: int = 20) -> MultiBlockMask:
  """I-JEPA's multi-block masking (Assran et al. 2023, Sec. 3), the official `MaskCollator` with static shapes.

  One target-block size and one context-block size are drawn per batch (`multiblock_block_size`: scale = fraction
  of the grid, aspect = h / w, both from one uniform). Every example places `num_targets` target blocks and one
  context block, each with its top-left corner uniform in `[0, H - h) x [0, W - w)` (the official `randint(0, H -
  h)`, which never lets a block touch the last row or column), and the context keeps only its patches outside every
  target. A context placement is accepted when it keeps more than `min_keep` patches; after `tries` rejected
  placements the official collator drops the last target from the constraint, then the next, and so on: here all
  `(num_targets + 1) * tries` placements are drawn at once and the first acceptable one in that order is kept, which
  is the same distribution. Target blocks are never rejected (they have no constraint).

  Args:
    rng: PRNG key.
    batch_size: B.
    grid: (H, W) patch grid (I-JEPA ViT-H/14 at 224 px: (16, 16)).
    num_targets: M (4).
    target_scale, target_aspect: (0.15, 0.2) and (0.75, 1.5).
    context_scale, context_aspect: (0.85, 1.0) and (1.0, 1.0).
    min_keep: a block is kept only with more than this many patches (10).
    tries: placements per constraint level (the official `timeout`, 20).

  Returns:
    a `MultiBlockMask` of bool masks (static shapes). The official collator then truncates every example's index
    list to the batch's smallest (`mask_to_indices` with a static capacity, and a validity limit per example).

  Raises:
    ValueError: where the official collator would loop forever: a target block, or an unconstrained context block,
      that can never keep more than `min_keep` patches (`multiblock_extremes`).

  Example:
    >>> m = multiblock_masking(jax.random.key(0), 2, (14, 14))
    >>> bool(jnp.any(m.context[:, None] & m.targets))    # the context rarely needs to overlap a target
    False
  """
  gh, gw = grid
  for name, scale, aspect in (("target", target_scale, target_aspect), ("context", context_scale, context_aspect)):
    smallest = multiblock_extremes(grid, scale, aspect)[0]
    if smallest <= min_keep:
      raise ValueError(f"multiblock_masking: a {name} block of scale {tuple(scale)} on a {gh}x{gw} grid can have "
                       f"{smallest} patches, not more than min_keep={min_keep} (the official collator never "
                       "returns); lower min_keep or use a finer grid (a smaller patch size).")
  k_tsize, k_csize, k_ex = jax.random.split(rng, 3)
  th, tw = multiblock_block_size(jax.random.uniform(k_tsize), grid, target_scale, target_aspect)
  ch, cw = multiblock_block_size(jax.random.uniform(k_csize), grid, context_scale, context_aspect)

  def place(key, h, w):
    k1, k2 = jax.random.split(key)
    top = jax.random.randint(k1, (), 0, gh - h)
    left = jax.random.randint(k2, (), 0, gw - w)
    return _block(top, left, h, w, gh, gw)

  def one(key):
    k_targets, k_context = jax.random.split(key)
    targets = jax.vmap(lambda k: place(k, th, tw))(jax.random.split(k_targets, num_targets))     # [M, H, W]
    # Constraint level r keeps the complements of the first M - r targets (the official `tries` counter).
    allowed = jnp.stack([~jnp.any(targets[:num_targets - r], axis=0) for r in range(num_targets + 1)])
    blocks = jax.vmap(lambda k: place(k, ch, cw))(jax.random.split(k_context, (num_targets + 1) * tries))
    contexts = blocks.reshape(num_targets + 1, tries, gh, gw) & allowed[:, None]
    ok = (jnp.sum(contexts, axis=(2, 3)) > min_keep).reshape(-1)
    return contexts.reshape(-1, gh * gw)[jnp.argmax(ok)], targets.reshape(num_targets, -1)

  context, targets = jax.vmap(one)(jax.random.split(k_ex, batch_size))
  return MultiBlockMask(context, targets)

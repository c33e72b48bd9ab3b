"""The classic pretext tasks as pure input/target builders (jax and numpy only).

  rotations              RotNet: every image at 0/90/180/270 degrees, the label is the rotation (Gidaris et al. 2018)
  jigsaw_permutations    a permutation set chosen by maximal Hamming distance (Noroozi & Favaro 2016, Algorithm 1)
  jigsaw                 3x3 tiles, shuffled by one permutation of the set, the label is its index
  jitter_tiles, standardize_tiles   the jigsaw puzzle's defences against low-level shortcuts
  rgb_to_lab, lab_to_rgb, ab_gamut_bins, soft_encode_ab, colorization_targets   L input and quantised ab targets
                         (Zhang et al. 2016)
  rebalancing_weights, annealed_mean   the colorization loss's class rebalancing and its decoding
  inpainting_mask        region masks for context encoders (Pathak et al. 2016)

Images are float `[B, H, W, C]` in [0, 1] unless said otherwise.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def rotations(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """All four rotations of every image, as RotNet trains (Gidaris, Singh, Komodakis 2018).

  Args:
    images: `[B, H, H, C]` (square).

  Returns:
    (`[4B, H, H, C]` rotated images, `[4B]` int32 labels: k for a rotation by k * 90 degrees counter-clockwise, the
    official `rotate_img`'s), example-major as the official `_collate_fun` stacks them: rows 4i..4i+3 are image i
    at 0, 90, 180 and 270 degrees (so a batch sharded over devices keeps each image's rotations on its device).

  Example:
    >>> x = jnp.arange(4.0).reshape(1, 2, 2, 1)
    >>> r, y = rotations(x)
    >>> r[1, ..., 0].tolist(), y.tolist()
    ([[1.0, 3.0], [0.0, 2.0]], [0, 1, 2, 3])
  """
  if images.shape[1] != images.shape[2]:
    raise ValueError(f"rotations need square images, got {images.shape[1]}x{images.shape[2]}.")
  rotated = jnp.stack([jnp.rot90(images, k, axes=(1, 2)) for k in range(4)], axis=1)       # [B, 4, H, H, C]
  labels = jnp.tile(jnp.arange(4, dtype=jnp.int32), images.shape[0])
  return rotated.reshape((-1,) + images.shape[1:]), labels


@functools.cache
def jigsaw_permutations(num: int = 100, tiles: int = 9, seed: int = 0) -> np.ndarray:
  """`num` permutations of `tiles` tiles chosen greedily for maximal Hamming distance (Noroozi & Favaro 2016).

  Algorithm 1 of the paper: start from a random permutation; repeatedly add the permutation whose summed Hamming
  distance to those already chosen is largest (ties: the first in lexicographic order).

  Args:
    num: the number of classes (paper: 1000; 100 is common for small runs).
    tiles: 9 for a 3x3 puzzle.
    seed: chooses the first permutation.

  Returns:
    `[num, tiles]` int32 array; row i maps puzzle slot j to tile `perm[i, j]`.

  Example:
    >>> p = jigsaw_permutations(4, tiles=4)
    >>> p.shape, sorted(p[0].tolist())
    ((4, 4), [0, 1, 2, 3])
  """
  import itertools
  all_perms = np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
  if not 1 <= num <= len(all_perms):
    raise ValueError(f"jigsaw_permutations: num must be in [1, {len(all_perms)}], got {num}.")
  chosen = [int(np.random.default_rng(seed).integers(len(all_perms)))]
  total = np.zeros(len(all_perms), np.int32)
  for _ in range(num - 1):
    total += np.sum(all_perms != all_perms[chosen[-1]], axis=1)
    total[chosen[-1]] = -1
    chosen.append(int(np.argmax(total)))
  return all_perms[chosen].astype(np.int32)


def jigsaw(rng: jax.Array, images: jax.Array, permutations: np.ndarray, grid: int = 3,
           tile_crop: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Jigsaw puzzles: cut each image into grid x grid cells, crop a random `tile_crop` square inside each cell (the
  paper's gap against edge-continuity shortcuts), and shuffle the tiles by a random permutation of the set.

  Args:
    rng: PRNG key.
    images: `[B, H, W, C]` with H and W divisible by `grid` (paper: 225 px crops, 75 px cells, 64 px tiles).
    permutations: `[P, grid * grid]` from `jigsaw_permutations`.
    grid: 3.
    tile_crop: tile size (default: the whole cell).

  Returns:
    (`[B, grid * grid, t, t, C]` tiles in puzzle order, `[B]` int32 permutation indices: the labels).

  Example:
    >>> x = jnp.arange(36.0).reshape(1, 6, 6, 1)
    >>> tiles, label = jigsaw(jax.random.key(0), x, jigsaw_permutations(10), tile_crop=2)
    >>> tiles.shape, label.shape
    ((1, 9, 2, 2, 1), (1,))
  """
  b, h, w, c = images.shape
  if h % grid or w % grid:
    raise ValueError(f"jigsaw: image size {h}x{w} is not divisible by the grid {grid}.")
  ch, cw = h // grid, w // grid
  t = min(ch, cw) if tile_crop is None else tile_crop
  if t > min(ch, cw):
    raise ValueError(f"jigsaw: tile_crop {t} is larger than the {ch}x{cw} cells.")
  perms = jnp.asarray(permutations, jnp.int32)
  k_perm, k_off = jax.random.split(rng)
  labels = jax.random.randint(k_perm, (b,), 0, perms.shape[0])
  offsets = jax.random.randint(k_off, (b, grid * grid, 2), 0, jnp.array([ch - t + 1, cw - t + 1]))
  cells = jnp.arange(grid * grid)

  def tiles_of(img, offs):
    def one(cell, off):
      top, left = (cell // grid) * ch + off[0], (cell % grid) * cw + off[1]
      return jax.lax.dynamic_slice(img, (top, left, 0), (t, t, c))
    return jax.vmap(one)(cells, offs)

  tiles = jax.vmap(tiles_of)(images, offsets)                       # [B, 9, t, t, C] in cell order
  shuffled = jnp.take_along_axis(tiles, perms[labels][:, :, None, None, None], axis=1)
  return shuffled, labels


def jitter_tiles(rng: jax.Array, tiles: jax.Array, scale: tuple[float, float] = (0.8, 1.2),
                 max_shift: int = 5) -> jax.Array:
  """Colour jitter of each tile on its own, against chromatic-aberration shortcuts (Noroozi & Favaro 2016; the
  PyTorch reimplementation's `rgb_jittering`): every channel of a tile multiplied by its own factor drawn
  from U(scale), then one shift of s / 255 added to the tile, s a whole number drawn from 0..max_shift with a random
  sign, and the result clipped to [0, 1].

  Args:
    rng: PRNG key.
    tiles: `[B, T, t, t, C]` in [0, 1].

  Returns:
    The jittered tiles, the same shape.
  """
  k_scale, k_shift, k_sign = jax.random.split(rng, 3)
  lead = tiles.shape[:2]
  factors = jax.random.uniform(k_scale, lead + (1, 1, tiles.shape[-1]), minval=scale[0], maxval=scale[1])
  shift = jax.random.randint(k_shift, lead + (1, 1, 1), 0, max_shift + 1).astype(jnp.float32)
  shift = jnp.where(jax.random.bernoulli(k_sign, 0.5, shift.shape), -shift, shift)
  return jnp.clip(tiles * factors + shift / 255.0, 0.0, 1.0)


def standardize_tiles(tiles: jax.Array) -> jax.Array:
  """Each tile `[..., t, t, C]` minus its mean, over its (unbiased) standard deviation, both over all its pixels and
  channels, as the jigsaw puzzle normalises tiles independently "to avoid low-level feature shortcuts"; a constant
  tile is only centred.

  Example:
    >>> t = standardize_tiles(jnp.arange(8.0).reshape(1, 2, 2, 2))
    >>> round(float(t.mean()), 6), round(float(t.std(ddof=1)), 6)
    (0.0, 1.0)
  """
  axes = (-3, -2, -1)
  mean = jnp.mean(tiles, axis=axes, keepdims=True)
  std = jnp.std(tiles, axis=axes, keepdims=True, ddof=1)
  return (tiles - mean) / jnp.where(std > 0, std, 1.0)


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
  """sRGB in [0, 1] `[..., 3]` -> CIE Lab (D65 white), L in [0, 100], a/b roughly in [-110, 110].

  Example:
    >>> [round(v, 1) for v in rgb_to_lab(jnp.array([1.0, 1.0, 1.0])).tolist()]
    [100.0, 0.0, 0.0]
  """
  rgb = rgb.astype(jnp.float32)
  linear = jnp.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
  m = jnp.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
  xyz = linear @ m.T / jnp.array([0.950456, 1.0, 1.088754])
  f = jnp.where(xyz > 0.008856, jnp.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
  lum = jnp.where(xyz[..., 1] > 0.008856, 116.0 * f[..., 1] - 16.0, 903.3 * xyz[..., 1])
  return jnp.stack([lum, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab: jax.Array) -> jax.Array:
  """CIE Lab (D65) `[..., 3]` -> sRGB in [0, 1] (clipped), the inverse of `rgb_to_lab`.

  Example:
    >>> [round(v, 3) for v in lab_to_rgb(rgb_to_lab(jnp.array([0.2, 0.5, 0.9]))).tolist()]
    [0.2, 0.5, 0.9]
  """
  lab = lab.astype(jnp.float32)
  fy = (lab[..., 0] + 16.0) / 116.0
  f = jnp.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
  xyz = jnp.where(f > 0.206893, f ** 3, (f - 16.0 / 116.0) / 7.787) * jnp.array([0.950456, 1.0, 1.088754])
  m = jnp.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
  linear = jnp.clip(xyz @ jnp.linalg.inv(m).T, 0.0, 1.0)
  return jnp.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


@functools.cache
def ab_gamut_bins(grid: int = 10, samples: int = 128) -> np.ndarray:
  """Centres of the ab cells (size `grid`) that some sRGB colour falls in: Zhang et al.'s in-gamut bins.

  Deviation: the paper keeps Q = 313 cells and ships their centres as a file without describing its gamut test;
  here the cells are those hit by a `samples`^3 grid of the sRGB cube converted to Lab (D65), which gives Q = 262
  at the defaults. Pass the paper's centres as `bins` to `colorization_targets` to match it exactly.

  Returns:
    `[Q, 2]` float32 (a, b) bin centres.

  Example:
    >>> ab_gamut_bins().shape
    (262, 2)
  """
  axis = np.linspace(0.0, 1.0, samples, dtype=np.float32)
  cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
  ab = np.asarray(rgb_to_lab(jnp.asarray(cube)))[:, 1:]
  cells = np.unique(np.round(ab / grid).astype(np.int32), axis=0)
  return (cells * grid).astype(np.float32)


def soft_encode_ab(ab: jax.Array, bins: np.ndarray | jax.Array, sigma: float = 5.0, neighbours: int = 5) -> jax.Array:
  """ab values `[..., 2]` -> distributions over the bins `[..., Q]`: each value on its `neighbours` nearest bins
  with Gaussian weights of width `sigma`, the paper's soft encoding (Zhang et al. 2016, section 2.1)."""
  bins = jnp.asarray(bins, jnp.float32)
  d2 = jnp.sum(jnp.square(ab[..., None, :] - bins), axis=-1)                # [..., Q]
  neg, idx = jax.lax.top_k(-d2, neighbours)
  w = jax.nn.softmax(neg / (2 * sigma ** 2), axis=-1)
  return jnp.sum(jax.nn.one_hot(idx, bins.shape[0]) * w[..., None], axis=-2)


def colorization_targets(images: jax.Array, bins: np.ndarray | None = None, sigma: float = 5.0,
                         neighbours: int = 5, stride: int = 1) -> tuple[jax.Array, jax.Array]:
  """Colorization as classification (Zhang, Isola, Efros 2016): L channel in, soft-encoded ab bins out.

  Args:
    images: `[B, H, W, 3]` sRGB in [0, 1].
    bins: `[Q, 2]` ab centres (default: `ab_gamut_bins()`).
    sigma, neighbours: the soft encoding (5, 5; `soft_encode_ab`).
    stride: the targets' resolution: every `stride`-th pixel's ab in each direction, as the official training net
      subsamples them (a 1 x 1 convolution of stride 4 with weight 1; the paper predicts at a quarter of the input's
      resolution).

  Returns:
    (`[B, H, W, 1]` L / 100 in [0, 1], `[B, H / stride, W / stride, Q]` float32 target distributions).

  Example:
    >>> lum, target = colorization_targets(jnp.full((1, 2, 2, 3), 0.5))
    >>> round(float(lum[0, 0, 0, 0]), 3), round(float(target.sum(-1)[0, 0, 0]), 3)
    (0.534, 1.0)
  """
  bins = ab_gamut_bins() if bins is None else bins
  lab = rgb_to_lab(images)
  _, h, w, _ = lab.shape
  if h % stride or w % stride:
    raise ValueError(f"colorization_targets: {h}x{w} images are not divisible by the stride {stride}.")
  return lab[..., :1] / 100.0, soft_encode_ab(lab[:, ::stride, ::stride, 1:], bins, sigma, neighbours)


def rebalancing_weights(prior: jax.Array, bins: np.ndarray | jax.Array, lam: float = 0.5,
                        sigma: float = 5.0) -> jax.Array:
  """The colorization loss's class-rebalancing weights (Zhang et al. 2016, equation 4): the empirical distribution of
  the bins `prior` `[Q]` smoothed by a Gaussian of width `sigma` over the ab plane, mixed with the uniform one,
  `w = ((1 - lam) p~ + lam / Q)^-1`, normalised so that the expected weight under `p~` is 1 (lam = 0.5 in the paper).

  Returns:
    `[Q]` weights; a pixel's weight is that of its nearest bin.

  Example:
    >>> w = rebalancing_weights(jnp.array([0.9, 0.1]), np.array([[0.0, 0.0], [100.0, 0.0]]))
    >>> [round(v, 3) for v in w.tolist()]      # the rare bin weighs more
    [0.882, 2.059]
  """
  bins = jnp.asarray(bins, jnp.float32)
  kernel = jnp.exp(-jnp.sum(jnp.square(bins[:, None] - bins[None]), axis=-1) / (2 * sigma ** 2))
  smoothed = kernel @ prior
  smoothed = smoothed / jnp.sum(smoothed)
  w = 1.0 / ((1 - lam) * smoothed + lam / bins.shape[0])
  return w / jnp.sum(smoothed * w)


def annealed_mean(logits: jax.Array, bins: np.ndarray | jax.Array, temperature: float = 0.38) -> jax.Array:
  """The paper's decoding of a predicted distribution into one colour (section 2.2): the mean of the bins under the
  distribution re-normalised at `temperature` (`exp(log z / T)`: 1 the mean, towards 0 the mode; paper 0.38).

  Args:
    logits: `[..., Q]` (the distribution's log-probabilities up to a constant).
    bins: `[Q, 2]` ab centres.

  Returns:
    `[..., 2]` ab values.
  """
  return jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1) @ jnp.asarray(bins, jnp.float32)


def inpainting_mask(rng: jax.Array, batch_size: int, height: int, width: int, kind: str = "center",
                    fraction: float = 0.25, num_blocks: int = 4) -> jax.Array:
  """Region masks for context-encoder inpainting (Pathak et al. 2016).

  Args:
    rng: PRNG key.
    batch_size, height, width: the mask shape.
    kind: "center" (the central square covering `fraction` of the image: the paper's 64x64 of 128x128 at 0.25) or
      "random_block" (`num_blocks` squares at random positions, each covering `fraction / num_blocks`; they may
      overlap).
    fraction: the area fraction.

  Returns:
    `[B, H, W, 1]` float32, 1 in the region to fill in (the context encoder sees `images * (1 - mask)`).

  Example:
    >>> m = inpainting_mask(jax.random.key(0), 1, 8, 8)
    >>> int(m.sum()), float(m[0, 3, 3, 0]), float(m[0, 0, 0, 0])
    (16, 1.0, 0.0)
  """
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  if kind == "center":
    h, w = round(height * fraction ** 0.5), round(width * fraction ** 0.5)
    top, left = (height - h) // 2, (width - w) // 2
    m = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return jnp.broadcast_to(m[None, :, :, None], (batch_size, height, width, 1)).astype(jnp.float32)
  if kind == "random_block":
    h, w = max(1, round(height * (fraction / num_blocks) ** 0.5)), max(1, round(width * (fraction / num_blocks) ** 0.5))
    k1, k2 = jax.random.split(rng)
    tops = jax.random.randint(k1, (batch_size, num_blocks, 1, 1), 0, height - h + 1)
    lefts = jax.random.randint(k2, (batch_size, num_blocks, 1, 1), 0, width - w + 1)
    m = jnp.any((rows >= tops) & (rows < tops + h) & (cols >= lefts) & (cols < lefts + w), axis=1)
    return m[..., None].astype(jnp.float32)
  raise ValueError(f"inpainting_mask: kind must be 'center' or 'random_block', got {kind!r}.")

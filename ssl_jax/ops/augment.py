"""Photometric augmentation on the device, inside the jitted step, with one random key per example and view.

The geometric part of the joint-embedding recipes (random-resized-crop, flip, multi-crop) runs on the host in Grain
workers (`ssl_jax.data.pipeline`); the photometric part runs here, on the accelerator, as in big_vision and the BYOL
JAX code. Semantics follow torchvision, which the official SimCLR-PyTorch ports, MoCo v3 and DINO use:

  ColorJitter(brightness b, contrast c, saturation s, hue h) with probability `jitter_p`: the four operations in a
    random order; brightness multiplies by U[1-b, 1+b]; contrast blends with the mean grey level by U[1-c, 1+c];
    saturation blends with the grey image by U[1-s, 1+s]; hue rotates by U[-h, h] turns; clipped to [0, 1] after each.
  RandomGrayscale with probability `gray_p` (ITU-R 601 luma, kept as three channels).
  GaussianBlur with probability `blur_p`, sigma ~ U[blur_sigma], a square kernel of about 10% of the view's side
    (SimCLR: 23 px at 224; zero padding at the border, where PIL extends the edge).
  Solarize with probability `solarize_p`: values >= 0.5 become 1 - value.

The primitives are dm-pix's (hue, blur, grey, solarize); brightness, contrast and saturation are written here because
dm-pix follows `tf.image` (additive brightness, per-channel contrast), not torchvision.

Everything is a pure function of (images, key): the same key gives the same views on 1 device or 8.
"""

import dataclasses

import dm_pix as pix
import jax
import jax.numpy as jnp

from ssl_jax.ops import image as image_lib


@dataclasses.dataclass(frozen=True)
class Photometric:
  """One view's photometric recipe (probabilities and ranges as in the papers' tables)."""
  jitter_p: float = 0.0
  brightness: float = 0.0
  contrast: float = 0.0
  saturation: float = 0.0
  hue: float = 0.0
  gray_p: float = 0.0
  blur_p: float = 0.0
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  solarize_p: float = 0.0


_BYOL_JITTER = dict(jitter_p=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, gray_p=0.2)

# Named recipes; a view group in `config.data.image.views` names one per view (cycling).
RECIPES = {
    "none": Photometric(),
    # SimCLR (Chen et al. 2020, appendix A): colour distortion of strength 1 (0.8, 0.8, 0.8, 0.2) with p 0.8,
    # greyscale p 0.2, blur p 0.5 on ImageNet; the same for both views.
    "simclr": Photometric(jitter_p=0.8, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, gray_p=0.2,
                          blur_p=0.5),
    # BYOL (Grill et al. 2020, table 6), also MoCo v3 and DINO's global crops: asymmetric blur and solarisation.
    "byol1": Photometric(**_BYOL_JITTER, blur_p=1.0, solarize_p=0.0),
    "byol2": Photometric(**_BYOL_JITTER, blur_p=0.1, solarize_p=0.2),
    # MoCo v2 (Chen et al. 2020, "Improved Baselines"), also SimSiam's: jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grey
    # p 0.2, blur p 0.5; the same for both views.
    "mocov2": Photometric(jitter_p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, gray_p=0.2,
                          blur_p=0.5),
    # DINO's local crops (main_dino.py DataAugmentationDINO): jitter, grey, blur p 0.5.
    "dino_local": Photometric(**_BYOL_JITTER, blur_p=0.5),
    # BEiT and data2vec (vision) pretraining (`DataAugmentationForBEiT`): ColorJitter(0.4, 0.4, 0.4), always (no hue:
    # left out, as torchvision does).
    "beit": Photometric(jitter_p=1.0, brightness=0.4, contrast=0.4, saturation=0.4),
}


def recipe(name: str) -> Photometric:
  if name not in RECIPES:
    raise ValueError(f"unknown photometric recipe {name!r}; known recipes: {sorted(RECIPES)}.")
  return RECIPES[name]


def _gray(x):
  return pix.rgb_to_grayscale(x, keep_dims=True)


def _blend(x, y, factor):
  """factor * x + (1 - factor) * y, clipped, as torchvision's `_blend`."""
  return jnp.clip(factor * x + (1.0 - factor) * y, 0.0, 1.0)


def color_jitter(x: jax.Array, key: jax.Array, brightness: float, contrast: float, saturation: float,
                 hue: float) -> jax.Array:
  """torchvision's ColorJitter on one `[H, W, 3]` image in [0, 1]: the four adjustments in a random order.

  An adjustment of strength 0 is left out, as torchvision leaves it out (its factor is None): not applied as an
  identity in floating point, which for the hue (an RGB -> HSV -> RGB round trip) would move pixels whose largest
  channels nearly tie. The random draws are the same either way."""
  kb, kc, ks, kh, kp = jax.random.split(key, 5)
  fb = jax.random.uniform(kb, (), minval=1 - brightness, maxval=1 + brightness)
  fc = jax.random.uniform(kc, (), minval=1 - contrast, maxval=1 + contrast)
  fs = jax.random.uniform(ks, (), minval=1 - saturation, maxval=1 + saturation)
  fh = jax.random.uniform(kh, (), minval=-hue, maxval=hue)
  return adjust_colors(x, jax.random.permutation(kp, 4), brightness=fb if brightness else None,
                       contrast=fc if contrast else None, saturation=fs if saturation else None,
                       hue=fh if hue else None)


def adjust_colors(x: jax.Array, order: jax.Array, brightness: jax.Array | None = None,
                  contrast: jax.Array | None = None, saturation: jax.Array | None = None,
                  hue: jax.Array | None = None) -> jax.Array:
  """torchvision's colour adjustments of one `[H, W, 3]` image in [0, 1], in `order`, as ColorJitter applies them.

  Args:
    x: float32 `[H, W, 3]` in [0, 1].
    order: int32 `[4]`, a permutation of 0 (brightness), 1 (contrast), 2 (saturation), 3 (hue); `order[0]` first.
    brightness, contrast, saturation: factors (scalars) of torchvision's `_blend(x, reference, factor)`,
      `factor * x + (1 - factor) * reference` clipped to [0, 1], with the reference black, the image's mean grey
      level, or its grey image (ITU-R 601 luma); None leaves the adjustment out.
    hue: a rotation in turns (scalar; dm-pix's `adjust_hue`, clipped to [0, 1]), or None.

  Returns:
    float32 `[H, W, 3]`.
  """
  identity = lambda v: v
  ops = (
      (lambda v: jnp.clip(v * brightness, 0.0, 1.0)) if brightness is not None else identity,
      (lambda v: _blend(v, jnp.mean(_gray(v)), contrast)) if contrast is not None else identity,
      (lambda v: _blend(v, _gray(v), saturation)) if saturation is not None else identity,
      (lambda v: jnp.clip(pix.adjust_hue(v, hue), 0.0, 1.0)) if hue is not None else identity,
  )
  for i in range(4):
    x = jax.lax.switch(order[i], ops, x)
  return x


def blur_kernel_size(size: int) -> int:
  """The odd kernel side of about 10% of the image side (SimCLR: 23 at 224; at least 3)."""
  return max(3, int(0.1 * size) // 2 * 2 + 1)


def photometric(x: jax.Array, key: jax.Array, r: Photometric) -> jax.Array:
  """Applies recipe `r` to one `[H, W, 3]` float image in [0, 1] with key `key`; returns the same shape."""
  kj, kjp, kg, kb, kbp, ks = jax.random.split(key, 6)
  if r.jitter_p > 0:
    jittered = color_jitter(x, kj, r.brightness, r.contrast, r.saturation, r.hue)
    x = jnp.where(jax.random.uniform(kjp) < r.jitter_p, jittered, x)
  if r.gray_p > 0:
    x = jnp.where(jax.random.uniform(kg) < r.gray_p, jnp.broadcast_to(_gray(x), x.shape), x)
  if r.blur_p > 0:
    sigma = jax.random.uniform(kb, (), minval=r.blur_sigma[0], maxval=r.blur_sigma[1])
    blurred = pix.gaussian_blur(x, sigma, blur_kernel_size(x.shape[0]))
    x = jnp.where(jax.random.uniform(kbp) < r.blur_p, blurred, x)
  if r.solarize_p > 0:
    x = jnp.where(jax.random.uniform(ks) < r.solarize_p, pix.solarize(x, 0.5), x)
  return x


def augment_views(views: jax.Array, key: jax.Array, recipes: tuple[Photometric, ...]) -> jax.Array:
  """Photometric augmentation and normalisation of a group of views.

  Args:
    views: uint8 `[B, V, H, W, 3]`, V views of each of B images (already cropped and flipped on the host).
    key: one key for the group; example b, view v uses `fold_in(fold_in(key, v), b)`, so the result does not depend
      on how the batch is sharded.
    recipes: V recipes (view v uses `recipes[v]`).

  Returns:
    float32 `[B, V, H, W, 3]`, normalised with the ImageNet mean and std (`ssl_jax.ops.image.normalize`).
  """
  b, v = views.shape[:2]
  if len(recipes) != v:
    raise ValueError(f"{v} views but {len(recipes)} photometric recipes.")
  x = views.astype(jnp.float32) / 255.0
  out = []
  for i, r in enumerate(recipes):
    keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.fold_in(key, i), n))(jnp.arange(b))
    out.append(jax.vmap(lambda img, k: photometric(img, k, r))(x[:, i], keys))
  return image_lib.normalize_unit(jnp.stack(out, axis=1))

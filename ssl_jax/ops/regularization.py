"""Input and label regularisers of supervised fine-tuning, on the device inside the jitted step (timm semantics, as
the MAE, BEiT and DeiT fine-tuning recipes use them):

- `smooth_labels`: one-hot targets with label smoothing (timm: `off = eps / C`, `on = 1 - eps + off`).
- `random_erasing`: per example, with probability p, one rectangle of random area fraction in [0.02, 1/3] and
  log-uniform aspect ratio in [0.3, 1/0.3] filled with per-pixel N(0, 1) noise in normalised units (timm's
  `RandomErasing(mode="pixel")`, up to 10 attempts to fit the rectangle).
- `mixup_cutmix`: per batch (timm's `mode="batch"`), with probability `prob`, either mixup (Zhang et al. 2018:
  `lam x + (1 - lam) x_flip`, lam ~ Beta(a, a)) or CutMix (Yun et al. 2019: a box of relative area `1 - lam` pasted
  from the flipped batch, lam corrected to the box actually pasted), chosen with `switch_prob`; targets mixed the
  same way. The partner of example i is example B-1-i of the global batch.
"""

import jax
import jax.numpy as jnp


def smooth_labels(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
  """Integer labels `[B]` -> float32 targets `[B, C]`: `1 - smoothing + smoothing / C` on the label, `smoothing / C`
  elsewhere."""
  off = smoothing / num_classes
  return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * (1.0 - smoothing) + off


def _rectangle_mask(top, left, h, w, height, width):
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def random_erasing(key: jax.Array, images: jax.Array, prob: float = 0.25, area=(0.02, 1 / 3),
                   aspect=(0.3, 1 / 0.3), attempts: int = 10) -> jax.Array:
  """Erases one random rectangle per example with probability `prob` (see the module docstring).

  Args:
    images: normalised float `[B, H, W, C]`.

  Returns:
    `images` with the rectangles replaced by N(0, 1) noise.
  """
  b, height, width, _ = images.shape

  def one(k, img):
    k_apply, k_area, k_aspect, k_top, k_left, k_noise = jax.random.split(k, 6)
    target = jax.random.uniform(k_area, (attempts,), minval=area[0], maxval=area[1]) * height * width
    ratio = jnp.exp(jax.random.uniform(k_aspect, (attempts,), minval=jnp.log(aspect[0]), maxval=jnp.log(aspect[1])))
    h = jnp.round(jnp.sqrt(target * ratio)).astype(jnp.int32)
    w = jnp.round(jnp.sqrt(target / ratio)).astype(jnp.int32)
    fits = (h < height) & (w < width)
    first = jnp.argmax(fits)                                     # the first attempt that fits (timm's loop)
    h, w = h[first], w[first]
    top = jax.random.randint(k_top, (), 0, jnp.maximum(height - h, 0) + 1)
    left = jax.random.randint(k_left, (), 0, jnp.maximum(width - w, 0) + 1)
    erase = (jax.random.uniform(k_apply) < prob) & jnp.any(fits)
    mask = _rectangle_mask(top, left, h, w, height, width) & erase
    noise = jax.random.normal(k_noise, img.shape, img.dtype)
    return jnp.where(mask[..., None], noise, img)

  return jax.vmap(one)(jax.random.split(key, b), images)


def mixup_cutmix(key: jax.Array, images: jax.Array, targets: jax.Array, *, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, switch_prob: float = 0.5, prob: float = 1.0):
  """Mixes a batch with its reverse by mixup or CutMix (see the module docstring).

  Args:
    images: float `[B, H, W, C]`.
    targets: float `[B, C]` (e.g. from `smooth_labels`).

  Returns:
    (mixed images, mixed targets, lam): lam is the weight of the original example (1 when nothing was mixed).
  """
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return images, targets, jnp.ones((), jnp.float32)
  _, height, width, _ = images.shape
  k_apply, k_switch, k_mix, k_cut, k_y, k_x = jax.random.split(key, 6)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(k_switch) < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  lam_mix = jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.ones(())
  lam_cut = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.ones(())
  # CutMix box (timm's rand_bbox): side fractions sqrt(1 - lam), centre uniform, clipped to the image.
  cut = jnp.sqrt(1.0 - lam_cut)
  cut_h, cut_w = (height * cut).astype(jnp.int32), (width * cut).astype(jnp.int32)
  cy, cx = jax.random.randint(k_y, (), 0, height), jax.random.randint(k_x, (), 0, width)
  y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  box = _rectangle_mask(y0, x0, y1 - y0, x1 - x0, height, width)[None, :, :, None]
  lam_cut = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)

  partner = images[::-1]
  mixed = jnp.where(use_cutmix, jnp.where(box, partner, images), lam_mix * images + (1.0 - lam_mix) * partner)
  lam = jnp.where(use_cutmix, lam_cut, lam_mix).astype(jnp.float32)
  apply = jax.random.uniform(k_apply) < prob
  images = jnp.where(apply, mixed, images).astype(images.dtype)
  lam = jnp.where(apply, lam, 1.0)
  return images, lam * targets + (1.0 - lam) * targets[::-1], lam

"""On-device photometric augmentation: determinism, sharding invariance, and the statistics of each operation."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.ops import augment
from ssl_jax.ops import image
from ssl_jax import sharding


def _views(b=16, v=2, s=16, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randint(0, 256, (b, v, s, s, 3)), jnp.uint8)


def _unit(normalised):
  """Undo the ImageNet normalisation: back to [0, 1]."""
  return normalised * jnp.asarray(image.IMAGENET_STD) + jnp.asarray(image.IMAGENET_MEAN)


def test_same_key_same_views_other_key_other_views():
  x = _views()
  recipes = (augment.recipe("byol1"), augment.recipe("byol2"))
  f = jax.jit(lambda v, k: augment.augment_views(v, k, recipes))
  a, b = f(x, jax.random.key(0)), f(x, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(np.asarray(a), np.asarray(f(x, jax.random.key(1))))
  assert a.shape == x.shape and a.dtype == jnp.float32


def test_one_and_eight_devices_give_the_same_views():
  x = _views(b=16)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, jax.devices())
  assert mesh.size == 8

  def one_and_eight(images, recipes, seed=3):
    f = jax.jit(lambda v, k: augment.augment_views(v, k, recipes))
    one = f(jax.device_put(images, jax.devices()[0]), jax.random.key(3))
    return np.asarray(one), np.asarray(f(jax.device_put(images, sharding.batch_sharding(mesh)), jax.random.key(seed)))

  # The same draws for every example whatever the device count (a draw that depended on the device, a per-shard key,
  # changes nearly every value of nearly every view). The two programs sum the contrast adjustment's image mean in
  # different orders, so values agree to float32 rounding (measured: within 4.3e-6) ...
  recipes = (augment.recipe("simclr"), augment.recipe("byol2"))
  without_hue = tuple(dataclasses.replace(r, hue=0.0) for r in recipes)
  np.testing.assert_allclose(*one_and_eight(x, without_hue), rtol=0, atol=1e-5)
  # ... and the hue's draws are checked on images where its RGB -> HSV round trip is well conditioned: no two
  # channels of a pixel within 40 levels. Where they nearly tie, a last-bit difference can move the pixel's hue
  # across a sector, and the compiler's choices alone (1 vs 8 devices, LLVM's level, XLA's emitters) changed up to
  # 90% of the values of 1 to 3 of the 32 views of `x` by up to 4 (in normalised units) after the later adjustments.
  rng = np.random.default_rng(0)
  levels = np.stack([rng.integers(0, 40, (16, 2, 16, 16)), rng.integers(80, 160, (16, 2, 16, 16)),
                     rng.integers(200, 256, (16, 2, 16, 16))], axis=-1)
  separated = jnp.asarray(rng.permuted(levels, axis=-1), jnp.uint8)
  hue_only = tuple(augment.Photometric(jitter_p=1.0, hue=r.hue) for r in recipes)
  np.testing.assert_allclose(*one_and_eight(separated, hue_only), rtol=0, atol=1e-5)
  assert not np.allclose(*one_and_eight(separated, hue_only, seed=4), rtol=0, atol=1e-2)


def test_identity_recipe_only_normalises():
  x = _views()
  out = augment.augment_views(x, jax.random.key(0), (augment.recipe("none"),) * 2)
  np.testing.assert_allclose(np.asarray(out), np.asarray(image.normalize(x)), atol=1e-6)
  # A jitter of strength 0 in every adjustment leaves each one out (torchvision): the same values exactly.
  jitter_of_nothing = augment.augment_views(x, jax.random.key(0), (augment.Photometric(jitter_p=1.0),) * 2)
  np.testing.assert_array_equal(np.asarray(jitter_of_nothing), np.asarray(out))


def _torchvision_adjustments(x, order, brightness, contrast, saturation, hue):
  """A transcription of torchvision's `ColorJitter.forward` (transforms.py) for given draws, with the adjustments of
  `transforms/_functional_tensor.py`, in float64 numpy on one channels-last `[H, W, 3]` image in [0, 1]."""
  gray = lambda v: (0.2989 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2])[..., None]
  blend = lambda a, b, ratio: np.clip(ratio * a + (1.0 - ratio) * b, 0.0, 1.0)

  def adjust_hue(v):                                   # _rgb2hsv, the hue shifted modulo 1, _hsv2rgb
    r, g, b = np.moveaxis(v, -1, 0)
    maxc, minc = v.max(-1), v.min(-1)
    eqc, cr = maxc == minc, maxc - minc
    s = cr / np.where(eqc, 1.0, maxc)
    divisor = np.where(eqc, 1.0, cr)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    h = ((maxc == r) * (bc - gc) + ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
         + ((maxc != g) & (maxc != r)) * (4.0 + gc - rc))
    h = ((np.fmod(h / 6.0 + 1.0, 1.0)) + hue) % 1.0
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int32) % 6
    p, q, t = (np.clip(maxc * (1.0 - s), 0, 1), np.clip(maxc * (1.0 - s * f), 0, 1),
               np.clip(maxc * (1.0 - s * (1.0 - f)), 0, 1))
    table = [(maxc, t, p), (q, maxc, p), (p, maxc, t), (p, q, maxc), (t, p, maxc), (maxc, p, q)]
    return np.stack([np.choose(i, [row[c] for row in table]) for c in range(3)], axis=-1)

  for op in order:
    if op == 0 and brightness is not None:
      x = blend(x, 0.0, brightness)
    elif op == 1 and contrast is not None:
      x = blend(x, gray(x).mean(), contrast)
    elif op == 2 and saturation is not None:
      x = blend(x, gray(x), saturation)
    elif op == 3 and hue is not None:
      x = adjust_hue(x)
  return x


def test_colour_adjustments_equal_torchvisions_transcription():
  """`augment.adjust_colors` (ColorJitter's four adjustments in a drawn order) against the transcription above, in
  every one of the 24 orders and with adjustments left out, on images whose channels are at least 40 levels apart
  (where the hue's RGB -> HSV round trip is well conditioned in float32: test_one_and_eight_devices_give_the_same_views
  says why); and the transcription against torchvision itself where it is installed."""
  rng = np.random.default_rng(0)
  orders = np.array(list(itertools.permutations(range(4))), np.int32)           # [24, 4]
  n = len(orders)
  levels = np.stack([rng.integers(0, 40, (n, 6, 6)), rng.integers(80, 160, (n, 6, 6)),
                     rng.integers(200, 256, (n, 6, 6))], axis=-1)
  x = (rng.permuted(levels, axis=-1) / 255).astype(np.float32)                                 # [24, 6, 6, 3]
  factors = rng.uniform(0.6, 1.4, (n, 3)).astype(np.float32)
  shifts = rng.uniform(-0.1, 0.1, n).astype(np.float32)
  cases = [dict(brightness=True, contrast=True, saturation=True, hue=True),
           dict(brightness=True, contrast=False, saturation=True, hue=False),
           dict(brightness=False, contrast=True, saturation=False, hue=True)]
  for used in cases:
    def ours(image, order, f, shift):
      pick = lambda name, value: value if used[name] else None
      return augment.adjust_colors(image, order, brightness=pick("brightness", f[0]), contrast=pick("contrast", f[1]),
                                   saturation=pick("saturation", f[2]), hue=pick("hue", shift))
    got = np.asarray(jax.jit(jax.vmap(ours))(x, orders, factors, shifts))
    for i in range(n):
      draws = dict(brightness=factors[i, 0], contrast=factors[i, 1], saturation=factors[i, 2], hue=shifts[i])
      want = _torchvision_adjustments(x[i].astype(np.float64), orders[i],
                                      **{k: float(v) if used[k] else None for k, v in draws.items()})
      np.testing.assert_allclose(got[i], want, rtol=0, atol=2e-6, err_msg=f"order {orders[i]}, {used}")
  try:
    import torch
    from torchvision.transforms import functional as tv
  except ImportError:
    return
  adjust = {0: tv.adjust_brightness, 1: tv.adjust_contrast, 2: tv.adjust_saturation, 3: tv.adjust_hue}
  for i in range(n):
    image = torch.from_numpy(x[i].astype(np.float64)).permute(2, 0, 1)
    values = (*factors[i].tolist(), float(shifts[i]))
    for op in orders[i]:
      image = adjust[int(op)](image, values[op])
    want = _torchvision_adjustments(x[i].astype(np.float64), orders[i], *values)
    # torchvision's adjust_hue computes in float32 whatever the image's type: float32 rounding.
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), want, rtol=0, atol=2e-6)


def test_grayscale_probability_and_result():
  x = _views(b=400, v=1, s=4)
  r = augment.Photometric(gray_p=0.3)
  out = _unit(augment.augment_views(x, jax.random.key(0), (r,)))[:, 0]
  gray = np.asarray(jnp.all(jnp.abs(out[..., 0] - out[..., 1]) < 1e-5, axis=(1, 2)))
  assert 0.22 < gray.mean() < 0.38
  # Rec. 601 luma of the original pixels.
  y = (np.asarray(x[:, 0], np.float32) / 255) @ np.array([0.2989, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(np.asarray(out[gray][..., 0]), y[gray], atol=2e-3)


def test_solarize_inverts_values_above_half():
  x = jnp.asarray(np.linspace(0, 255, 4 * 4 * 3).reshape(1, 1, 4, 4, 3), jnp.uint8)
  out = _unit(augment.augment_views(x, jax.random.key(0), (augment.Photometric(solarize_p=1.0),)))
  u = np.asarray(x, np.float32) / 255
  np.testing.assert_allclose(np.asarray(out), np.where(u >= 0.5, 1 - u, u), atol=1e-5)


def test_brightness_factor_range_and_clipping():
  x = jnp.full((300, 1, 2, 2, 3), 100, jnp.uint8)
  r = augment.Photometric(jitter_p=1.0, brightness=0.4)
  out = _unit(augment.augment_views(x, jax.random.key(1), (r,)))
  factor = np.asarray(out[:, 0, 0, 0, 0]) / (100 / 255)
  assert factor.min() >= 0.6 - 1e-4 and factor.max() <= 1.4 + 1e-4
  assert abs(factor.mean() - 1.0) < 0.05 and factor.std() > 0.15      # U[0.6, 1.4]: std 0.23
  bright = jnp.full((50, 1, 2, 2, 3), 250, jnp.uint8)
  assert float(_unit(augment.augment_views(bright, jax.random.key(1), (r,))).max()) <= 1.0 + 1e-5


def test_saturation_and_hue_leave_gray_images_gray():
  x = jnp.broadcast_to(jnp.arange(16, dtype=jnp.uint8).reshape(1, 1, 4, 4, 1) * 10, (20, 1, 4, 4, 3))
  r = augment.Photometric(jitter_p=1.0, saturation=0.8, hue=0.5)
  out = _unit(augment.augment_views(x, jax.random.key(0), (r,)))
  np.testing.assert_allclose(np.asarray(out), np.asarray(x, np.float32) / 255, atol=2e-3)


def test_contrast_keeps_the_mean_grey_level():
  x = _views(b=50, v=1, s=8)
  r = augment.Photometric(jitter_p=1.0, contrast=0.5)
  out = _unit(augment.augment_views(x, jax.random.key(0), (r,)))
  before = np.asarray(x, np.float32).mean(axis=(1, 2, 3, 4)) / 255
  after = np.asarray(out).mean(axis=(1, 2, 3, 4))
  np.testing.assert_allclose(after, before, atol=0.02)   # clipping moves it slightly


def test_blur_smooths_and_keeps_constant_interiors():
  x = _views(b=8, v=1, s=32)
  r = augment.Photometric(blur_p=1.0, blur_sigma=(1.5, 2.0))
  out = _unit(augment.augment_views(x, jax.random.key(0), (r,)))
  u = np.asarray(x, np.float32) / 255
  assert np.asarray(out).std() < 0.5 * u.std()
  flat = jnp.full((1, 1, 32, 32, 3), 128, jnp.uint8)
  out = _unit(augment.augment_views(flat, jax.random.key(0), (r,)))
  np.testing.assert_allclose(np.asarray(out)[0, 0, 8:-8, 8:-8], 128 / 255, atol=1e-5)


def test_recipes_follow_the_papers():
  byol1, byol2 = augment.recipe("byol1"), augment.recipe("byol2")
  assert (byol1.blur_p, byol1.solarize_p, byol2.blur_p, byol2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
  assert (byol1.brightness, byol1.contrast, byol1.saturation, byol1.hue) == (0.4, 0.4, 0.2, 0.1)
  simclr = augment.recipe("simclr")
  assert dataclasses.astuple(simclr)[:6] == (0.8, 0.8, 0.8, 0.8, 0.2, 0.2) and simclr.blur_p == 0.5
  assert augment.blur_kernel_size(224) == 23
  with pytest.raises(ValueError, match="known recipes"):
    augment.recipe("byol3")

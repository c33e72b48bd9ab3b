"""Host-side geometric transforms (run in Grain workers), numpy + Pillow on uint8 HWC images."""

import math

import numpy as np
from PIL import Image


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3), attempts: int = 10) -> tuple[int, int, int, int]:
  """Samples a crop box `(top, left, h, w)` as torchvision's `RandomResizedCrop.get_params` does.

  The area fraction is uniform in `scale`, the aspect ratio log-uniform in `ratio`; after `attempts` failures the
  box falls back to a centre crop with the aspect ratio clipped to `ratio`.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(attempts):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bicubic resize of a uint8 `[H, W, C]` image to `size = (h, w)` (MAE and timm use bicubic)."""
  if image.shape[:2] == tuple(size):
    return image
  return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC))


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: int, scale, ratio) -> np.ndarray:
  top, left, h, w = random_resized_crop_box(rng, image.shape[0], image.shape[1], scale, ratio)
  return resize(image[top:top + h, left:left + w], (size, size))


def center_crop(image: np.ndarray, size: int, crop_pct: float = 0.875) -> np.ndarray:
  """Evaluation view: resize the shorter side to `size / crop_pct`, then take the central `size x size` crop."""
  h, w = image.shape[:2]
  short = int(round(size / crop_pct))
  nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
  image = resize(image, (nh, nw))
  top, left = (nh - size) // 2, (nw - size) // 2
  return image[top:top + size, left:left + size]


# RandAugment (Cubuk et al. 2020) as timm's `rand-m{M}-mstd{S}-inc1` (the MAE / DeiT / BEiT fine-tuning recipe):
# `num_ops` operations drawn uniformly with replacement from the 15 below, each applied with probability `prob` at
# a magnitude drawn per operation from N(M, S) clipped to [0, 10]; the "increasing" variants, whose strength grows
# with the magnitude. Geometric operations fill with the ImageNet mean colour and resample bicubically.
_FILL = (124, 116, 104)
_MAX_LEVEL = 10.0


def _signed(rng, value):
  return -value if rng.random() < 0.5 else value


def _affine(img, rng, matrix):
  return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BICUBIC, fillcolor=_FILL)


def _enhance(cls):
  def op(img, rng, m):
    return cls(img).enhance(1.0 + _signed(rng, m / _MAX_LEVEL * 0.9))
  return op


def _solarize_add(img, rng, m):
  add = int(m / _MAX_LEVEL * 110)
  lut = [min(255, i + add) if i < 128 else i for i in range(256)]
  return img.point(lut * len(img.getbands()))


def _rand_augment_ops():
  from PIL import ImageEnhance
  from PIL import ImageOps
  return {
      "AutoContrast": lambda img, rng, m: ImageOps.autocontrast(img),
      "Equalize": lambda img, rng, m: ImageOps.equalize(img),
      "Invert": lambda img, rng, m: ImageOps.invert(img),
      "Rotate": lambda img, rng, m: img.rotate(_signed(rng, m / _MAX_LEVEL * 30.0), resample=Image.BICUBIC,
                                               fillcolor=_FILL),
      "PosterizeIncreasing": lambda img, rng, m: ImageOps.posterize(img, 4 - int(m / _MAX_LEVEL * 4)),
      "SolarizeIncreasing": lambda img, rng, m: ImageOps.solarize(img, 256 - int(m / _MAX_LEVEL * 256)),
      "SolarizeAdd": _solarize_add,
      "ColorIncreasing": _enhance(ImageEnhance.Color),
      "ContrastIncreasing": _enhance(ImageEnhance.Contrast),
      "BrightnessIncreasing": _enhance(ImageEnhance.Brightness),
      "SharpnessIncreasing": _enhance(ImageEnhance.Sharpness),
      "ShearX": lambda img, rng, m: _affine(img, rng, (1, _signed(rng, m / _MAX_LEVEL * 0.3), 0, 0, 1, 0)),
      "ShearY": lambda img, rng, m: _affine(img, rng, (1, 0, 0, _signed(rng, m / _MAX_LEVEL * 0.3), 1, 0)),
      "TranslateXRel": lambda img, rng, m: _affine(
          img, rng, (1, 0, _signed(rng, m / _MAX_LEVEL * 0.45) * img.size[0], 0, 1, 0)),
      "TranslateYRel": lambda img, rng, m: _affine(
          img, rng, (1, 0, 0, 0, 1, _signed(rng, m / _MAX_LEVEL * 0.45) * img.size[1])),
  }


RAND_AUGMENT_OPS = tuple(_rand_augment_ops())


def rand_augment(image: np.ndarray, rng: np.random.Generator, *, num_ops: int = 2, magnitude: float = 9.0,
                 magnitude_std: float = 0.5, prob: float = 0.5) -> np.ndarray:
  """RandAugment of a uint8 `[H, W, 3]` image (see the comment above for the semantics)."""
  ops = _rand_augment_ops()
  img = Image.fromarray(image)
  for name in rng.choice(RAND_AUGMENT_OPS, size=num_ops):
    if rng.random() > prob:
      continue
    m = magnitude if magnitude_std <= 0 else float(np.clip(rng.normal(magnitude, magnitude_std), 0, _MAX_LEVEL))
    img = ops[name](img, rng, m)
  return np.asarray(img)

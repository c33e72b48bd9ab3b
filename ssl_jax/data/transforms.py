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

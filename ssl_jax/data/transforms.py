"""Host-side image transforms (run in Grain workers), numpy + Pillow on uint8 HWC images: the crops and flips, the
view groups of multi-view methods, the evaluation view, RandAugment, and the Grain maps that apply them per example.

Multi-view methods (SimCLR, BYOL, MoCo v3, DINO) get, instead of one crop per image, groups of views: each image is
decoded once and cropped `count` times per group (e.g. DINO's 2 global crops at 224 and 10 local crops at 96), each
group a `[count, size, size, 3]` array under `views/<group name>`. Photometric augmentation follows on the device
(`ssl_jax.data.inputs`, the input spec).
"""

import dataclasses
import math

import grain
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


@dataclasses.dataclass(frozen=True)
class TrainAugment(grain.transforms.RandomMap):
  """Random-resized-crop to `size`, then a horizontal flip with probability 1/2 (if `flip`), then RandAugment with
  `rand_augment = (num_ops, magnitude, magnitude_std)` if given (supervised fine-tuning)."""
  size: int
  scale: tuple[float, float]
  ratio: tuple[float, float]
  flip: bool
  rand_augment: tuple[int, float, float] | None = None

  def random_map(self, element, rng: np.random.Generator):
    img = random_resized_crop(element["image"], rng, self.size, self.scale, self.ratio)
    if self.flip and rng.random() < 0.5:
      img = img[:, ::-1]
    if self.rand_augment is not None:
      num_ops, magnitude, std = self.rand_augment
      img = rand_augment(np.ascontiguousarray(img), rng, num_ops=num_ops, magnitude=magnitude,
                                    magnitude_std=std)
    return dict(element, image=np.ascontiguousarray(img))


@dataclasses.dataclass(frozen=True)
class ViewGroup:
  """`count` random-resized crops of side `size`, area fraction in `scale`, flipped with probability 1/2 if `flip`."""
  name: str
  count: int
  size: int
  scale: tuple[float, float]
  ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip: bool = True


@dataclasses.dataclass(frozen=True)
class MultiViewAugment(grain.transforms.RandomMap):
  """Several views of each (once-decoded) image: `{"views": {group.name: uint8 [count, size, size, 3], ...}}`."""
  groups: tuple[ViewGroup, ...]

  def random_map(self, element, rng: np.random.Generator):
    img = element["image"]
    out = {k: v for k, v in element.items() if k != "image"}
    out["views"] = {}
    for g in self.groups:
      views = []
      for _ in range(g.count):
        v = random_resized_crop(img, rng, g.size, g.scale, g.ratio)
        views.append(v[:, ::-1] if g.flip and rng.random() < 0.5 else v)
      out["views"][g.name] = np.stack(views)
    return out


@dataclasses.dataclass(frozen=True)
class EvalView(grain.transforms.Map):
  """Deterministic evaluation view: shorter side to `size / crop_pct`, centre crop `size`."""
  size: int
  crop_pct: float

  def map(self, element):
    return dict(element, image=center_crop(element["image"], self.size, self.crop_pct))


def train_transform(*, image_size: int, crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3), flip: bool = True,
                    rand_augment: tuple | None = None,
                    views: tuple[ViewGroup, ...] = ()) -> grain.transforms.RandomMap:
  """The per-example training map: one random-resized crop (`TrainAugment`), or with `views` the view groups
  (`MultiViewAugment`; `image_size`, `crop_scale`, `crop_ratio`, `flip` and `rand_augment` are then unused).

  `rand_augment`: (num_ops, magnitude, magnitude_std) of RandAugment after the crop and flip (None: none).
  Elements become `{"image": uint8 [S, S, 3], ...}`, or with `views` `{"views": {group: uint8 [count, size, size,
  3]}, ...}` in place of "image".
  """
  if views:
    return MultiViewAugment(tuple(views))
  return TrainAugment(image_size, tuple(crop_scale), tuple(crop_ratio), flip,
                      tuple(rand_augment) if rand_augment else None)

"""Random-access image sources: TFDS `data_source` (ArrayRecord), the embedded `digits` and `emoji` sets, image
folders, synthetic images.

Every source is a sequence of dicts `{"image": uint8 [H, W, 3], "label": int, "index": int}` that Grain can read by
index. No source downloads anything.
"""

import functools
import os
import re

import numpy as np

from ssl_jax.runtime import workdir as workdir_lib

DIGITS_SIZE = 32          # digits are stored upsampled from 8x8 to 32x32 (bilinear), grey replicated to RGB
DIGITS_TRAIN = 1437       # a fixed 80/20 split of the 1,797 images (seeded permutation)


class ArraySource:
  """An in-memory source over arrays `images [N, H, W, 3] uint8` and `labels [N]`."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int):
    self.images, self.labels, self.num_classes = images, labels, num_classes

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {"image": self.images[i], "label": int(self.labels[i]), "index": int(i)}


@functools.cache
def _digits_arrays():
  from PIL import Image
  from sklearn import datasets
  d = datasets.load_digits()
  order = np.random.default_rng(0).permutation(len(d.images))
  imgs = (d.images[order] * (255.0 / 16.0)).astype(np.float32)
  big = np.stack([np.asarray(Image.fromarray(im).resize((DIGITS_SIZE, DIGITS_SIZE), Image.BILINEAR)) for im in imgs])
  big = np.clip(np.round(big), 0, 255).astype(np.uint8)
  return np.repeat(big[..., None], 3, axis=-1), d.target[order].astype(np.int32)


def split_slice(split: str) -> tuple[str, slice]:
  """"train" -> ("train", [:]); "train[:100]" -> ("train", [:100]); "test[10:20]" likewise (TFDS's syntax)."""
  m = re.fullmatch(r"(\w+)(?:\[(-?\d*):(-?\d*)\])?", split)
  if not m:
    raise ValueError(f"cannot parse split {split!r}; use NAME or NAME[start:stop], e.g. 'train[:100]'.")
  to_int = lambda v: int(v) if v else None
  return m.group(1), slice(to_int(m.group(2)), to_int(m.group(3)))


def digits(split: str) -> ArraySource:
  """scikit-learn's handwritten digits (1,797 images of 10 classes), embedded in the package: no download.

  Args:
    split: "train" (1,437 images), "test" (360; also named "validation", so that ImageNet configs' evaluation
      splits work unchanged) or "all", optionally sliced as in TFDS: "train[:100]".
  """
  images, labels = _digits_arrays()
  name, sub = split_slice(split)
  held_out = slice(DIGITS_TRAIN, None)
  parts = {"train": slice(0, DIGITS_TRAIN), "test": held_out, "validation": held_out, "all": slice(None)}
  if name not in parts:
    raise ValueError(f"digits has splits {sorted(parts)}, not {split!r}.")
  images, labels = images[parts[name]][sub], labels[parts[name]][sub]
  if not len(images):
    raise ValueError(f"digits split {split!r} is empty.")
  return ArraySource(images, labels, num_classes=10)


def emoji(split: str, data_dir: str | None = None, *, labels: str = "group") -> ArraySource:
  """OpenMoji's drawings of the Unicode emoji (3,773 colour images, 32x32), rendered once into a cache by
  `ssl_jax.data.emoji` (the first use prepares it: about 10 s). No download.

  Args:
    split: "train" (3,005 images), "test" (768; also named "validation") or "all", optionally sliced ("train[:100]").
      Near-duplicates (skin tones, gendered forms of one emoji) are never on both sides.
    data_dir: the cache folder (default `~/.cache/ssl_jax/emoji`).
    labels: "group" (9 classes, the Unicode emoji groups; 60% of the images are "People & Body") or "subgroup" (99
      classes, e.g. "face-smiling", "country-flag"; the data set name `emoji_subgroups`).
  """
  from ssl_jax.data import emoji as emoji_lib
  arrays = emoji_lib.load(data_dir)
  name, sub = split_slice(split)
  test = arrays["test"]
  parts = {"train": ~test, "test": test, "validation": test, "all": np.ones_like(test)}
  if name not in parts:
    raise ValueError(f"emoji has splits {sorted(parts)}, not {split!r}.")
  if labels == "group":
    every_label, num_classes = arrays["labels"], len(emoji_lib.GROUPS)
  elif labels == "subgroup":
    every_label, names = emoji_lib.subgroup_labels(arrays)
    num_classes = len(names)
  else:
    raise ValueError(f"emoji labels are 'group' or 'subgroup', not {labels!r}.")
  images, labels = arrays["images"][parts[name]][sub], every_label[parts[name]][sub]
  if not len(images):
    raise ValueError(f"emoji split {split!r} is empty.")
  return ArraySource(images, labels, num_classes=num_classes)


class SyntheticSource:
  """Deterministic random images (8x8 blocks of random colour, upscaled) for smoke runs and benchmarks.

  Image i is a function of (i, offset) only; splits are disjoint ranges of offsets.
  """

  def __init__(self, num_examples: int, image_size: int, num_classes: int = 10, offset: int = 0):
    self.num_examples, self.image_size, self.num_classes, self.offset = num_examples, image_size, num_classes, offset

  def __len__(self):
    return self.num_examples

  def __getitem__(self, i):
    rng = np.random.default_rng(int(i) + self.offset)
    low = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    reps = -(-self.image_size // 8)
    img = np.kron(low, np.ones((reps, reps, 1), np.uint8))[:self.image_size, :self.image_size]
    return {"image": img, "label": int(i) % self.num_classes, "index": int(i)}


class TfdsSource:
  """A TFDS data set read through `tfds.data_source` (ArrayRecord, random access, no TensorFlow)."""

  def __init__(self, name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    try:
      self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises several types here; all but an unknown split mean "not prepared".
      if "Unknown split" in str(e):
        raise ValueError(f"the TFDS data set {name!r} has no split {split!r}: {e} Fix config.data.train_split or "
                         "config.eval.train_split / test_split.") from e
      raise FileNotFoundError(_not_prepared_message(name, split, data_dir, e)) from e
    info = getattr(self._source, "dataset_info", None)
    label = info.features["label"] if info is not None and "label" in info.features else None
    self.num_classes = getattr(label, "num_classes", None)

  def __len__(self):
    return len(self._source)

  def __getitem__(self, i):
    ex = self._source[i]
    image = np.asarray(ex["image"])
    if image.ndim == 2 or image.shape[-1] == 1:
      image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    return {"image": image, "label": int(ex.get("label", -1)), "index": int(i)}


class BadImageError(ValueError):
  """An image file that cannot be decoded, under `bad_images="stop"`."""


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageFolderSource:
  """Images in `root/<class name>/<file>` (the ImageNet / torchvision `ImageFolder` layout); labels are the class
  directories' indices in sorted order.

  An image that cannot be decoded (truncated, not an image) is, by `bad_images`, either replaced by the next
  decodable image and counted in the element's `bad` field ("skip"), or an error naming the file ("stop").
  """

  def __init__(self, root: str, bad_images: str = "skip"):
    if bad_images not in ("skip", "stop"):
      raise ValueError(f"data.bad_images must be 'skip' or 'stop', got {bad_images!r}.")
    if not os.path.isdir(root):
      raise FileNotFoundError(f"image folder {root} does not exist (set config.data.data_dir to the folder that "
                              "holds one directory per split, each with one directory per class).")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    self.files = [(os.path.join(root, c, f), i) for i, c in enumerate(classes)
                  for f in sorted(os.listdir(os.path.join(root, c))) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not self.files:
      raise ValueError(f"image folder {root} holds no images (expected {root}/<class>/<image>{IMAGE_EXTENSIONS}).")
    self.num_classes, self.bad_images = len(classes), bad_images

  def __len__(self):
    return len(self.files)

  def _decode(self, path):
    from PIL import Image
    with Image.open(path) as img:
      return np.asarray(img.convert("RGB"))

  def __getitem__(self, i):
    for bad in range(len(self.files)):
      path, label = self.files[(int(i) + bad) % len(self.files)]
      try:
        image = self._decode(path)
      except (OSError, ValueError, SyntaxError) as e:   # what Pillow raises for truncated or non-image files
        if self.bad_images == "stop":
          raise BadImageError(f"cannot decode {path}: {e} (data.bad_images='stop'; 'skip' replaces and counts "
                              "such files)") from e
        continue
      return {"image": image, "label": label, "index": int(i), "bad": np.int32(bad)}
    raise BadImageError(f"no image under the folder of {self.files[0][0]} can be decoded.")


def _not_prepared_message(name, split, data_dir, err):
  where = data_dir or "~/tensorflow_datasets (TFDS's default; set config.data.data_dir)"
  manual = ""
  if name.startswith("imagenet2012"):
    manual = ("ImageNet needs a manual download: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
              f"{data_dir or '~/tensorflow_datasets'}/downloads/manual/, then ")
  return (f"the TFDS data set {name!r} (split {split!r}) is not prepared as ArrayRecord in {where}: {err}\n"
          f"To prepare it: {manual}run `tfds build {name} --file_format=array_record"
          f"{' --data_dir=' + data_dir if data_dir else ''}` on a machine with TensorFlow installed "
          "(preparing needs TensorFlow; reading it here does not). "
          "To smoke-run without it, set --config.data.name=digits or --config.data.name=synthetic.")


SOURCES = ("digits", "emoji", "emoji_subgroups", "synthetic", "image_folder")  # every other name is looked up in TFDS


def make(name: str, split: str, *, data_dir: str | None = None, image_size: int = 224,
         num_examples: int = 4096, bad_images: str = "skip"):
  """Opens a source by name: `digits`, `emoji` or `emoji_subgroups` (its cache in `data_dir`; the emoji labelled by
  their 9 groups or 99 subgroups), `synthetic`, `image_folder`
  (`data_dir/<split>/<class>/<image>`), or any TFDS name such as `imagenet2012`. `data_dir` may be relative, start
  with `~`, or be a URL."""
  data_dir = workdir_lib.absolute(data_dir) if data_dir else None
  if name == "image_folder":
    if not data_dir:
      raise ValueError("data.name='image_folder' needs config.data.data_dir (the folder holding <split>/<class>/).")
    return ImageFolderSource(os.path.join(data_dir, split), bad_images)
  if name == "digits":
    return digits(split)
  if name in ("emoji", "emoji_subgroups"):
    return emoji(split, data_dir, labels="subgroup" if name == "emoji_subgroups" else "group")
  if name == "synthetic":
    base, sub = split_slice(split)
    n, offset = (num_examples, 0) if base == "train" else (max(num_examples // 4, 1), num_examples)
    start, stop, _ = sub.indices(n)
    return SyntheticSource(max(stop - start, 0), image_size, offset=offset + start)
  return TfdsSource(name, split, data_dir)

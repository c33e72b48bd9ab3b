"""Random-access image sources: TFDS `data_source` (ArrayRecord), the embedded `digits` and `emoji` sets, image
folders, synthetic images.

Every source is a sequence of dicts `{"image": uint8 [H, W, 3], "label": int, "index": int}` that Grain can read by
index, with `num_classes` and, where known, `class_names`; the embedded sets also have `captions` (one str per
example: the image-text methods' pairs, `ssl_jax.data.image_text`), and webdataset tar shards of image-caption pairs
are a source of their own (`WebDatasetSource`). No source downloads anything.
"""

import functools
import glob
import gzip
import importlib.util
import io
import os
import pathlib
import re
import struct
import tarfile

import numpy as np

from ssl_jax.runtime import workdir as workdir_lib

DIGITS_SIZE = 32          # digits are stored upsampled from 8x8 to 32x32 (bilinear), grey replicated to RGB
DIGITS_TRAIN = 1437       # a fixed 80/20 split of the 1,797 images (seeded permutation)
# The digits' captions (the image-text methods' weaker embedded set): a sentence from 8 templates naming the digit.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a handwritten {word}.", "the number {digit}, written by hand.", "a photo of the digit {word}.",
                   "a scan of a handwritten {digit}.", "{word}", "the digit {digit}.", "a blurry {word}.",
                   "a small grey image of a {word}.")


def digit_captions(labels: np.ndarray, positions: np.ndarray) -> np.ndarray:
  """The digits' captions: `DIGIT_TEMPLATES[position % 8]` filled with the label's word and numeral (str `[N]`)."""
  return np.array([DIGIT_TEMPLATES[p % len(DIGIT_TEMPLATES)].format(word=DIGIT_WORDS[y], digit=y)
                   for y, p in zip(np.asarray(labels), np.asarray(positions))])


class ArraySource:
  """An in-memory source over arrays `images [N, H, W, 3] uint8` and `labels [N]` (with the classes' names and a
  caption per image where given)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int,
               class_names: tuple[str, ...] | None = None, captions: np.ndarray | None = None):
    self.images, self.labels, self.num_classes = images, labels, num_classes
    self.class_names, self.captions = class_names, captions

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {"image": self.images[i], "label": int(self.labels[i]), "index": int(i)}


def _digits_8x8() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits as `sklearn.datasets.load_digits` gives them: images `[1797, 8, 8]` float64 in 0..16 and
  int labels `[1797]`, read from the file scikit-learn ships (`sklearn/datasets/data/digits.csv.gz`) without
  importing scikit-learn (1.4 s of every run's start), or through `load_digits` where a version keeps it elsewhere."""
  spec = importlib.util.find_spec("sklearn")
  path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
  if path is None or not path.is_file():
    from sklearn import datasets
    d = datasets.load_digits()
    return d.images, d.target
  with gzip.open(path) as f:
    table = np.loadtxt(f, delimiter=",")       # 64 pixel values and the label per row
  return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


@functools.cache
def _digits_arrays():
  from PIL import Image
  images, targets = _digits_8x8()
  order = np.random.default_rng(0).permutation(len(images))
  imgs = (images[order] * (255.0 / 16.0)).astype(np.float32)
  big = np.stack([np.asarray(Image.fromarray(im).resize((DIGITS_SIZE, DIGITS_SIZE), Image.BILINEAR)) for im in imgs])
  big = np.clip(np.round(big), 0, 255).astype(np.uint8)
  return np.repeat(big[..., None], 3, axis=-1), targets[order].astype(np.int32)


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
  positions = np.arange(len(images))[parts[name]][sub]
  images, labels = images[parts[name]][sub], labels[parts[name]][sub]
  if not len(images):
    raise ValueError(f"digits split {split!r} is empty.")
  return ArraySource(images, labels, num_classes=10, class_names=DIGIT_WORDS,
                     captions=digit_captions(labels, positions))


def emoji_caption(name: str, subgroup: str) -> str:
  """An emoji's caption: "grinning face" of subgroup "face-smiling" -> "grinning face (face smiling)"."""
  return f"{name} ({subgroup.replace('-', ' ')})"


def emoji(split: str, data_dir: str | None = None, *, labels: str = "group") -> ArraySource:
  """OpenMoji's drawings of the Unicode emoji (3,773 colour images, 32x32), rendered once into a cache by
  `ssl_jax.data.emoji` (the first use prepares it: about 10 s). No download.

  Args:
    split: "train" (3,005 images), "test" (768; also named "validation") or "all", optionally sliced ("train[:100]").
      Near-duplicates (skin tones, gendered forms of one emoji) are never on both sides.
    data_dir: the cache folder (default `~/.cache/ssl_jax/emoji`).
    labels: "group" (9 classes, the Unicode emoji groups; 60% of the images are "People & Body") or "subgroup" (99
      classes, e.g. "face-smiling", "country-flag"; the data set name `emoji_subgroups`).

  Captions (`emoji_caption`): the emoji's Unicode name and, in parentheses, its subgroup in words ("thumbs up sign:
  medium skin tone (hand fingers closed)"), as alt text names an image and its category.
  """
  from ssl_jax.data import emoji as emoji_lib
  arrays = emoji_lib.load(data_dir)
  name, sub = split_slice(split)
  test = arrays["test"]
  parts = {"train": ~test, "test": test, "validation": test, "all": np.ones_like(test)}
  if name not in parts:
    raise ValueError(f"emoji has splits {sorted(parts)}, not {split!r}.")
  if labels == "group":
    every_label, names = arrays["labels"], emoji_lib.GROUPS
  elif labels == "subgroup":
    every_label, names = emoji_lib.subgroup_labels(arrays)
  else:
    raise ValueError(f"emoji labels are 'group' or 'subgroup', not {labels!r}.")
  chosen = np.flatnonzero(parts[name])[sub]
  if not len(chosen):
    raise ValueError(f"emoji split {split!r} is empty.")
  return ArraySource(arrays["images"][chosen], every_label[chosen], num_classes=len(names), class_names=tuple(names),
                     captions=np.array([emoji_caption(n, g) for n, g in zip(arrays["names"][chosen],
                                                                            arrays["subgroups"][chosen])]))


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


PAIR_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


class BadPairError(ValueError):
  """An image-caption pair that cannot be used (undecodable image, empty caption), under `bad_images="stop"`."""


def split_key(member_name: str) -> tuple[str, str]:
  """webdataset's convention: `"dir/000123.jpg"` -> `("dir/000123", "jpg")`; the extension is everything after the
  first dot of the file name (`"a.seg.png"` -> `("a", "seg.png")`), lower-cased."""
  folder, _, name = member_name.rpartition("/")
  stem, _, ext = name.partition(".")
  return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _usable_pair(i: int, n: int, read, bad_pairs: str, where: str) -> tuple[dict, str]:
  """Pair `i` of a source of `n` pairs, or under `bad_pairs="skip"` the first usable one after it (the example's
  `bad` counts those passed over): `read(j) -> (encoded image, caption, where it is)`. A pair is unusable when its
  caption is empty or its image does not decode; under "stop" the first one raises `BadPairError` naming it."""
  from PIL import Image
  for bad in range(n):
    j = (int(i) + bad) % n
    image, caption, place = read(j)
    why = "an empty caption"
    if caption.strip():
      try:
        with Image.open(io.BytesIO(image)) as img:
          pixels = np.asarray(img.convert("RGB"))
        return {"image": pixels, "label": np.int32(-1), "index": np.int32(i), "bad": np.int32(bad)}, caption
      except (OSError, ValueError, SyntaxError) as e:    # what Pillow raises for truncated or non-image bytes
        why = f"an image that does not decode ({e})"
    if bad_pairs == "stop":
      raise BadPairError(f"{place} has {why} (data.image.bad_images='stop'; 'skip' replaces and counts such pairs)")
  raise BadPairError(f"no usable image-caption pair in {where}")


class WebDatasetSource:
  """Image-caption pairs in webdataset tar shards, by random access.

  Opening reads each shard's headers once (`tarfile`) and keeps, per key, where its image (`.jpg`, `.jpeg`, `.png`,
  `.webp`) and caption (`.txt`) bytes lie; keys with only one of the two, and other members (img2dataset's `.json`),
  are left out and counted (`incomplete`). Reading a pair seeks into its shard. A pair that cannot be used (the image
  does not decode, the caption is empty) is, by `bad_pairs`, replaced by the next usable one and counted in the
  example's `bad` field ("skip"), or an error naming the shard and the key ("stop").

  Yields `{"image": uint8 [H, W, 3], "label": -1, "index", "bad"}`; `pair(i)` adds the caption; `captions` reads them
  all (e.g. to train a tokenizer).
  """

  def __init__(self, shards, bad_pairs: str = "skip"):
    if bad_pairs not in ("skip", "stop"):
      raise ValueError(f"data.image.bad_images must be 'skip' or 'stop', got {bad_pairs!r}.")
    self.shards, self.bad_pairs = list(shards), bad_pairs
    if not self.shards:
      raise FileNotFoundError("no webdataset shards (.tar) given.")
    self.entries, self.incomplete = [], 0
    for s, path in enumerate(self.shards):
      members: dict[str, dict] = {}
      with tarfile.open(path, mode="r:") as tar:
        for m in tar:
          if m.isfile():
            key, ext = split_key(m.name)
            members.setdefault(key, {})[ext] = (m.offset_data, m.size)
      for key, parts in members.items():
        image = next((parts[e] for e in PAIR_IMAGE_EXTENSIONS if e in parts), None)
        if image is None or "txt" not in parts:
          self.incomplete += 1
          continue
        self.entries.append((s, key, image, parts["txt"]))
    if not self.entries:
      raise ValueError(f"the webdataset shards {self.shards[:3]}... hold no image-caption pairs ({{key}}.jpg with "
                       "{key}.txt).")
    self.num_classes, self.class_names = None, None

  def __len__(self):
    return len(self.entries)

  def _bytes(self, shard: int, where: tuple[int, int]) -> bytes:
    with open(self.shards[shard], "rb") as f:
      f.seek(where[0])
      return f.read(where[1])

  def caption(self, i: int) -> str:
    shard, _, _, txt = self.entries[i]
    return self._bytes(shard, txt).decode("utf-8", errors="replace").strip()

  @property
  def captions(self):
    return _Captions(self)

  def pair(self, i: int) -> tuple[dict, str]:
    def read(j):
      shard, key, image, _ = self.entries[j]
      return self._bytes(shard, image), self.caption(j), f"{self.shards[shard]}: key {key!r}"
    return _usable_pair(i, len(self), read, self.bad_pairs, f"the webdataset shards {self.shards[:3]}...")

  def __getitem__(self, i):
    return self.pair(i)[0]


class _Captions:
  """The captions of a `WebDatasetSource`, read on access."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    return self.source.caption(i)

  def __iter__(self):
    return (self.source.caption(i) for i in range(len(self.source)))


def encode_pair(image_bytes: bytes, caption: str) -> bytes:
  """One record: the caption's UTF-8 length (4 bytes, little-endian), the caption, then the image's encoded bytes."""
  text = caption.encode("utf-8")
  return struct.pack("<I", len(text)) + text + image_bytes


def decode_pair(record: bytes) -> tuple[bytes, str]:
  """`encode_pair`'s inverse: `(image bytes, caption)`."""
  (n,) = struct.unpack_from("<I", record)
  return record[4 + n:], record[4:4 + n].decode("utf-8")


class PreparedPairSource:
  """Image-caption pairs in the ArrayRecord shards of `python -m ssl_jax.data.prepare_pairs`
  (`root/*.array_record`, one `encode_pair` record per pair), by random access (`ArrayRecordDataSource`).

  A pair that cannot be used (checked when prepared, but a shard may be damaged since) is, by `bad_pairs`, replaced by
  the next usable one and counted in the example's `bad` field ("skip"), or an error naming the shard and record
  ("stop"). Yields what `WebDatasetSource` yields; `pair(i)` adds the caption.
  """

  def __init__(self, root: str, bad_pairs: str = "skip"):
    if bad_pairs not in ("skip", "stop"):
      raise ValueError(f"data.image.bad_images must be 'skip' or 'stop', got {bad_pairs!r}.")
    self.shards = sorted(glob.glob(os.path.join(root, "*.array_record")))
    if not self.shards:
      raise FileNotFoundError(f"no ArrayRecord shards in {root} (make them with `python -m "
                              "ssl_jax.data.prepare_pairs --input=... --split=<split> --out=<data_dir>`).")
    from array_record.python import array_record_data_source
    self.records = array_record_data_source.ArrayRecordDataSource(self.shards)
    self.bad_pairs, self.num_classes, self.class_names = bad_pairs, None, None

  def __len__(self):
    return len(self.records)

  def __getstate__(self):          # Grain's worker processes reopen the shards
    return dict(self.__dict__, records=None)

  def __setstate__(self, state):
    from array_record.python import array_record_data_source
    self.__dict__.update(state)
    self.records = array_record_data_source.ArrayRecordDataSource(self.shards)

  def caption(self, i: int) -> str:
    return decode_pair(self.records[int(i)])[1]

  @property
  def captions(self):
    return _Captions(self)

  def pair(self, i: int) -> tuple[dict, str]:
    def read(j):
      image, caption = decode_pair(self.records[j])
      return image, caption, f"record {j} of the shards {self.shards[0]}..."
    return _usable_pair(i, len(self), read, self.bad_pairs, f"the shards {self.shards[:3]}...")

  def __getitem__(self, i):
    return self.pair(i)[0]


def webdataset_shards(data_dir: str, split: str) -> list[str]:
  """The shards of `split`: `data_dir/<split>/*.tar`, or for "train" the `*.tar` directly in `data_dir` (one folder
  of img2dataset output)."""
  for pattern in (os.path.join(data_dir, split, "*.tar"),) + ((os.path.join(data_dir, "*.tar"),)
                                                             if split == "train" else ()):
    shards = sorted(glob.glob(pattern))
    if shards:
      return shards
  raise FileNotFoundError(f"no webdataset shards for split {split!r}: expected {data_dir}/{split}/*.tar"
                          + (f" or {data_dir}/*.tar" if split == "train" else "")
                          + " (img2dataset's --output_format=webdataset writes such shards).")


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


# Every other name is looked up in TFDS.
SOURCES = ("digits", "emoji", "emoji_subgroups", "synthetic", "image_folder", "webdataset", "prepared_pairs")


def make(name: str, split: str, *, data_dir: str | None = None, image_size: int = 224,
         num_examples: int = 4096, bad_images: str = "skip"):
  """Opens a source by name: `digits`, `emoji` or `emoji_subgroups` (its cache in `data_dir`; the emoji labelled by
  their 9 groups or 99 subgroups), `synthetic`, `image_folder` (`data_dir/<split>/<class>/<image>`), `webdataset`
  (image-caption pairs in `data_dir/<split>/*.tar`, `WebDatasetSource`), `prepared_pairs` (their ArrayRecord shards
  in `data_dir/<split>/`, `PreparedPairSource`), or any TFDS name such as `imagenet2012`. `data_dir` may be
  relative, start with `~`, or be a URL."""
  data_dir = workdir_lib.absolute(data_dir) if data_dir else None
  if name == "webdataset":
    if not data_dir:
      raise ValueError("data.name='webdataset' needs config.data.data_dir (the folder of <split>/*.tar shards).")
    base, sub = split_slice(split)
    pairs = WebDatasetSource(webdataset_shards(data_dir, base), bad_images)
    if sub != slice(None):
      pairs.entries = pairs.entries[sub]
    return pairs
  if name == "prepared_pairs":
    if not data_dir:
      raise ValueError("data.name='prepared_pairs' needs config.data.data_dir (the --out of python -m "
                       "ssl_jax.data.prepare_pairs).")
    base, sub = split_slice(split)
    pairs = PreparedPairSource(os.path.join(data_dir, base), bad_images)
    if sub != slice(None):
      raise ValueError(f"split {split!r}: prepared pairs are not sliced; prepare a smaller split instead.")
    return pairs
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

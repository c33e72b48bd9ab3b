"""Grain pipelines for training and evaluation, and host-local -> global array assembly.

Training stream (identical for any number of processes, devices and Grain workers):

  source -> seeded shuffle, reshuffled every epoch -> repeat forever -> random-resized-crop + flip (seeded per index)
  -> batches of `global_batch / process_count` -> process p takes local batches p, p + n, p + 2n, ...

so global batch b is examples `[b * G, (b + 1) * G)` of the shuffled stream, process p holding the p-th contiguous
slice; assembling the processes' slices in order gives the same global batch as a single-process run.

Multi-view methods (SimCLR, BYOL, MoCo v3, DINO) get, instead of one crop per image, groups of views: each image is
decoded once and cropped `count` times per group (e.g. DINO's 2 global crops at 224 and 10 local crops at 96), each
group a `[L, count, size, size, 3]` array under `views/<group name>`. Photometric augmentation follows on the device
(`ssl_jax.data.inputs`, the input spec).
"""

import dataclasses

import grain
import jax
import numpy as np

from ssl_jax.data import transforms


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
    img = transforms.random_resized_crop(element["image"], rng, self.size, self.scale, self.ratio)
    if self.flip and rng.random() < 0.5:
      img = img[:, ::-1]
    if self.rand_augment is not None:
      num_ops, magnitude, std = self.rand_augment
      img = transforms.rand_augment(np.ascontiguousarray(img), rng, num_ops=num_ops, magnitude=magnitude,
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
        v = transforms.random_resized_crop(img, rng, g.size, g.scale, g.ratio)
        views.append(v[:, ::-1] if g.flip and rng.random() < 0.5 else v)
      out["views"][g.name] = np.stack(views)
    return out


@dataclasses.dataclass(frozen=True)
class EvalView(grain.transforms.Map):
  """Deterministic evaluation view: shorter side to `size / crop_pct`, centre crop `size`."""
  size: int
  crop_pct: float

  def map(self, element):
    element = {k: v for k, v in element.items() if k != "bad"}
    return dict(element, image=transforms.center_crop(element["image"], self.size, self.crop_pct))


def _check_batch(global_batch_size, process_count):
  if global_batch_size % process_count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the number of processes {process_count}.")
  return global_batch_size // process_count


def _to_iter(ds, num_workers, prefetch):
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(1, prefetch), prefetch_buffer_size=max(1, prefetch)))
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2))
  return it


def train_dataset(source, *, seed: int, global_batch_size: int, image_size: int, crop_scale=(0.2, 1.0),
                  crop_ratio=(3 / 4, 4 / 3), flip: bool = True, rand_augment: tuple | None = None,
                  views: tuple[ViewGroup, ...] = (),
                  num_workers: int = 0, prefetch: int = 2, process_index: int | None = None,
                  process_count: int | None = None) -> grain.IterDataset:
  """The infinite, checkpointable training stream of host-local batches (see the module docstring).

  Args:
    rand_augment: (num_ops, magnitude, magnitude_std) of RandAugment after the crop and flip (None: none).
    views: view groups for multi-view methods; when given they replace the single crop (`image_size`,
      `crop_scale`, `crop_ratio`, `flip` and `rand_augment` are then unused).

  Returns:
    an `IterDataset` whose elements are `{"image": uint8 [L, S, S, 3], "label": [L], "index": [L]}` (or, with
    `views`, `{"views": {group.name: uint8 [L, count, size, size, 3], ...}}` in place of "image"), L the
    per-process batch size; `iter(...)` gives a Grain iterator whose state Orbax saves.
  """
  p = jax.process_index() if process_index is None else process_index
  n = jax.process_count() if process_count is None else process_count
  local = _check_batch(global_batch_size, n)
  if len(source) < global_batch_size:
    raise ValueError(f"batch_size {global_batch_size} is larger than the data set ({len(source)} examples).")
  ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
  if views:
    ds = ds.random_map(MultiViewAugment(tuple(views)))
  else:
    ds = ds.random_map(TrainAugment(image_size, tuple(crop_scale), tuple(crop_ratio), flip, rand_augment))
  ds = ds.batch(local, drop_remainder=True)[p::n]
  return _to_iter(ds, num_workers, prefetch)


class _Padded:
  """`source` padded by repetition to `length`, with `valid` = 0 on the padding."""

  def __init__(self, source, length):
    self.source, self.length = source, length

  def __len__(self):
    return self.length

  def __getitem__(self, i):
    return dict(self.source[i % len(self.source)], valid=np.int32(i < len(self.source)))


def eval_dataset(source, *, global_batch_size: int, image_size: int, crop_pct: float = 0.875,
                 augment: TrainAugment | None = None, seed: int = 0, num_workers: int = 0,
                 process_index: int | None = None, process_count: int | None = None):
  """One pass over `source` in order, padded to whole global batches, each element carrying `valid`.

  Args:
    augment: instead of the centre view, a random training view of each image (seeded by `seed` and the index):
      for measuring the alignment of two augmented views of the same images.

  Returns:
    (an `IterDataset` of host-local batches, the number of global batches).
  """
  p = jax.process_index() if process_index is None else process_index
  n = jax.process_count() if process_count is None else process_count
  local = _check_batch(global_batch_size, n)
  num_batches = -(-len(source) // global_batch_size)
  ds = grain.MapDataset.source(_Padded(source, num_batches * global_batch_size))
  if augment is None:
    ds = ds.map(EvalView(image_size, crop_pct))
  else:
    ds = ds.seed(seed).map(lambda e: {k: v for k, v in e.items() if k != "bad"}).random_map(augment)
  ds = ds.batch(local, drop_remainder=True)[p::n]
  return _to_iter(ds, num_workers, 2), num_batches


def to_global(batch: dict, sharding: jax.sharding.Sharding) -> dict:
  """Host-local batch (a tree; leading axis = this process's slice) -> global `jax.Array`s sharded by `sharding`."""
  def convert(v):
    v = np.asarray(v)
    v = v.astype(np.int32) if v.dtype == np.int64 else v   # jax runs without 64-bit types by default
    return jax.make_array_from_process_local_data(sharding, v)
  return jax.tree.map(convert, batch)

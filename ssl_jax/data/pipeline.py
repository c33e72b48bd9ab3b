"""Grain pipelines for training and evaluation, and host-local -> global array assembly: modality-agnostic.

Training stream (identical for any number of processes, devices and Grain workers):

  source -> seeded shuffle, reshuffled every epoch -> repeat forever -> the per-example `transform` (a Grain map,
  random ones seeded per index) -> batches of `global_batch / process_count` -> process p takes local batches
  p, p + n, p + 2n, ...

so global batch b is examples `[b * G, (b + 1) * G)` of the shuffled stream, process p holding the p-th contiguous
slice; assembling the processes' slices in order gives the same global batch as a single-process run.

What a transform does to an example is the modality's business (`ssl_jax.data.transforms` for images: crops, flips,
view groups, the evaluation view; `ssl_jax.data.inputs` picks the transforms of a `config.data`).
"""

import grain
import jax
import numpy as np


def _check_batch(global_batch_size, process_count):
  if global_batch_size % process_count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the number of processes {process_count}.")
  return global_batch_size // process_count


def _to_iter(ds, num_workers, prefetch):
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(1, prefetch), prefetch_buffer_size=max(1, prefetch)))
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2))
  return it


def _apply(ds, transform):
  """`ds` through `transform`: a `grain.transforms.RandomMap` (seeded per index by the dataset's seed), a `Map`, or
  None (the examples as the source gives them, e.g. text windows)."""
  if transform is None:
    return ds
  if isinstance(transform, grain.transforms.RandomMap):
    return ds.random_map(transform)
  return ds.map(transform)


def train_dataset(source, *, seed: int, global_batch_size: int, transform, num_workers: int = 0, prefetch: int = 2,
                  process_index: int | None = None, process_count: int | None = None) -> grain.IterDataset:
  """The infinite, checkpointable training stream of host-local batches (see the module docstring).

  Args:
    source: a random-access source of example dicts (`ssl_jax.data.sources`).
    transform: the per-example Grain map (e.g. `transforms.train_transform(...)`), or None.

  Returns:
    an `IterDataset` of the transformed examples batched to `[L, ...]` leaves, L the per-process batch size;
    `iter(...)` gives a Grain iterator whose state Orbax saves.
  """
  p = jax.process_index() if process_index is None else process_index
  n = jax.process_count() if process_count is None else process_count
  local = _check_batch(global_batch_size, n)
  if len(source) < global_batch_size:
    raise ValueError(f"batch_size {global_batch_size} is larger than the data set ({len(source)} examples).")
  ds = _apply(grain.MapDataset.source(source).seed(seed).shuffle().repeat(), transform)
  ds = ds.batch(local, drop_remainder=True)[p::n]
  return _to_iter(ds, num_workers, prefetch)


def _drop_bad(element: dict) -> dict:
  return {k: v for k, v in element.items() if k != "bad"}


class _Padded:
  """`source` padded by repetition to `length`, with `valid` = 0 on the padding."""

  def __init__(self, source, length):
    self.source, self.length = source, length

  def __len__(self):
    return self.length

  def __getitem__(self, i):
    return dict(self.source[i % len(self.source)], valid=np.int32(i < len(self.source)))


def eval_dataset(source, *, global_batch_size: int, transform, seed: int = 0, num_workers: int = 0,
                 process_index: int | None = None, process_count: int | None = None):
  """One pass over `source` in order, padded to whole global batches, each element carrying `valid`; the sources'
  "bad" flag (an undecodable file replaced) is dropped.

  Args:
    transform: the per-example Grain map (the evaluation view, `transforms.EvalView`), or a random one seeded by
      `seed` and the index (a random training view: for the alignment of two augmented views of the same images).

  Returns:
    (an `IterDataset` of host-local batches, the number of global batches).
  """
  p = jax.process_index() if process_index is None else process_index
  n = jax.process_count() if process_count is None else process_count
  local = _check_batch(global_batch_size, n)
  num_batches = -(-len(source) // global_batch_size)
  ds = grain.MapDataset.source(_Padded(source, num_batches * global_batch_size))
  if isinstance(transform, grain.transforms.RandomMap):
    ds = ds.seed(seed)
  ds = _apply(ds.map(_drop_bad), transform)
  ds = ds.batch(local, drop_remainder=True)[p::n]
  return _to_iter(ds, num_workers, 2), num_batches


def to_global(batch: dict, sharding: jax.sharding.Sharding) -> dict:
  """Host-local batch (a tree; leading axis = this process's slice) -> global `jax.Array`s sharded by `sharding`."""
  def convert(v):
    v = np.asarray(v)
    v = v.astype(np.int32) if v.dtype == np.int64 else v   # jax runs without 64-bit types by default
    return jax.make_array_from_process_local_data(sharding, v)
  return jax.tree.map(convert, batch)

"""The device mesh, logical-axis rules, and shardings of the train state and batches.

This is the only module that knows the device layout. Models name their parameter and activation axes logically
(`embed`, `mlp`, `heads`, `kv`, `patch`, `batch`, `length`; `conv_in`, `conv_out` for convolution kernels); the
rules given in the config map those names to the mesh axes `data`, `fsdp` and `tensor`.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")   # the batch is split over both the data and the FSDP axes

# Pure data parallelism with FSDP available: parameters split over `fsdp` along `embed` (a no-op while fsdp == 1),
# heads and MLP hidden units over `tensor` (a no-op while tensor == 1), convolution output channels over `fsdp`.
DEFAULT_RULES = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("patch", None),
    ("length", None),
    ("conv_in", None),
    ("conv_out", "fsdp"),
    ("vocab", "tensor"),        # text embeddings and output layers: the vocabulary over the tensor-parallel axis
)


# Named layouts (config.mesh_preset) and the mesh sizes they stand for; "fsdp_tp" keeps config.mesh.tensor.
PRESETS = ("dp", "fsdp", "fsdp_tp")


def preset_sizes(preset: str | None, sizes: dict[str, int]) -> dict[str, int]:
  """The mesh sizes of a preset: "dp" pure data parallelism (data=-1), "fsdp" parameters, gradients and optimizer
  state split over every device (fsdp=-1, ZeRO-3), "fsdp_tp" FSDP over the devices left by `sizes["tensor"]`-way
  tensor parallelism; None: `sizes` as given."""
  if preset is None:
    return dict(sizes)
  if preset == "dp":
    return dict(data=-1, fsdp=1, tensor=1)
  if preset == "fsdp":
    return dict(data=1, fsdp=-1, tensor=1)
  if preset == "fsdp_tp":
    if sizes["tensor"] < 2:
      raise ValueError("config.mesh_preset='fsdp_tp' takes the tensor-parallel size from config.mesh.tensor; "
                       "set it (e.g. --config.mesh.tensor=4).")
    return dict(data=1, fsdp=-1, tensor=sizes["tensor"])
  raise ValueError(f"config.mesh_preset={preset!r} is unknown; use one of {PRESETS}, or None for config.mesh as "
                   "given.")


def mesh_shape(sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolves the axis sizes (one may be -1: "the rest") against the number of devices."""
  shape = [int(sizes[a]) for a in MESH_AXES]
  free = [i for i, s in enumerate(shape) if s == -1]
  if len(free) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"config.mesh {sizes}: sizes must be positive, with at most one -1 (\"the rest\").")
  known = math.prod(s for s in shape if s != -1)
  if free:
    if num_devices % known:
      raise ValueError(f"config.mesh {sizes}: {num_devices} devices are not divisible by {known}.")
    shape[free[0]] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f"config.mesh {sizes} needs {math.prod(shape)} devices but {num_devices} are available; "
                     "set one axis to -1.")
  return tuple(shape)


def make_mesh(sizes: dict[str, int], devices: Sequence[jax.Device] | None = None,
              preset: str | None = None) -> jax.sharding.Mesh:
  """A mesh over `devices` (default: all) with axes `data`, `fsdp`, `tensor`, sized by `sizes` or `preset`."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(preset_sizes(preset, sizes), len(devices))
  if len(devices) == jax.device_count():
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)
  # A subset of the devices, or compile-only devices of a described topology (`ssl_jax.dry_run`): on TPUs the
  # axes follow the physical interconnect, as jax.make_mesh lays them out.
  grid = (mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
          if devices[0].platform == "tpu" else np.asarray(devices).reshape(shape))
  return jax.sharding.Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data` x `fsdp`; every other axis whole."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def logical_shardings(boxed_tree, mesh: jax.sharding.Mesh, rules) -> object:
  """Shardings for a tree whose leaves may be `nn.LogicallyPartitioned` boxes (from `jax.eval_shape`).

  Returns a tree shaped like `nn.unbox(boxed_tree)` of `NamedSharding`s; unboxed leaves are replicated.
  """
  boxed = lambda x: isinstance(x, nn.LogicallyPartitioned)
  rules = tuple(rules)

  def sharding(x):
    if boxed(x) and not jax.tree.leaves(x.value):
      return x.value    # a box around optax's leafless MaskedNode (a masked optimizer state): stays leafless
    return NamedSharding(mesh, nn.logical_to_mesh_axes(x.names, rules) if boxed(x) else P())
  return jax.tree.map(sharding, boxed_tree, is_leaf=boxed)


def to_host(x) -> np.ndarray:
  """A global array as one numpy array on every process (all-gathered when other processes hold parts of it)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def per_device_bytes(tree) -> int:
  """Bytes one device holds of a tree of `jax.ShapeDtypeStruct`s (or arrays) carrying shardings."""
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) is not None else x.shape
    total += math.prod(shape) * np.dtype(x.dtype).itemsize
  return total


MIN_EXCESS_BYTES = 2 ** 20    # below this, replicated parameters cost nothing worth stopping a run for (toy models)


def check_sufficiently_sharded(params, mesh: jax.sharding.Mesh, tolerance: float = 0.05) -> None:
  """Fails loudly when parameters meant to be split over the `fsdp` and `tensor` axes are held whole (MaxText's
  `assert_params_sufficiently_sharded`).

  With FSDP x tensor parallelism over `k = fsdp * tensor` devices, each device should hold about `1/k` of the
  parameters; some small ones (biases, norms, tokens) stay replicated, which `tolerance` allows for.

  Args:
    params: a tree of `jax.ShapeDtypeStruct`s (or arrays) with their shardings.
    mesh: the mesh.
    tolerance: the allowed excess of the per-device bytes over `total / k`, as a fraction of the total (an excess
      under `MIN_EXCESS_BYTES` always passes).

  Raises:
    ValueError: naming the largest replicated parameters and the rule to add.
  """
  k = mesh.shape["fsdp"] * mesh.shape["tensor"]
  if k == 1:
    return
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  total = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for _, x in leaves)
  held = per_device_bytes([x for _, x in leaves])
  if held - total / k <= max(tolerance * total, MIN_EXCESS_BYTES):
    return
  whole = sorted(((math.prod(x.shape) * np.dtype(x.dtype).itemsize, jax.tree_util.keystr(p)) for p, x in leaves
                  if x.sharding.shard_shape(x.shape) == tuple(x.shape)), reverse=True)[:5]
  raise ValueError(
      f"parameters are not sufficiently sharded over fsdp x tensor = {k} devices: each device holds {held / 2**20:.1f} "
      f"MiB of {total / 2**20:.1f} MiB (ideal {total / k / 2**20:.1f} MiB, tolerance {tolerance:.0%}). The largest "
      f"replicated ones: {', '.join(f'{n} ({b / 2**20:.2f} MiB)' for b, n in whole)}. Give them logical axis names "
      "that config.sharding_rules map to fsdp/tensor, or set config.sharding_tolerance=None to allow it.")

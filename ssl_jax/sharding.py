"""The device mesh, logical-axis rules, and shardings of the train state and batches.

This is the only module that knows the device layout. Models name their parameter and activation axes logically
(`embed`, `mlp`, `heads`, `kv`, `patch`, `batch`, `length`); the rules given in the config map those names to the
mesh axes `data`, `fsdp` and `tensor`.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")   # the batch is split over both the data and the FSDP axes

# Pure data parallelism with FSDP available: parameters split over `fsdp` along `embed` (a no-op while fsdp == 1),
# heads and MLP hidden units over `tensor` (a no-op while tensor == 1).
DEFAULT_RULES = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("patch", None),
    ("length", None),
)


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


def make_mesh(sizes: dict[str, int], devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A mesh over `devices` (default: all) with axes `data`, `fsdp`, `tensor`."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(sizes, len(devices))
  if len(devices) == jax.device_count():
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)
  return jax.sharding.Mesh(np.asarray(devices).reshape(shape), MESH_AXES,
                           axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


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

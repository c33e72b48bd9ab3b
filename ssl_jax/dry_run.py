"""Ahead-of-time compile check: `python main.py --config=... --dry_run [--topology=v5e:4x4]`.

Builds the train step of a config exactly as `train.run` does, lowers and compiles it for the configured mesh with
abstract inputs (`jax.ShapeDtypeStruct`s: no data is read, no array is allocated), and reports what each device
will hold: parameters, optimizer and method state by their shardings, and the compiled step's memory (XLA's
`memory_analysis`: arguments, outputs, donated aliases, temporaries). With `topology`, the devices are the
compile-only devices of a TPU slice described by name (`jax.experimental.topologies`; needs libtpu, e.g.
`pip install -e '.[tpu]'`, but no TPU): a pod-scale config can be checked on a laptop before a job is queued.
"""

import math
import re
import time

import flax.linen as nn
import jax
import ml_collections

from ssl_jax import config as config_lib
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs

# Classes of the data sets a config may name when their files are not on this machine (only the shapes matter).
KNOWN_NUM_CLASSES = {"imagenet2012": 1000, "imagenet2012_subset": 1000, "imagenet_v2": 1000, "digits": 10, "emoji": 9,
                     "emoji_subgroups": 99, "cifar10": 10, "cifar100": 100, "food101": 101, "oxford_iiit_pet": 37}


ADVICE = ("To fit: shard the parameters (config.mesh_preset=fsdp), rematerialise the blocks (model.remat=full, "
          "with model.scan=True for deep models), split the batch (config.grad_accum_steps), or lower the batch.")


class DoesNotFit(RuntimeError):
  """The compiler reports that the train step needs more device memory than the device has."""


def topology_devices(name: str) -> list:
  """The compile-only devices of a TPU topology such as "v5e:4x4", "v5p:2x2x2", "v4:2x2x1" or "v6e:2x4"."""
  from jax.experimental import topologies
  try:
    return list(topologies.get_topology_desc(name, "tpu").devices)
  except RuntimeError as e:
    if "not installed" in str(e):
      raise RuntimeError(f"--topology={name} compiles for TPUs, which needs libtpu: pip install -e '.[tpu]' (no TPU "
                         "is needed).") from e
    raise ValueError(f"--topology={name!r} is not a TPU topology libtpu knows ({e}); use e.g. 'v5e:4x4' or "
                     "'v5p:2x2x2'.") from e


def dataset_facts(config) -> tuple[int, int | None, int | None, str]:
  """The training split's size, classes and (text) vocabulary, from its metadata; for data not on this machine,
  placeholders (they change the schedules' lengths, not the compiled program; a text model then needs
  `config.model.vocab_size`), with a note saying so."""
  try:
    source = inputs.open_source(config.data, config.data.train_split)
    return len(source), getattr(source, "num_classes", None), getattr(source, "vocab_size", None), ""
  except Exception as e:  # noqa: BLE001 -- any failure to open the data only makes durations unknown
    classes = KNOWN_NUM_CLASSES.get(config.data.name)
    return config.batch_size, classes, None, (f"data set {config.data.name!r} not readable here "
                                              f"({type(e).__name__}); compiled with 1 step per epoch and {classes} "
                                              "classes")


def parameter_table(params) -> list[tuple[str, str, str, str, str]]:
  """(path with block indices folded to `*`, count, shape, PartitionSpec, per-device shard shape) per distinct row."""
  rows: dict[tuple, int] = {}
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = re.sub(r"block\d+", "block*", "/".join(str(getattr(k, "key", k)) for k in path))
    spec = tuple(x.sharding.spec) if isinstance(x.sharding, jax.sharding.NamedSharding) else ()
    key = (name, tuple(x.shape), str(spec), tuple(x.sharding.shard_shape(x.shape)))
    rows[key] = rows.get(key, 0) + 1
  return [(name, f"x{n}" if n > 1 else "", str(shape), spec, str(shard))
          for (name, shape, spec, shard), n in rows.items()]


def _size(n: float) -> str:
  return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def abstract_batch(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> dict:
  """The global training batch of `config` as `ShapeDtypeStruct`s sharded over `mesh`'s batch axes."""
  batch_sharding = sharding.batch_sharding(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=batch_sharding),
                      inputs.batch_spec(config.data, config.batch_size))


def check(config: ml_collections.ConfigDict, topology: str | None = None, devices=None) -> dict:
  """Compiles the train step of `config` for its mesh and returns (and prints) the per-device memory report.

  Args:
    config: an experiment config.
    topology: a TPU topology name to compile for instead of the local devices.
    devices: the devices of the mesh (default: the topology's, or all local ones).

  Returns:
    {"devices", "device_kind", "mesh", "parameters", "bytes_per_device": {params, opt_state, extra,
    step_arguments, step_outputs, step_aliased, step_temporaries, step_peak}, "compile_s", "flops_per_device"}.
  """
  config_lib.validate(config)
  if topology is not None:
    devices = topology_devices(topology)
  devices = list(jax.devices() if devices is None else devices)
  mesh = sharding.make_mesh(config.mesh.to_dict(), devices, config.mesh_preset)
  train.check_batch_split(config, mesh)
  num_examples, num_classes, vocab_size, note = dataset_facts(config)
  program = train.build(config, mesh, num_examples, num_classes, vocab_size)
  state = program.abstract_state
  batch = abstract_batch(config, mesh)
  start = time.perf_counter()
  with jax.set_mesh(mesh), nn.logical_axis_rules(config.sharding_rules):
    lowered = program.step.lower(state, batch)
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      reason = str(e).splitlines()[0].rstrip(".")
      raise DoesNotFit(f"the train step of this config does not fit in the memory of a {devices[0].device_kind} "
                       f"device on the mesh {dict(mesh.shape)}: {reason}. {ADVICE}") from None
  compile_s = time.perf_counter() - start

  memory = compiled.memory_analysis()
  held = dict(params=sharding.per_device_bytes(state.params), opt_state=sharding.per_device_bytes(state.opt_state),
              extra=sharding.per_device_bytes(state.extra))
  if memory is not None:
    held.update(step_arguments=memory.argument_size_in_bytes, step_outputs=memory.output_size_in_bytes,
                step_aliased=memory.alias_size_in_bytes, step_temporaries=memory.temp_size_in_bytes)
    held["step_peak"] = peak_bytes(memory)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  report = dict(devices=len(devices), device_kind=devices[0].device_kind, mesh=dict(mesh.shape),
                parameters=sum(math.prod(x.shape) for x in jax.tree.leaves(state.params)), bytes_per_device=held,
                compile_s=round(compile_s, 2), flops_per_device=float((cost or {}).get("flops", -1.0)))
  _print(config, report, parameter_table(state.params), note, _capacity(devices[0]))
  return report


def peak_bytes(memory) -> int:
  """A compiled program's peak per-device bytes from its `memory_analysis()`: arguments + outputs - donated
  (aliased) buffers + temporaries."""
  return (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes +
          memory.temp_size_in_bytes)


def _capacity(device) -> int | None:
  try:
    stats = device.memory_stats()
  except Exception:  # noqa: BLE001 -- compile-only and CPU devices have none
    return None
  return (stats or {}).get("bytes_limit")


def _print(config, report, table, note, capacity) -> None:
  lines = [f"dry run: {config.method.name}, global batch {config.batch_size} "
           f"({config.grad_accum_steps} micro-batches) on {report['devices']} x {report['device_kind']}, mesh "
           f"{report['mesh']}; {report['parameters']:,} parameters; compiled in {report['compile_s']:.1f}s"]
  if note:
    lines.append(f"note: {note}")
  widths = [max(len(r[i]) for r in table + [("parameter", "", "shape", "spec", "per device")]) for i in range(5)]
  header = ("parameter", "", "shape", "spec", "per device")
  lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [header] + table]
  lines.append("per-device memory:")
  lines += [f"  {k:18s} {_size(v)}" for k, v in report["bytes_per_device"].items()]
  peak = report["bytes_per_device"].get("step_peak")
  if capacity and peak is not None:
    verdict = "fits" if peak <= capacity else f"DOES NOT FIT. {ADVICE}"
    lines.append(f"  device memory      {_size(capacity)}: {verdict}")
  print("\n".join(lines), flush=True)

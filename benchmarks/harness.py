"""The train-step benchmark as functions (`train_step.py` is its command line; `input_pipeline.py` reuses it)."""

import json
import pathlib
import resource
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import config as config_lib
from ssl_jax import dry_run
from ssl_jax.runtime import host_memory
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs

import flops  # benchmarks/flops.py: the scripts run with benchmarks/ on sys.path

# Dense bfloat16 peak FLOP/s per device (datasheets).
DATASHEET_PEAK = {"NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12,
                  "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100-SXM4-40GB": 312e12, "TPU v4": 275e12,
                  "TPU v5 lite": 197e12, "TPU v5": 459e12, "TPU v6 lite": 918e12}


def measure_matmul_peak(dtype, device, n: int | None = None, repeats: int = 5) -> float:
  """FLOP/s of the fastest of `repeats` `n x n` matmuls in `dtype` on one device (n: 2048 on CPUs, 8192 else)."""
  n = n or (2048 if device.platform == "cpu" else 8192)
  a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), dtype), device)
  b = jax.device_put(jax.random.normal(jax.random.key(1), (n, n), dtype), device)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def synthetic_batch(spec: dict, sharding, seed: int = 0) -> dict:
  """Random arrays of the global batch `spec` (`ssl_jax.data.inputs.batch_spec`), created on the devices; text
  windows hold one document each (segment id 1, positions 0..T-1) of random token ids below 1000; waveforms are
  Gaussian noise (std 0.1) filling the whole crop (`audio_length` = its length)."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(spec)
  keys = jax.random.split(jax.random.key(seed), len(leaves))

  def make(key, name, s):
    if s.dtype == jnp.uint8:
      return jax.random.randint(key, s.shape, 0, 256, jnp.int32).astype(jnp.uint8)
    if name == "text_segment_ids":
      return jnp.ones(s.shape, s.dtype)
    if name == "text_positions":
      return jnp.broadcast_to(jnp.arange(s.shape[-1], dtype=s.dtype), s.shape)
    if name == "audio":
      return 0.1 * jax.random.normal(key, s.shape, s.dtype)
    if name == "audio_length":
      return jnp.full(s.shape, spec["audio"].shape[1], s.dtype)
    return jax.random.randint(key, s.shape, 0, 1000 if name == "text" else 10, s.dtype)
  return jax.tree.unflatten(treedef, [
      jax.jit(make, static_argnums=(1, 2), out_shardings=sharding)(key, getattr(path[-1], "key", ""), s)
      for key, (path, s) in zip(keys, leaves)])


def benchmark(config, steps: int = 10, warmup: int = 2, peak: str = "auto", profile_dir: str | None = None) -> dict:
  """Builds, compiles and times `config`'s train step; returns the result dict (described in train_step.py).

  With `profile_dir`, three more steps are traced there after the timed ones (`jax.profiler`, with a Perfetto
  `*.trace.json.gz` that `profile_summary.py` reads) and the compiled step's HLO is written to `step.hlo.txt`.
  """
  config_lib.validate(config)
  mesh = sharding.make_mesh(config.mesh.to_dict(), preset=config.mesh_preset)
  train.check_batch_split(config, mesh)
  num_examples, num_classes, vocab_size, _ = dry_run.dataset_facts(config)
  program = train.build(config, mesh, num_examples, num_classes, vocab_size)
  batch = synthetic_batch(inputs.batch_spec(config.data, config.batch_size), sharding.batch_sharding(mesh), config.seed)
  device = mesh.devices.flat[0]

  with jax.set_mesh(mesh), nn.logical_axis_rules(config.sharding_rules):
    state = program.init()
    start = time.perf_counter()
    compiled = program.step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    # Model FLOPs, from the loss the step differentiates, on the batch the method sees (augmented views).
    stage = inputs.device_stage(config.data)
    seen = jax.eval_shape(stage, batch, jax.random.key(0))
    model_flops = flops.train_step_flops(program.method, state.params, state.extra, seen, jax.random.key(0))
    for _ in range(warmup):
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      state, metrics = compiled(state, batch)
      jax.block_until_ready((state, metrics))
      times.append(time.perf_counter() - start)
    # As the trainer runs between log steps: every step dispatched at once, one wait at the end (the host prepares
    # step i + 1 while the device runs step i).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    step_time = (time.perf_counter() - start) / steps
    # The process's page faults and kernel time meanwhile (all threads): a fresh mapping of XLA:CPU's per-step
    # temporaries shows here (see ssl_jax/runtime/host_memory.py).
    after = resource.getrusage(resource.RUSAGE_SELF)
    host_faults, host_system_s = (after.ru_minflt - usage.ru_minflt) / steps, (after.ru_stime - usage.ru_stime) / steps

    if profile_dir:
      with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
        for _ in range(3):
          state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
      pathlib.Path(profile_dir, "step.hlo.txt").write_text(compiled.as_text())

  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  kind = device.device_kind
  if peak == "auto" and kind in DATASHEET_PEAK:
    peak_flops, peak_source = DATASHEET_PEAK[kind], "datasheet"
  elif peak in ("auto", "measure"):
    dtype = jnp.dtype(config.model.get("dtype") or "float32")
    peak_flops, peak_source = measure_matmul_peak(dtype, device), f"measured ({dtype.name} matmul)"
  else:
    peak_flops, peak_source = float(peak), "given"
  peak_flops *= mesh.size
  stats = getattr(device, "memory_stats", lambda: None)() or {}
  if "peak_bytes_in_use" in stats:
    memory, memory_source = stats["peak_bytes_in_use"], "allocator"
  else:
    memory = dry_run.peak_bytes(compiled.memory_analysis())
    memory_source = "xla estimate"
  achieved = model_flops / step_time
  return dict(config=config.method.name, device_kind=kind, devices=mesh.size, mesh=dict(mesh.shape),
              batch_size=config.batch_size, dtype=str(config.model.get("dtype") or "float32"),
              step_time_s=step_time, step_time_blocking_s=statistics.median(times), step_time_min_s=min(times),
              examples_per_s=config.batch_size / step_time,
              tokens_per_s=(config.batch_size * config.data.text.length / step_time if "text" in config.data
                            else None),
              audio_seconds_per_s=(config.batch_size * config.data.audio.max_length / config.data.audio.sample_rate
                                   / step_time if "audio" in config.data else None),
              model_flops_per_step=model_flops, xla_flops_per_step=float(cost.get("flops", -1.0)) * mesh.size,
              achieved_flops_per_s=achieved, peak_flops_per_s=peak_flops, peak_source=peak_source,
              mfu=achieved / peak_flops, compile_time_s=compile_s, peak_memory_bytes=int(memory),
              memory_source=memory_source, host_memory=host_memory.describe(),
              host_page_faults_per_step=host_faults, host_system_s_per_step=host_system_s, steps=steps)


def table(result: dict) -> str:
  rows = [("device", f"{result['devices']} x {result['device_kind']}, mesh {result['mesh']}"),
          ("batch / dtype", f"{result['batch_size']} / {result['dtype']}"),
          ("step time", f"{result['step_time_s'] * 1e3:.1f} ms (one step at a time: median "
                        f"{result['step_time_blocking_s'] * 1e3:.1f}, min {result['step_time_min_s'] * 1e3:.1f})"),
          ("examples/s", f"{result['examples_per_s']:.1f}" + (
              f" ({result['tokens_per_s']:.0f} tokens/s)" if result.get("tokens_per_s") else
              f" ({result['audio_seconds_per_s']:.1f} s of audio / s)" if result.get("audio_seconds_per_s") else "")),
          ("model FLOPs / step", f"{result['model_flops_per_step'] / 1e9:.2f} GFLOP (XLA cost analysis: "
                                 f"{result['xla_flops_per_step'] / 1e9:.2f})"),
          ("achieved", f"{result['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s"),
          ("peak", f"{result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({result['peak_source']})"),
          ("MFU", f"{result['mfu']:.3f}"),
          ("compile", f"{result['compile_time_s']:.1f} s"),
          ("peak memory", f"{result['peak_memory_bytes'] / 2**30:.2f} GiB ({result['memory_source']})"),
          ("host memory", f"{result['host_memory']}; per step {result['host_page_faults_per_step']:,.0f} page faults, "
                          f"{result['host_system_s_per_step']:.2f} s system time")]
  return "\n".join(f"  {k:20s} {v}" for k, v in rows)


def emit(result: dict, json_out: str | None) -> None:
  """Prints `result` as the final JSON line (and writes it to `json_out` when given)."""
  line = json.dumps(result)
  print(line, flush=True)
  if json_out:
    with open(json_out, "w") as f:
      f.write(line + "\n")

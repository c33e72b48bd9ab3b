"""CLIP's and SigLIP's loss over the global batch: per-device memory and time of the three forms side by side.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/pair_loss.py [--batch_sizes=4096,16384,32768]
        [--dim=512] [--run_up_to=4096]

For each loss ("clip", "siglip"), each global batch and each form ("plain": the `[B, B]` similarities under `jit`,
GSPMD splitting their rows over the devices; "chunked": 1,024 rows at a time; "ring": `jax.shard_map`, the text
embeddings passed around the devices, `losses.clip_loss_ring` / `siglip_loss_ring`), the loss and its gradient with
respect to both embeddings `[B, dim]` (the batch split over every device, as the trainer splits it) are compiled, and
the compiler's per-device memory plan read (`memory_analysis()`: temporaries + arguments + outputs of one device's
program); batches up to `--run_up_to` are also run and timed (median of 5, after a warm-up). No tower is involved: the
numbers are the loss's own. Prints a table and a final JSON line.
"""

import json
import statistics
import time

from absl import app
from absl import flags

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import losses
from ssl_jax import sharding

_BATCHES = flags.DEFINE_list("batch_sizes", ["4096", "16384", "32768"], "Global batch sizes.")
_DIM = flags.DEFINE_integer("dim", 512, "Embedding dimension (CLIP ViT-B/16: 512).")
_RUN_UP_TO = flags.DEFINE_integer("run_up_to", 4096, "Also run and time batches up to this size.")
_CHUNK = 1024


def _loss_fn(name: str, form: str, mesh):
  """`f(img, txt) -> scalar` of the loss `name` in `form`, over embeddings split on the mesh's batch axes."""
  axes = sharding.BATCH_AXES
  size = mesh.shape["data"] * mesh.shape["fsdp"]
  scale, bias = 10.0, -10.0
  if form == "ring":
    ring = (lambda i, t: losses.clip_loss_ring(i, t, scale, axis_name=axes, axis_size=size)) if name == "clip" else (
        lambda i, t: losses.siglip_loss_ring(i, t, scale, bias, axis_name=axes, axis_size=size))
    per = jax.shard_map(ring, mesh=mesh, in_specs=(P(axes), P(axes)), out_specs=P(axes))
  else:
    chunk = _CHUNK if form == "chunked" else None
    per = (lambda i, t: losses.clip_loss(i, t, scale, chunk_size=chunk)) if name == "clip" else (
        lambda i, t: losses.siglip_loss(i, t, scale, bias, chunk_size=chunk))
  return lambda i, t: jnp.mean(per(i, t))


def measure(name: str, form: str, batch: int, dim: int, mesh, run: bool) -> dict:
  split = NamedSharding(mesh, P(sharding.BATCH_AXES))
  spec = jax.ShapeDtypeStruct((batch, dim), jnp.float32, sharding=split)
  step = jax.jit(jax.value_and_grad(_loss_fn(name, form, mesh), argnums=(0, 1)))
  start = time.perf_counter()
  compiled = step.lower(spec, spec).compile()
  compile_s = time.perf_counter() - start
  m = compiled.memory_analysis()
  row = dict(loss=name, form=form, batch=batch, dim=dim, devices=mesh.size, compile_s=round(compile_s, 2),
             temp_mib=round(m.temp_size_in_bytes / 2**20, 1),
             per_device_mib=round(
                 (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20, 1))
  if run:
    keys = jax.random.split(jax.random.key(0))
    img, txt = (jax.device_put(jax.random.normal(k, (batch, dim)), split) for k in keys)
    jax.block_until_ready(compiled(img, txt))
    times = []
    for _ in range(5):
      start = time.perf_counter()
      jax.block_until_ready(compiled(img, txt))
      times.append(time.perf_counter() - start)
    row["step_ms"] = round(1e3 * statistics.median(times), 2)
  return row


def main(argv):
  del argv
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1), jax.devices())
  rows = []
  for name in ("clip", "siglip"):
    for batch in map(int, _BATCHES.value):
      for form in ("plain", "chunked", "ring"):
        rows.append(measure(name, form, batch, _DIM.value, mesh, batch <= _RUN_UP_TO.value))
        r = rows[-1]
        print(f"{name:7s} {form:8s} batch {batch:6d}: {r['per_device_mib']:9.1f} MiB per device "
              f"(temporaries {r['temp_mib']:.1f}), compile {r['compile_s']:.1f} s"
              + (f", {r['step_ms']:.1f} ms" if "step_ms" in r else ""), flush=True)
  print(json.dumps(dict(benchmark="pair_loss", device=jax.devices()[0].device_kind, rows=rows)))


if __name__ == "__main__":
  app.run(main)

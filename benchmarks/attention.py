"""The attention implementations of `ssl_jax.models.vit` side by side, at MAE ViT-B/16's shapes.

    python benchmarks/attention.py [--batch_size=8] [--dtype=float32] [--impls=einsum,xla[,cudnn]] [--module]

For each shape (the MAE encoder's 50 tokens x 12 heads x 64, the decoder's 197 tokens x 16 heads x 32) and each
implementation, times the attention alone (`attention.dot_product_attention` on `[B, T, heads, head_dim]` q/k/v), forward
and forward + backward, median of `--repeats` calls after a warm-up; `--module` times a whole `attention.Attention`
(projections included) instead. Prints a table and a final JSON line. "cudnn" needs an NVIDIA GPU and bfloat16.
"""

import json
import statistics
import time

from absl import app
from absl import flags

from ssl_jax.runtime import host_memory

if __name__ == "__main__":
  host_memory.restart_with_huge_pages()   # before jax starts, as main.py (ssl_jax/runtime/host_memory.py)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ssl_jax.models import attention  # noqa: E402

_BATCH = flags.DEFINE_integer("batch_size", 8, "Batch.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "q/k/v dtype.")
_IMPLS = flags.DEFINE_list("impls", ["einsum", "xla"], f"Implementations, of {attention.ATTENTION_IMPLS}.")
_MODULE = flags.DEFINE_bool("module", False, "Time a whole attention.Attention (q/k/v and output projections too).")
_REPEATS = flags.DEFINE_integer("repeats", 11, "Timed calls per measurement (the median is reported).")

# (name, tokens, width, heads) of MAE ViT-B/16 at 224 px, mask ratio 0.75.
SHAPES = (("encoder", 50, 768, 12), ("decoder", 197, 512, 16))


def _median_time(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(impl: str, batch: int, tokens: int, width: int, heads: int, dtype, module: bool, repeats: int) -> dict:
  """Forward and forward + backward seconds of one attention (or `attention.Attention` with `module`)."""
  keys = jax.random.split(jax.random.key(0), 4)
  if module:
    layer = attention.Attention(heads, dtype, impl)
    x = jax.random.normal(keys[0], (batch, tokens, width), dtype)
    params = layer.init(keys[1], x)
    forward = lambda p, x: layer.apply(p, x)
    args = (params, x)
  else:
    q, k, v = (jax.random.normal(key, (batch, tokens, heads, width // heads), dtype) for key in keys[:3])
    forward = lambda q, k, v: attention.dot_product_attention(q, k, v, implementation=impl)
    args = (q, k, v)
  cotangent = jax.random.normal(keys[3], (batch, tokens, width), jnp.float32)

  def loss(*a):
    return jnp.sum(forward(*a).reshape(cotangent.shape).astype(jnp.float32) * cotangent)

  fwd = jax.jit(forward)
  fwd_bwd = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))
  return dict(forward_s=_median_time(fwd, args, repeats), forward_backward_s=_median_time(fwd_bwd, args, repeats))


def main(argv):
  del argv
  for impl in _IMPLS.value:
    if impl not in attention.ATTENTION_IMPLS:
      raise app.UsageError(f"--impls: {impl!r} is not one of {attention.ATTENTION_IMPLS}.")
  dtype = jnp.dtype(_DTYPE.value)
  device = jax.devices()[0]
  rows = []
  for name, tokens, width, heads in SHAPES:
    for impl in _IMPLS.value:
      r = measure(impl, _BATCH.value, tokens, width, heads, dtype, _MODULE.value, _REPEATS.value)
      rows.append(dict(shape=name, tokens=tokens, width=width, heads=heads, impl=impl, **r))
  what = "attention.Attention (projections included)" if _MODULE.value else "attention alone"
  print(f"{what}, batch {_BATCH.value}, {dtype.name}, {device.device_kind} ({jax.device_count()} devices)")
  print(f"  {'shape':8s} {'T x heads x dim':16s} {'impl':7s} {'forward':>10s} {'fwd + bwd':>10s}")
  for r in rows:
    dims = f"{r['tokens']} x {r['heads']} x {r['width'] // r['heads']}"
    fwd, both = r["forward_s"] * 1e3, r["forward_backward_s"] * 1e3
    print(f"  {r['shape']:8s} {dims:16s} {r['impl']:7s} {fwd:8.2f} ms {both:8.2f} ms")
  print(json.dumps(dict(batch_size=_BATCH.value, dtype=dtype.name, device_kind=device.device_kind,
                        module=_MODULE.value, rows=rows)))


if __name__ == "__main__":
  app.run(main)

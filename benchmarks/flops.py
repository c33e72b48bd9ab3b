"""Model FLOPs of a step, for model-FLOPs utilisation (MFU), by MaxText's convention.

Only matrix multiplications count (`dot_general` and convolutions, 2 FLOPs per multiply-accumulate), attention in
full (no causal or padding discount), and a training step costs 3 x its forward pass (backward = 2 x forward). They
are counted from the jaxpr of the method's loss — the program that actually runs, MAE's dropped tokens and every
view of a multi-view method included — not from a formula per architecture. Rematerialisation is not counted (it
is hardware work, not model work). `vit_forward_flops` is the closed form for a ViT, used to check the counter.
"""

import math

import jax
from jax.extend import core as jex_core

# FLOPs of primitives that hide their matmuls from the jaxpr: fused attention (q, k, v: [B, T, N, H]).
# The cuDNN path of `jax.nn.dot_product_attention` binds the `_wrapper` primitive inside its custom VJP.
_ATTENTION_PRIMITIVES = ("dot_product_attention_fwd_wrapper", "dot_product_attention_fwd")


def _dot_general_flops(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
  contract = math.prod(lhs[d] for d in lc)
  batch = math.prod(lhs[d] for d in lb)
  lhs_free = math.prod(s for d, s in enumerate(lhs) if d not in lc and d not in lb)
  rhs_free = math.prod(s for d, s in enumerate(rhs) if d not in rc and d not in eqn.params["dimension_numbers"][1][1])
  return 2 * batch * lhs_free * rhs_free * contract


def _conv_flops(eqn) -> int:
  out = eqn.outvars[0].aval.shape
  kernel = eqn.invars[1].aval.shape
  spec = eqn.params["dimension_numbers"].rhs_spec      # (out features, in features, spatial...)
  per_output = kernel[spec[1]] * math.prod(kernel[d] for d in spec[2:])
  return 2 * math.prod(out) * per_output


def _sub_jaxprs(params):
  for value in params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jex_core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jex_core.Jaxpr):
        yield v


def jaxpr_matmul_flops(jaxpr) -> int:
  """Matmul FLOPs of a jaxpr, recursing into sub-jaxprs (a scan's body counted `length` times, the larger branch of
  a cond, a while loop's body once)."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += _dot_general_flops(eqn)
    elif name == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif name in _ATTENTION_PRIMITIVES:
      b, t, n, h = eqn.invars[0].aval.shape
      s = eqn.invars[1].aval.shape[1]
      total += 4 * b * n * t * s * h
    elif name == "cond":
      total += max(jaxpr_matmul_flops(br.jaxpr) for br in eqn.params["branches"])
    else:
      inner = sum(jaxpr_matmul_flops(j) for j in _sub_jaxprs(eqn.params))
      total += inner * (eqn.params["length"] if name == "scan" else 1)
  return total


def matmul_flops(fn, *args) -> int:
  """Matmul FLOPs of one call `fn(*args)` (arrays or `jax.ShapeDtypeStruct`s)."""
  return jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def train_step_flops(method, params, extra, batch, rng) -> int:
  """Model FLOPs of one training step of `method` on `batch`: 3 x the matmul FLOPs of its loss's forward pass."""
  return 3 * matmul_flops(lambda p, e, b: method.loss(p, e, b, rng, 0)[0], params, extra, batch)


def vit_forward_flops(*, batch: int, tokens: int, width: int, depth: int, mlp_dim: int) -> int:
  """Closed-form matmul FLOPs of `depth` pre-LN transformer blocks on `[batch, tokens, width]`: q/k/v and output
  projections `4 T D^2`, attention scores and weighted sum `2 T^2 D`, MLP `2 T D M`, each x 2 FLOPs per MAC."""
  per_block = 4 * tokens * width ** 2 + 2 * tokens ** 2 * width + 2 * tokens * width * mlp_dim
  return 2 * batch * depth * per_block

"""Model FLOPs of a step, for model-FLOPs utilisation (MFU), by MaxText's convention.

Only matrix multiplications count (`dot_general` and convolutions, 2 FLOPs per multiply-accumulate), attention in
full (no causal or padding discount), and a training step costs 3 x its forward pass (backward = 2 x forward) for
the matmuls that depend on the trained parameters, 1 x for those that do not (a momentum teacher's forward pass has
no backward). They are counted from the jaxpr of the method's loss — the program that actually runs, MAE's dropped
tokens and every view of a multi-view method included — not from a formula per architecture. Rematerialisation is
not counted (it is hardware work, not model work). `vit_forward_flops` is the closed form for a ViT, used to check
the counter.
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


def _sub_jaxpr_items(params):
  """(parameter name, jaxpr) of the sub-jaxprs an equation carries."""
  for key, value in params.items():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jex_core.ClosedJaxpr):
        yield key, v.jaxpr
      elif isinstance(v, jex_core.Jaxpr):
        yield key, v


def _split_flops(jaxpr, live) -> tuple[int, int, list[bool]]:
  """(matmul FLOPs that depend on the `live` inputs, those that do not, which outputs depend on them).

  Dependence flows through every equation except `stop_gradient`; a sub-jaxpr whose inputs line up with its
  equation's (calls, custom VJPs, remat, scan, a cond's branches) is followed input by input, others count as
  depending on all their inputs. A scan's body is counted `length` times, a cond's larger branch, a while loop's body
  once."""
  dep = {v: bool(l) for v, l in zip(jaxpr.invars, live)}
  is_live = lambda v: isinstance(v, jex_core.Var) and dep.get(v, False)
  trained = frozen = 0
  for eqn in jaxpr.eqns:
    ins = [is_live(v) for v in eqn.invars]
    name = eqn.primitive.name
    outs = [any(ins)] * len(eqn.outvars)
    count = 0
    if name == "dot_general":
      count = _dot_general_flops(eqn)
    elif name == "conv_general_dilated":
      count = _conv_flops(eqn)
    elif name in _ATTENTION_PRIMITIVES:
      b, t, n, h = eqn.invars[0].aval.shape
      count = 4 * b * n * t * eqn.invars[1].aval.shape[1] * h
    elif name == "stop_gradient":
      outs = [False] * len(eqn.outvars)
    elif name == "cond":
      best = max((_split_flops(br.jaxpr, ins[1:]) for br in eqn.params["branches"]), key=lambda r: r[0] + r[1])
      trained, frozen = trained + best[0], frozen + best[1]
    else:
      for _, sub in _sub_jaxpr_items(eqn.params):
        sub_live = ins if len(sub.invars) == len(ins) else [any(ins)] * len(sub.invars)
        if name == "scan":           # a carry may become live inside the loop: iterate to the fixed point
          n_consts, n_carry = eqn.params["num_consts"], eqn.params["num_carry"]
          for _ in range(n_carry + 1):
            *_, sub_outs = _split_flops(sub, sub_live)
            carry = [a or b for a, b in zip(sub_live[n_consts:n_consts + n_carry], sub_outs[:n_carry])]
            if carry == sub_live[n_consts:n_consts + n_carry]:
              break
            sub_live = sub_live[:n_consts] + carry + sub_live[n_consts + n_carry:]
        t, f, sub_outs = _split_flops(sub, sub_live)
        times = eqn.params["length"] if name == "scan" else 1
        trained, frozen = trained + t * times, frozen + f * times
        if len(sub_outs) == len(outs) and len(sub.invars) == len(ins):
          outs = sub_outs
    if count:
      trained, frozen = (trained + count, frozen) if any(ins) else (trained, frozen + count)
    for v, l in zip(eqn.outvars, outs):
      dep[v] = l
  return trained, frozen, [is_live(v) for v in jaxpr.outvars]


def jaxpr_matmul_flops(jaxpr) -> int:
  """Matmul FLOPs of a jaxpr, recursing into sub-jaxprs (a scan's body counted `length` times, the larger branch of
  a cond, a while loop's body once)."""
  trained, frozen, _ = _split_flops(jaxpr, [False] * len(jaxpr.invars))
  return trained + frozen


def matmul_flops(fn, *args) -> int:
  """Matmul FLOPs of one call `fn(*args)` (arrays or `jax.ShapeDtypeStruct`s)."""
  return jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def train_step_flops(method, params, extra, batch, rng) -> int:
  """Model FLOPs of one training step of `method` on `batch`: 3 x the matmul FLOPs of its loss's forward pass that
  depend on the trained `params` (forward + backward), 1 x those that do not (a momentum teacher's or a target
  encoder's forward pass, monitors of stop-gradient features: no backward pass)."""
  closed = jax.make_jaxpr(lambda p, e, b: method.loss(p, e, b, rng, 0)[0])(params, extra, batch)
  n_params = len(jax.tree.leaves(params))
  live = [i < n_params for i in range(len(closed.jaxpr.invars))]
  trained, frozen, _ = _split_flops(closed.jaxpr, live)
  return 3 * trained + frozen


def vit_forward_flops(*, batch: int, tokens: int, width: int, depth: int, mlp_dim: int) -> int:
  """Closed-form matmul FLOPs of `depth` pre-LN transformer blocks on `[batch, tokens, width]`: q/k/v and output
  projections `4 T D^2`, attention scores and weighted sum `2 T^2 D`, MLP `2 T D M`, each x 2 FLOPs per MAC."""
  per_block = 4 * tokens * width ** 2 + 2 * tokens ** 2 * width + 2 * tokens * width * mlp_dim
  return 2 * batch * depth * per_block

"""The pre-LayerNorm transformer stack that every transformer encoder and decoder here builds on (ViT, the MAE
decoder, and the text and audio encoders).

Blocks are `x + attn(ln(x))`, then `x + mlp(ln(x))` (LayerNorm eps 1e-6, exact GELU, Xavier-uniform linear maps and
zero biases as MAE/timm), with stochastic depth, optional causal and segment masks (`ssl_jax.models.attention`),
rematerialisation and a scanned layer loop. Parameters carry logical axis names (`embed`, `mlp`, `heads`, `kv`) that
`ssl_jax.sharding` maps to mesh axes; activations are constrained to (`batch`, `length`, `embed`) between blocks.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models.attention import Attention


def dense_init(names: tuple[str | None, ...]):
  """Xavier-uniform kernel initialiser with the logical axis `names` of its dimensions."""
  return nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names)


def layer_norm(dtype, name: str | None = None) -> nn.LayerNorm:
  """LayerNorm with eps 1e-6 (ViT, MAE, timm) over the `embed` axis."""
  return nn.LayerNorm(epsilon=1e-6, dtype=dtype, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


def constrain_tokens(x: jax.Array) -> jax.Array:
  """Shards `[B, T, D]` activations as (`batch`, `length`, `embed`) under the active logical axis rules."""
  return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class MlpBlock(nn.Module):
  """Two-layer MLP with exact GELU, `[..., D] -> [..., D]`."""
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1", kernel_init=dense_init(("embed", "mlp")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(x)
    h = nn.gelu(h, approximate=False)
    return nn.Dense(width, dtype=self.dtype, name="fc2", kernel_init=dense_init(("mlp", "embed")),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(h)


def drop_path(module: nn.Module, x: jax.Array, rate, train: bool, key: jax.Array | None = None) -> jax.Array:
  """Stochastic depth (Huang et al. 2016) on a residual branch `x` `[B, ...]`: each example's branch is zeroed with
  probability `rate` and the kept ones scaled by `1 / (1 - rate)`, as timm's `DropPath`.

  `rate` may be traced (a scanned layer's rate); `key` defaults to the module's "dropout" rng.
  """
  if not train or (isinstance(rate, (int, float)) and rate == 0.0):
    return x
  key = module.make_rng("dropout") if key is None else key
  keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class Block(nn.Module):
  """Pre-LN transformer block: `x + attn(ln(x))`, then `x + mlp(ln(x))` (branches under stochastic depth at rate
  `drop_path`, or `rate` when given, with the two branches' keys split from `key` when given)."""
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  drop_path: float = 0.0
  causal: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, rate=None, key=None, segment_ids=None):
    rate = self.drop_path if rate is None else rate
    keys = (None, None) if key is None else tuple(jax.random.split(key))
    y = Attention(self.num_heads, self.dtype, self.attention_impl, self.causal, name="attn")(
        layer_norm(self.dtype, "ln1")(x), segment_ids)
    x = x + drop_path(self, y, rate, train, keys[0])
    y = MlpBlock(self.mlp_dim, self.dtype, name="mlp")(layer_norm(self.dtype, "ln2")(x))
    x = x + drop_path(self, y, rate, train, keys[1])
    return constrain_tokens(x)


# Rematerialisation policies of the transformer blocks (`jax.checkpoint`): what the backward pass keeps from the
# forward pass. "full" keeps only each block's input; "dots_saveable" keeps matmul outputs and recomputes the rest.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Transformer(nn.Module):
  """`depth` blocks followed by a final LayerNorm (unless `final_norm` is False); stochastic depth rising linearly
  from 0 to `drop_path`.

  `causal` masks every block's attention to earlier tokens; `segment_ids` (a call argument) to tokens of the same
  segment (`ssl_jax.models.attention`).

  `remat` (a `REMAT_POLICIES` name) recomputes each block's activations in the backward pass instead of storing
  them; `scan` runs the blocks as one `lax.scan` over their parameters stacked on the fly, so that XLA compiles one
  block instead of `depth` (shorter compiles of deep models for TPUs; use it with a remat policy, since a scanned
  loop otherwise keeps every intermediate of every block). Neither changes the parameters (`block{i}/...` in both
  cases: checkpoints, exports and per-layer optimizer rules are the same), nor the result: the stochastic-depth keys
  are split per layer from one "dropout" key in every mode. The cost of `scan`: a stacked copy of the block
  parameters (and of their gradients) lives for the duration of the step.
  """
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  drop_path: float = 0.0
  final_norm: bool = True
  remat: str = "none"
  scan: bool = False
  causal: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, segment_ids: jax.Array | None = None,
               return_layers: bool = False):
    """Applies the stack.

    Args:
      x: `[B, T, D]` tokens.
      train: apply stochastic depth (needs a "dropout" rng when `drop_path` > 0).
      segment_ids: optional `[B, T]` int; tokens attend within their segment only.
      return_layers: also return each block's output (before the final LayerNorm), as data2vec's targets need.

    Returns:
      `[B, T, D]` (after the final LayerNorm if `final_norm`), and with `return_layers` a tuple of it and the
      `[depth, B, T, D]` block outputs.
    """
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"model.remat={self.remat!r} is unknown; use one of {sorted(REMAT_POLICIES)}.")
    block = lambda **kw: Block(self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, causal=self.causal,
                               **kw)
    rates = [self.drop_path * i / max(self.depth - 1, 1) for i in range(self.depth)]
    stochastic = train and self.drop_path > 0.0
    keys = jax.random.split(self.make_rng("dropout"), self.depth) if stochastic else None
    layers = []
    if self.is_initializing() or (self.remat == "none" and not self.scan):
      for i in range(self.depth):
        x = block(drop_path=rates[i], name=f"block{i}")(x, train, key=None if keys is None else keys[i],
                                                        segment_ids=segment_ids)
        layers.append(x)
    else:
      def apply(params, x, rate, key):
        return block().apply({"params": params}, x, train, rate, key, segment_ids)
      if self.remat != "none":
        apply = jax.checkpoint(apply, policy=REMAT_POLICIES[self.remat], prevent_cse=not self.scan)
      params = [nn.unbox(self.variables["params"][f"block{i}"]) for i in range(self.depth)]
      if self.scan:
        stacked = jax.tree.map(lambda *p: jnp.stack(p), *params)

        def body(x, xs):
          x = apply(xs[0], x, xs[1] if stochastic else None, xs[2])
          return x, (x if return_layers else None)
        x, layers = jax.lax.scan(body, x, (stacked, jnp.asarray(rates, jnp.float32), keys))
      else:
        for i in range(self.depth):
          x = apply(params[i], x, rates[i] if stochastic else None, None if keys is None else keys[i])
          layers.append(x)
    out = layer_norm(self.dtype, "norm")(x) if self.final_norm else x
    if not return_layers:
      return out
    return out, (layers if self.scan and not self.is_initializing() else jnp.stack(layers))

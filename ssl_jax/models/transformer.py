"""The transformer stack that every transformer encoder and decoder here builds on (ViT, the MAE decoder, GPT-2,
BERT, and the audio encoders).

Blocks are pre-LayerNorm by default, `x + attn(ln(x))`, then `x + mlp(ln(x))` (LayerNorm eps 1e-6, exact GELU,
Xavier-uniform linear maps and zero biases as MAE/timm); a `BlockStyle` gives the other families' variants (GPT-2's
eps 1e-5, tanh GELU and N(0, 0.02) weights; BERT's post-LayerNorm `ln(x + attn(x))` and hidden dropout). Stochastic
depth, optional causal and segment masks (`ssl_jax.models.attention`), rematerialisation and a scanned layer loop.
Parameters carry logical axis names (`embed`, `mlp`, `heads`, `kv`) that `ssl_jax.sharding` maps to mesh axes; activations are constrained to (`batch`, `length`, `embed`) between blocks.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models.attention import Attention


@dataclasses.dataclass(frozen=True)
class BlockStyle:
  """How a family's transformer blocks differ from the ViT's (the defaults).

  Attributes:
    post_norm: `ln(x + f(x))` after each residual branch (BERT, the original Transformer) instead of `x + f(ln(x))`.
    eps: the LayerNorms' epsilon (ViT/MAE 1e-6, GPT-2 1e-5, BERT 1e-12).
    tanh_gelu: GELU's tanh approximation (GPT-2's "gelu_new") instead of the exact erf form.
    init_std: None: Xavier-uniform linear maps (ViT, MAE); else N(0, init_std) (GPT-2, BERT: 0.02).
    out_init_std: the std of the residual branches' output projections (GPT-2: 0.02 / sqrt(2 * depth)); default
      `init_std`.
    dropout: dropout on each residual branch's output, before it is added (BERT 0.1); attention probabilities are
      not dropped.
    layer_scale: None, or the initial value of LayerScale (Touvron et al. 2021, CaiT): each residual branch's output
      multiplied by a learned per-channel vector (`ls1`, `ls2`) before it is added (BEiT 0.1, data2vec 1e-4, DINOv2
      1e-5; timm's `init_values`).
    init_truncation: with `init_std`, the normal is truncated at +-`init_truncation` standard deviations (BEiT and
      data2vec: 1, their `trunc_normal_(std=0.02, a=-0.02, b=0.02)`; I-JEPA's bounds of +-2 absolute never bind).
    depth_scaled_init: the output projections of block i (from 1) are divided by sqrt(2 i) after initialisation
      (BEiT's and data2vec's `fix_init_weight`), on top of `out_init_std`.
  """
  post_norm: bool = False
  eps: float = 1e-6
  tanh_gelu: bool = False
  init_std: float | None = None
  out_init_std: float | None = None
  dropout: float = 0.0
  layer_scale: float | None = None
  init_truncation: float | None = None
  depth_scaled_init: bool = False

  def normal(self, std: float):
    """N(0, std), truncated at +-`init_truncation` std when that is set."""
    if self.init_truncation is None:
      return nn.initializers.normal(std)
    return nn.initializers.truncated_normal(std, lower=-self.init_truncation, upper=self.init_truncation)

  def kernel_init(self, names: tuple[str | None, ...], output: bool = False):
    """The initialiser of a linear kernel with logical axis `names` (`output`: a residual branch's projection)."""
    std = self.out_init_std if output and self.out_init_std is not None else self.init_std
    init = nn.initializers.xavier_uniform() if std is None else self.normal(std)
    return nn.with_logical_partitioning(init, names)

  def for_layer(self, index: int) -> "BlockStyle":
    """The style of block `index` (from 0): `depth_scaled_init` divides its output projections' std by
    sqrt(2 (index + 1))."""
    if not self.depth_scaled_init:
      return self
    if self.init_std is None:
      raise ValueError("depth_scaled_init needs init_std (a normal initialisation to rescale).")
    std = self.init_std if self.out_init_std is None else self.out_init_std
    return dataclasses.replace(self, out_init_std=std / (2.0 * (index + 1)) ** 0.5, depth_scaled_init=False)


VIT = BlockStyle()


def dense_init(names: tuple[str | None, ...]):
  """Xavier-uniform kernel initialiser with the logical axis `names` of its dimensions."""
  return nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names)


def layer_norm(dtype, name: str | None = None, eps: float = 1e-6) -> nn.LayerNorm:
  """LayerNorm with eps 1e-6 (ViT, MAE, timm; `eps` for other families) over the `embed` axis."""
  return nn.LayerNorm(epsilon=eps, dtype=dtype, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


def constrain_tokens(x: jax.Array) -> jax.Array:
  """Shards `[B, T, D]` activations as (`batch`, `length`, `embed`) under the active logical axis rules."""
  return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class MlpBlock(nn.Module):
  """Two-layer MLP with GELU (exact, or tanh with `style.tanh_gelu`), `[..., D] -> [..., D]`."""
  mlp_dim: int
  dtype: Any = jnp.float32
  style: BlockStyle = VIT

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1", kernel_init=self.style.kernel_init(("embed", "mlp")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(x)
    h = nn.gelu(h, approximate=self.style.tanh_gelu)
    return nn.Dense(width, dtype=self.dtype, name="fc2",
                    kernel_init=self.style.kernel_init(("mlp", "embed"), output=True),
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


def dropout(module: nn.Module, x: jax.Array, rate: float, train: bool, key: jax.Array | None = None) -> jax.Array:
  """Element-wise dropout at `rate` (kept values scaled by `1 / (1 - rate)`); `key` defaults to the module's
  "dropout" rng."""
  if not train or rate == 0.0:
    return x
  key = module.make_rng("dropout") if key is None else key
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class Block(nn.Module):
  """Transformer block, pre-LN `x + attn(ln(x))`, then `x + mlp(ln(x))`, or post-LN `ln(x + attn(x))`, then
  `ln(x + mlp(x))` (`style.post_norm`). Branches under stochastic depth at rate `drop_path`, or `rate` when given
  (the two branches' keys split from `key` when given), and `style.dropout` (keys `fold_in(key, 2 | 3)`)."""
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  drop_path: float = 0.0
  causal: bool = False
  style: BlockStyle = VIT
  decode: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, rate=None, key=None, segment_ids=None, bias=None):
    rate = self.drop_path if rate is None else rate
    keys = (None, None) if key is None else tuple(jax.random.split(key))
    drop = [None, None] if key is None else [jax.random.fold_in(key, 2), jax.random.fold_in(key, 3)]
    st = self.style
    norm = lambda name: layer_norm(self.dtype, name, st.eps)
    branches = (
        lambda h: Attention(self.num_heads, self.dtype, self.attention_impl, self.causal, st.init_std,
                            st.out_init_std, decode=self.decode, init_truncation=st.init_truncation,
                            name="attn")(h, segment_ids, bias),
        lambda h: MlpBlock(self.mlp_dim, self.dtype, st, name="mlp")(h))
    for i, (branch, name) in enumerate(zip(branches, ("ln1", "ln2"))):
      y = dropout(self, branch(x if st.post_norm else norm(name)(x)), st.dropout, train, drop[i])
      if st.layer_scale is not None:
        gamma = self.param(f"ls{i + 1}", nn.with_logical_partitioning(
            nn.initializers.constant(st.layer_scale), ("embed",)), (x.shape[-1],))
        y = y * gamma.astype(y.dtype)
      x = x + drop_path(self, y, rate, train, keys[i])
      if st.post_norm:
        x = norm(name)(x)
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
  from 0 to `drop_path`, or `drop_path` in every block with `drop_path_uniform` (DINOv2's `drop_path_uniform`).

  `causal` masks every block's attention to earlier tokens; `segment_ids` (a call argument) to tokens of the same
  segment (`ssl_jax.models.attention`). `decode` runs every block's attention over a key/value cache
  (`attention.Attention`; the blocks then run as a plain loop whatever `remat` and `scan` say).

  `layer_drop` is LayerDrop (Fan et al. 2020; wav2vec 2.0's `encoder_layerdrop`): in training each block is skipped
  for the whole batch with that probability (its input passed on unchanged, nothing rescaled); the skipped block is
  still computed and its output discarded (`jnp.where`), so LayerDrop regularises but saves no time here.

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
  style: BlockStyle = VIT
  decode: bool = False
  drop_path_uniform: bool = False
  layer_drop: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, segment_ids: jax.Array | None = None,
               return_layers: bool = False, bias: jax.Array | None = None):
    """Applies the stack.

    Args:
      x: `[B, T, D]` tokens.
      train: apply stochastic depth (needs a "dropout" rng when `drop_path` > 0).
      segment_ids: optional `[B, T]` int; tokens attend within their segment only.
      return_layers: also return each block's output (before the final LayerNorm), as data2vec's targets need.
      bias: optional `[(B,) heads, T, T]` added to every block's attention logits (a shared relative position bias).

    Returns:
      `[B, T, D]` (after the final LayerNorm if `final_norm`), and with `return_layers` a tuple of it and the
      `[depth, B, T, D]` block outputs.
    """
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"model.remat={self.remat!r} is unknown; use one of {sorted(REMAT_POLICIES)}.")
    block = lambda style=self.style, **kw: Block(self.num_heads, self.mlp_dim, self.dtype, self.attention_impl,
                                                 causal=self.causal, style=style, decode=self.decode, **kw)
    rates = [self.drop_path if self.drop_path_uniform else self.drop_path * i / max(self.depth - 1, 1)
             for i in range(self.depth)]
    stochastic = train and (self.drop_path > 0.0 or self.style.dropout > 0.0 or self.layer_drop > 0.0)
    keys = jax.random.split(self.make_rng("dropout"), self.depth) if stochastic else None

    def layer_drop(new, old, key):
      if not (train and self.layer_drop > 0.0):
        return new
      return jnp.where(jax.random.bernoulli(jax.random.fold_in(key, 7), 1.0 - self.layer_drop), new, old)
    layers = []
    if self.is_initializing() or self.decode or (self.remat == "none" and not self.scan):
      for i in range(self.depth):
        y = block(self.style.for_layer(i), drop_path=rates[i], name=f"block{i}")(
            x, train, key=None if keys is None else keys[i], segment_ids=segment_ids, bias=bias)
        x = y if keys is None else layer_drop(y, x, keys[i])
        layers.append(x)
    else:
      def apply(params, x, rate, key):
        return block().apply({"params": params}, x, train, rate, key, segment_ids, bias)
      if self.remat != "none":
        apply = jax.checkpoint(apply, policy=REMAT_POLICIES[self.remat], prevent_cse=not self.scan)
      params = [nn.unbox(self.variables["params"][f"block{i}"]) for i in range(self.depth)]
      if self.scan:
        stacked = jax.tree.map(lambda *p: jnp.stack(p), *params)

        def body(x, xs):
          y = apply(xs[0], x, xs[1] if stochastic else None, xs[2])
          x = y if xs[2] is None else layer_drop(y, x, xs[2])
          return x, (x if return_layers else None)
        x, layers = jax.lax.scan(body, x, (stacked, jnp.asarray(rates, jnp.float32), keys))
      else:
        for i in range(self.depth):
          y = apply(params[i], x, rates[i] if stochastic else None, None if keys is None else keys[i])
          x = y if keys is None else layer_drop(y, x, keys[i])
          layers.append(x)
    out = layer_norm(self.dtype, "norm", self.style.eps)(x) if self.final_norm else x
    if not return_layers:
      return out
    return out, (layers if self.scan and not self.is_initializing() else jnp.stack(layers))

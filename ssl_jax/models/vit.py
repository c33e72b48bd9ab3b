"""Vision Transformer (Dosovitskiy et al. 2021) with MAE token dropping, and the MAE decoder (He et al. 2022).

Pre-LayerNorm blocks (LayerNorm eps 1e-6, exact GELU), a [CLS] token, fixed 2-D sin-cos or learned position
embeddings, and attention by `dot_product_attention` (cuDNN flash attention on recent NVIDIA GPUs in half precision,
elsewhere plain XLA ops with FlashAttention's backward pass). Initialisation follows the official MAE code:
Xavier-uniform for every linear map (the patch embedding included, on its flattened kernel), zero biases, N(0, 0.02)
for the [CLS] and mask tokens.

Parameters carry logical axis names (`embed`, `mlp`, `heads`, `kv`, `patch`) that `ssl_jax.sharding` maps to mesh
axes; activations are constrained to (`batch`, `length`, `embed`) between blocks.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import masking

# (width, depth, heads, mlp_dim) of the standard sizes.
VARIANTS = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "H": (1280, 32, 16, 5120),
}


@dataclasses.dataclass(frozen=True)
class ViTSize:
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch_size: int


def parse_variant(variant: str) -> ViTSize:
  """`"B/16"` -> ViTSize(width=768, depth=12, num_heads=12, mlp_dim=3072, patch_size=16)."""
  try:
    name, patch = variant.split("/")
    width, depth, heads, mlp = VARIANTS[name]
    return ViTSize(width, depth, heads, mlp, int(patch))
  except (ValueError, KeyError):
    raise ValueError(f"unknown ViT variant {variant!r}: use NAME/PATCH with NAME in {sorted(VARIANTS)}, "
                     "e.g. 'B/16'.") from None


def sincos_2d(width: int, grid_h: int, grid_w: int) -> np.ndarray:
  """Fixed 2-D sin-cos position embedding of MAE (`get_2d_sincos_pos_embed`), without the [CLS] slot.

  Half of the channels encode the column, half the row; each half is `[sin(pos * w_k), cos(pos * w_k)]` with
  `w_k = 10000 ** (-k / (width / 4))`.

  Returns:
    `[grid_h * grid_w, width]` float32, row-major over the grid.
  """
  if width % 4:
    raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {width}.")
  omega = 1.0 / 10000 ** (np.arange(width // 4, dtype=np.float64) / (width / 4.0))

  def embed_1d(pos):
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

  cols, rows = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))
  return np.concatenate([embed_1d(cols), embed_1d(rows)], axis=1).astype(np.float32)


def _dense_init(names):
  return nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names)


def layer_norm(dtype, name=None):
  return nn.LayerNorm(epsilon=1e-6, dtype=dtype, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


def _constrain(x):
  return nn.with_logical_constraint(x, ("batch", "length", "embed"))


# Values of `attention_impl` (None picks one: see `dot_product_attention`).
ATTENTION_IMPLS = ("einsum", "xla", "cudnn")


@jax.custom_vjp
def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """`softmax(q k^T / sqrt(head_dim)) v` over `[B, T, heads, head_dim]` q/k/v (no mask), with a hand-written backward.

  The forward pass is the math of `jax.nn.dot_product_attention`'s XLA implementation (scores and softmax in float32,
  probabilities cast to the value dtype for the weighted sum). The backward pass is FlashAttention's (Dao et al. 2022,
  Alg. 2, untiled): with the probabilities `P` kept from the forward pass, `dV = P^T dY`, `dP = dY V^T`,
  `dS = P * (dP - rowsum(dY * Y))`, `dQ = dS K / sqrt(d)`, `dK = dS^T Q / sqrt(d)` — four matmuls and one
  element-wise pass over the `[B, heads, T, T]` scores, where autodiff of the softmax makes several. MAE ViT-B's
  decoder attention (197 tokens, 16 heads of 32, batch 8) on the 2-core CPU: forward 24 -> 11 ms, forward + backward
  57 -> 41 ms against jax's XLA implementation (`benchmarks/attention.py`).
  """
  return _einsum_attention_fwd(q, k, v)[0]


def _einsum_attention_fwd(q, k, v):
  # Heads-major [B, heads, T, head_dim] inside: XLA:CPU runs the batched matmuls several times faster in this layout
  # than on [B, T, heads, head_dim] operands (benchmarks/attention.py).
  q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
  logits = jnp.einsum("bhtd,bhsd->bhts", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
  p = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  y = jnp.einsum("bhts,bhsd->bhtd", p, v)
  return y.transpose(0, 2, 1, 3), (q, k, v, p, y)


def _einsum_attention_bwd(residuals, dy):
  q, k, v, p, y = residuals
  dy = dy.transpose(0, 2, 1, 3)
  dv = jnp.einsum("bhts,bhtd->bhsd", p, dy.astype(p.dtype))
  dp = jnp.einsum("bhtd,bhsd->bhts", dy, v, preferred_element_type=jnp.float32)
  # rowsum(P * dP) = rowsum(dY * Y), without another pass over the scores.
  delta = jnp.sum(dy.astype(jnp.float32) * y.astype(jnp.float32), axis=-1, keepdims=True)
  ds = (p.astype(jnp.float32) * (dp - delta) * q.shape[-1] ** -0.5).astype(q.dtype)
  dq = jnp.einsum("bhts,bhsd->bhtd", ds, k)
  dk = jnp.einsum("bhts,bhtd->bhsd", ds, q)
  return tuple(x.transpose(0, 2, 1, 3) for x in (dq, dk, dv))


einsum_attention.defvjp(_einsum_attention_fwd, _einsum_attention_bwd)


def _cudnn_likely(q: jax.Array) -> bool:
  """Whether cuDNN flash attention can run `q`: an NVIDIA GPU of compute capability >= 8.0, bfloat16/float16, head
  dimension a multiple of 8 up to 128 (cuDNN's conditions for jax's fused attention)."""
  if jax.default_backend() != "gpu" or q.dtype not in (jnp.bfloat16, jnp.float16):
    return False
  if q.shape[-1] % 8 or q.shape[-1] > 128:
    return False
  try:
    return float(jax.devices()[0].compute_capability) >= 8.0
  except (AttributeError, TypeError, ValueError):
    return False


def dot_product_attention(q, k, v, implementation: str | None = None, pad_to: int | None = None) -> jax.Array:
  """Attention over `[B, T, heads, head_dim]` q/k/v (no mask), by one of `ATTENTION_IMPLS`.

  "einsum": `einsum_attention` (plain XLA ops, FlashAttention's backward); "xla": `jax.nn.dot_product_attention`'s
  XLA implementation; "cudnn": its cuDNN flash attention (GPUs, bfloat16/float16). None picks "cudnn" where cuDNN
  can run it (an NVIDIA GPU of compute capability 8.0 or more, half precision) and "einsum" elsewhere (CPUs, TPUs,
  float32).

  JAX's cuDNN flash-attention gradient (jax <= 0.11) refuses odd sequence lengths ("Unsupported sequence length Q
  197, KV 197": its training path always counts a bias, and biased cuDNN attention needs even lengths), which every
  ViT with a [CLS] token has (1 + 14 x 14). With "cudnn" (or "xla" and `pad_to` given, as the tests do), q/k/v are
  zero-padded along T to a multiple of `pad_to` (default 2), the padded keys are masked out by the kernel's padding
  mask (`key_value_seq_lengths`), and the padded query rows are dropped, so the result is exactly the unpadded
  attention; the cost is one pad of q/k/v and one slice of the output.
  """
  if implementation is None:
    implementation = "cudnn" if _cudnn_likely(q) else "einsum"
  if implementation not in ATTENTION_IMPLS:
    raise ValueError(f"attention implementation {implementation!r} is unknown; use one of {ATTENTION_IMPLS} or None.")
  if implementation == "einsum":
    return einsum_attention(q, k, v)
  t = q.shape[1]
  multiple = pad_to or (2 if implementation == "cudnn" else 1)
  extra = -t % multiple
  if not extra:
    return jax.nn.dot_product_attention(q, k, v, implementation=implementation)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, extra), (0, 0), (0, 0)))
  lengths = jnp.full((q.shape[0],), t, jnp.int32)
  y = jax.nn.dot_product_attention(pad(q), pad(k), pad(v), query_seq_lengths=lengths,
                                   key_value_seq_lengths=lengths, implementation=implementation)
  return y[:, :t]


class Attention(nn.Module):
  """Multi-head self-attention with a fused q/k/v projection, `[B, T, D] -> [B, T, D]`.

  The q/k/v kernel is `[D, heads, 3, head_dim]` (heads outermost, so tensor parallelism splits heads, not q|k|v, and
  flattening the kernel to `[D, 3 D]` keeps each device's heads contiguous), initialised with the fan-in/fan-out of
  the fused `Linear(D, 3D)` of MAE/timm; the output kernel is `[heads, head_dim, D]`. Both projections run as 2-D
  matmuls on `[B * T, D]` tokens: XLA:CPU runs them markedly faster than the equivalent 4-D einsums, whose gradients
  it computes through transposed copies of the kernels (benchmarks/README.md).
  """
  num_heads: int
  dtype: Any = jnp.float32
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, x):
    batch, length, width = x.shape
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}.")
    head_dim = width // self.num_heads
    param = lambda name, init, names, shape: self.param(
        name, nn.with_logical_partitioning(init, names), shape).astype(self.dtype)
    xavier = nn.initializers.xavier_uniform
    w_qkv = param("qkv_kernel", xavier(in_axis=0, out_axis=(1, 2, 3)), ("embed", "heads", None, "kv"),
                  (width, self.num_heads, 3, head_dim))
    b_qkv = param("qkv_bias", nn.initializers.zeros, ("heads", None, "kv"), (self.num_heads, 3, head_dim))
    w_out = param("out_kernel", xavier(in_axis=(0, 1), out_axis=2), ("heads", "kv", "embed"),
                  (self.num_heads, head_dim, width))
    b_out = param("out_bias", nn.initializers.zeros, ("embed",), (width,))
    tokens = x.astype(self.dtype).reshape(batch * length, width)
    qkv = (tokens @ w_qkv.reshape(width, 3 * width)).reshape(batch, length, self.num_heads, 3, head_dim) + b_qkv
    y = dot_product_attention(qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2], self.attention_impl)
    y = y.reshape(batch * length, width) @ w_out.reshape(width, width) + b_out
    return y.reshape(batch, length, width)


class MlpBlock(nn.Module):
  """Two-layer MLP with exact GELU, `[..., D] -> [..., D]`."""
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1", kernel_init=_dense_init(("embed", "mlp")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(x)
    h = nn.gelu(h, approximate=False)
    return nn.Dense(width, dtype=self.dtype, name="fc2", kernel_init=_dense_init(("mlp", "embed")),
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

  @nn.compact
  def __call__(self, x, train: bool = False, rate=None, key=None):
    rate = self.drop_path if rate is None else rate
    keys = (None, None) if key is None else tuple(jax.random.split(key))
    y = Attention(self.num_heads, self.dtype, self.attention_impl, name="attn")(layer_norm(self.dtype, "ln1")(x))
    x = x + drop_path(self, y, rate, train, keys[0])
    y = MlpBlock(self.mlp_dim, self.dtype, name="mlp")(layer_norm(self.dtype, "ln2")(x))
    x = x + drop_path(self, y, rate, train, keys[1])
    return _constrain(x)


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

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"model.remat={self.remat!r} is unknown; use one of {sorted(REMAT_POLICIES)}.")
    block = lambda **kw: Block(self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, **kw)
    rates = [self.drop_path * i / max(self.depth - 1, 1) for i in range(self.depth)]
    stochastic = train and self.drop_path > 0.0
    keys = jax.random.split(self.make_rng("dropout"), self.depth) if stochastic else None
    if self.is_initializing() or (self.remat == "none" and not self.scan):
      for i in range(self.depth):
        x = block(drop_path=rates[i], name=f"block{i}")(x, train, key=None if keys is None else keys[i])
    else:
      def apply(params, x, rate, key):
        return block().apply({"params": params}, x, train, rate, key)
      if self.remat != "none":
        apply = jax.checkpoint(apply, policy=REMAT_POLICIES[self.remat], prevent_cse=not self.scan)
      params = [nn.unbox(self.variables["params"][f"block{i}"]) for i in range(self.depth)]
      if self.scan:
        stacked = jax.tree.map(lambda *p: jnp.stack(p), *params)
        x, _ = jax.lax.scan(lambda x, xs: (apply(xs[0], x, xs[1] if stochastic else None, xs[2]), None), x,
                            (stacked, jnp.asarray(rates, jnp.float32), keys))
      else:
        for i in range(self.depth):
          x = apply(params[i], x, rates[i] if stochastic else None, None if keys is None else keys[i])
    return layer_norm(self.dtype, "norm")(x) if self.final_norm else x


class ViT(nn.Module):
  """ViT encoder returning normalised tokens `[B, 1 + K, width]` ([CLS] first).

  Attributes:
    patch_size, width, depth, num_heads, mlp_dim: the architecture (see `parse_variant`).
    posemb: "sincos2d" (fixed, MAE / MoCo v3) or "learn" (N(0, 0.02) initialised).
    dtype: compute dtype (e.g. bfloat16); parameters stay float32.
    attention_impl: one of `ATTENTION_IMPLS` ("einsum", "xla", "cudnn"), or None to pick (see
      `dot_product_attention`).
    drop_path: stochastic-depth rate of the last block (linear from 0 over the blocks; active with `train`).
    final_norm: end with the final LayerNorm (False: MAE/timm global-pool fine-tuning, which normalises the pooled
      tokens with a fresh `fc_norm` instead).
    remat, scan: memory and compile-time options of the blocks (see `Transformer`); the same parameters and results.
  """
  patch_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  posemb: str = "sincos2d"
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  drop_path: float = 0.0
  final_norm: bool = True
  remat: str = "none"
  scan: bool = False

  def grid(self, images_shape):
    _, h, w, _ = images_shape
    return h // self.patch_size, w // self.patch_size

  @nn.compact
  def __call__(self, images, keep_ids=None, train: bool = False):
    """Encodes images, optionally keeping only some patches (MAE).

    Args:
      images: `[B, H, W, C]` float, already normalised.
      keep_ids: optional `[B, K]` int32 indices of the patches to encode (position embeddings are added before the
        patches are dropped, as in MAE). None encodes all `T = (H/p)(W/p)` patches.
      train: apply stochastic depth (needs a "dropout" rng when `drop_path` > 0).

    Returns:
      `[B, 1 + K, width]` (K = T without `keep_ids`) after the final LayerNorm (if `final_norm`).
    """
    gh, gw = self.grid(images.shape)
    x = masking.patchify(images, self.patch_size).astype(self.dtype)
    x = nn.Dense(self.width, dtype=self.dtype, name="embedding", kernel_init=_dense_init(("patch", "embed")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(x)
    if self.posemb == "sincos2d":
      pos = jnp.asarray(sincos_2d(self.width, gh, gw))[None]
    elif self.posemb == "learn":
      pos = self.param("pos_embedding", nn.with_logical_partitioning(
          nn.initializers.normal(0.02), (None, "length", "embed")), (1, gh * gw, self.width))
    else:
      raise ValueError(f"unknown posemb {self.posemb!r}: use 'sincos2d' or 'learn'.")
    x = x + pos.astype(self.dtype)
    if keep_ids is not None:
      x = masking.gather_tokens(x, keep_ids)
    # The [CLS] token carries no position embedding (MAE adds a zero one).
    cls = self.param("cls", nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, None, "embed")),
                     (1, 1, self.width))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, self.width)), x], axis=1)
    x = _constrain(x)
    return Transformer(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, self.drop_path,
                       self.final_norm, self.remat, self.scan, name="encoder")(x, train)


class MAEDecoder(nn.Module):
  """MAE decoder: visible encoder tokens + mask tokens -> pixels of every patch.

  Attributes:
    width, depth, num_heads, mlp_dim: decoder transformer (MAE: 512 wide, 8 blocks, 16 heads, mlp 2048).
    patch_dim: outputs per patch, `patch_size**2 * channels`.
    grid: (grid_h, grid_w) of the full patch grid.
  """
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch_dim: int
  grid: tuple[int, int]
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  remat: str = "none"
  scan: bool = False

  @nn.compact
  def __call__(self, tokens, ids_restore):
    """Decodes.

    Args:
      tokens: `[B, 1 + K, D_enc]` encoder output ([CLS] first).
      ids_restore: `[B, T]` from `ssl_jax.masking.random_masking`.

    Returns:
      `[B, T, patch_dim]` predicted pixels of every patch, in the original patch order, float32.
    """
    b, t = ids_restore.shape
    x = nn.Dense(self.width, dtype=self.dtype, name="embed", kernel_init=_dense_init((None, "embed")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(tokens)
    mask_token = self.param("mask_token", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), (None, None, "embed")), (1, 1, self.width))
    visible = x[:, 1:]
    filler = jnp.broadcast_to(mask_token.astype(x.dtype), (b, t - visible.shape[1], self.width))
    x_ = masking.gather_tokens(jnp.concatenate([visible, filler], axis=1), ids_restore)
    x = jnp.concatenate([x[:, :1], x_], axis=1)
    pos = sincos_2d(self.width, *self.grid)
    pos = np.concatenate([np.zeros((1, self.width), np.float32), pos])[None]
    x = _constrain(x + jnp.asarray(pos, self.dtype))
    x = Transformer(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, remat=self.remat,
                    scan=self.scan, name="decoder")(x)
    x = nn.Dense(self.patch_dim, dtype=self.dtype, name="pred", kernel_init=_dense_init(("embed", "patch")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("patch",)))(x)
    return x[:, 1:].astype(jnp.float32)


def vit_kwargs(*, variant: str | None = None, patch_size: int | None = None, width: int | None = None,
               depth: int | None = None, num_heads: int | None = None, mlp_dim: int | None = None,
               posemb: str | None = "sincos2d", dtype: str | None = "float32", attention_impl: str | None = None,
               drop_path: float | None = 0.0, remat: str | None = "none", scan: bool | None = False) -> dict[str, Any]:
  """ViT keyword arguments from a named variant ("B/16") with optional explicit overrides of its sizes.

  None (an unset config placeholder) means the default for `posemb` ("sincos2d"), `dtype` ("float32"),
  `drop_path` (0), `remat` ("none") and `scan` (False).
  """
  posemb, dtype, drop_path = posemb or "sincos2d", dtype or "float32", drop_path or 0.0
  remat, scan = remat or "none", bool(scan)
  if attention_impl is not None and attention_impl not in ATTENTION_IMPLS:
    raise ValueError(f"model.attention_impl={attention_impl!r} is unknown; use one of {ATTENTION_IMPLS} or leave it "
                     "unset (cuDNN on recent NVIDIA GPUs in half precision, 'einsum' elsewhere).")
  if remat not in REMAT_POLICIES:
    raise ValueError(f"model.remat={remat!r} is unknown; use one of {sorted(REMAT_POLICIES)}.")
  size = dict(patch_size=patch_size, width=width, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim)
  if variant:
    base = dataclasses.asdict(parse_variant(variant))
    size = {k: base[k] if v is None else v for k, v in size.items()}
  missing = [k for k, v in size.items() if v is None]
  if missing:
    raise ValueError(f"model: set `variant` (e.g. 'B/16') or all of {missing}.")
  if not 0.0 <= drop_path < 1.0:
    raise ValueError(f"model.drop_path must be in [0, 1), got {drop_path}.")
  return dict(size, posemb=posemb, dtype=jnp.dtype(dtype), attention_impl=attention_impl, drop_path=drop_path,
              remat=remat, scan=scan)

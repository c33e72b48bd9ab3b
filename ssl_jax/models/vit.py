"""Vision Transformer (Dosovitskiy et al. 2021) with MAE token dropping, BEiT's relative position bias (Bao et al.
2022), the MAE decoder (He et al. 2022) and the I-JEPA predictor (Assran et al. 2023).

The pre-LayerNorm stack of `ssl_jax.models.transformer` (attention by `ssl_jax.models.attention`: cuDNN flash
attention on recent NVIDIA GPUs in half precision, elsewhere plain XLA ops with FlashAttention's backward pass), a
[CLS] token (optional: I-JEPA's encoders have none), fixed 2-D sin-cos, learned or no absolute position embeddings,
and optionally one relative position bias table shared by all blocks (BEiT's and data2vec's pretraining), a
LayerNorm before the blocks (`pre_norm`: CLIP's `ln_pre`), tanh GELU (`tanh_gelu`: SigLIP's), and multi-head attention
pooling (`MAPHead`: SigLIP's image pooling).
Initialisation follows the official MAE code by default: Xavier-uniform for every linear map (the patch embedding
included, on its flattened kernel), zero biases, N(0, 0.02) for the [CLS] and mask tokens; `init_std` gives every
linear map N(0, init_std) instead (I-JEPA: 0.02 truncated at +-2 absolute, i.e. never), `init_truncation` truncates
those normals and the tokens' (BEiT, data2vec: at +-1 std) and `depth_scaled_init` divides block i's output
projections by sqrt(2 i) (BEiT, data2vec).

Parameters carry logical axis names (`embed`, `mlp`, `heads`, `kv`, `patch`) that `ssl_jax.sharding` maps to mesh
axes; activations are constrained to (`batch`, `length`, `embed`) between blocks.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ssl_jax import masking
from ssl_jax.models.attention import ATTENTION_IMPLS
from ssl_jax.models.transformer import REMAT_POLICIES
from ssl_jax.models.transformer import BlockStyle
from ssl_jax.models.transformer import MlpBlock
from ssl_jax.models.transformer import Transformer
from ssl_jax.models.transformer import constrain_tokens
from ssl_jax.models.transformer import dense_init
from ssl_jax.models.transformer import layer_norm

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


def relative_position_index(grid: tuple[int, int], class_token: bool = True) -> tuple[np.ndarray, int]:
  """BEiT's relative position index (`RelativePositionBias.relative_position_index`) over a `grid` of patches.

  Patches i, j at (h_i, w_i), (h_j, w_j) share the table row `(h_i - h_j + H - 1) (2 W - 1) + (w_i - w_j + W - 1)`;
  with the [CLS] token (first), three more rows: [CLS] to a patch, a patch to [CLS], [CLS] to itself.

  Returns:
    `[P + T, P + T]` int32 row indices (P = 1 with the [CLS] token, else 0) and the table's number of rows,
    `(2 H - 1) (2 W - 1) (+ 3)`.
  """
  h, w = grid
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  rows, cols = rows.reshape(-1), cols.reshape(-1)
  index = (rows[:, None] - rows[None, :] + h - 1) * (2 * w - 1) + (cols[:, None] - cols[None, :] + w - 1)
  size = (2 * h - 1) * (2 * w - 1)
  if not class_token:
    return index.astype(np.int32), size
  full = np.empty((h * w + 1,) * 2, np.int64)
  full[1:, 1:] = index
  full[0, :], full[:, 0], full[0, 0] = size, size + 1, size + 2
  return full.astype(np.int32), size + 3


class RelativePositionBias(nn.Module):
  """A learned relative position bias (BEiT, Bao et al. 2022, after Raffel et al. 2020 and Swin): a table of one
  value per head and relative offset, zero-initialised as BEiT, read at `relative_position_index`.

  Returns `[heads, P + T, P + T]` float32, for every block's attention logits.
  """
  grid: tuple[int, int]
  num_heads: int
  class_token: bool = True

  @nn.compact
  def __call__(self):
    index, size = relative_position_index(self.grid, self.class_token)
    table = self.param("relative_position_bias_table", nn.with_logical_partitioning(
        nn.initializers.zeros, (None, "heads")), (size, self.num_heads))
    return jnp.transpose(table[jnp.asarray(index)], (2, 0, 1))


class ViT(nn.Module):
  """ViT encoder returning normalised tokens `[B, 1 + K, width]` ([CLS] first).

  Attributes:
    patch_size, width, depth, num_heads, mlp_dim: the architecture (see `parse_variant`).
    posemb: "sincos2d" (fixed, MAE / MoCo v3), "learn" (N(0, 0.02) initialised) or "none" (BEiT's and data2vec's
      pretraining, with `relative_position_bias`).
    dtype: compute dtype (e.g. bfloat16); parameters stay float32.
    attention_impl: one of `ATTENTION_IMPLS` ("einsum", "xla", "cudnn"), or None to pick (see
      `dot_product_attention`).
    drop_path: stochastic-depth rate of the last block (linear from 0 over the blocks; active with `train`).
    drop_path_uniform: every block at rate `drop_path` instead (DINOv2).
    final_norm: end with the final LayerNorm (False: MAE/timm global-pool fine-tuning, which normalises the pooled
      tokens with a fresh `fc_norm` instead).
    remat, scan: memory and compile-time options of the blocks (see `Transformer`); the same parameters and results.
    class_token: prepend a learned [CLS] token (False: I-JEPA's encoders, pooled by the mean of the tokens).
    layer_scale: None, or LayerScale's initial value in every block (`transformer.BlockStyle.layer_scale`).
    mask_token: a learned [MASK] embedding that `__call__(mask=...)` puts in place of masked patches' embeddings
      (BEiT, data2vec, iBOT: the encoder sees every position).
    init_std: None: Xavier-uniform linear maps (MAE); else N(0, init_std) for the patch embedding and every linear
      map of the blocks (I-JEPA, BEiT, data2vec: 0.02).
    init_truncation: truncate those normals, and the [CLS] and [MASK] tokens' N(0, 0.02), at +-`init_truncation`
      std (BEiT, data2vec: 1; `transformer.BlockStyle`).
    depth_scaled_init: divide block i's output projections by sqrt(2 i) at initialisation (BEiT, data2vec).
    relative_position_bias: one learned relative position bias table shared by all blocks (`RelativePositionBias`;
      BEiT's and data2vec's `use_shared_rel_pos_bias`). It is defined on the full grid, so patches cannot be dropped
      (`keep_ids`); masking uses `mask_token`.
    pre_norm: a LayerNorm of the tokens ([CLS] included) before the first block (CLIP's `ln_pre`).
    tanh_gelu: the blocks' GELU in its tanh form (SigLIP, big_vision's default) instead of the exact one.
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
  class_token: bool = True
  init_std: float | None = None
  layer_scale: float | None = None
  mask_token: bool = False
  init_truncation: float | None = None
  depth_scaled_init: bool = False
  relative_position_bias: bool = False
  drop_path_uniform: bool = False
  pre_norm: bool = False
  tanh_gelu: bool = False

  def grid(self, images_shape):
    _, h, w, _ = images_shape
    return h // self.patch_size, w // self.patch_size

  @nn.compact
  def __call__(self, images, keep_ids=None, train: bool = False, return_layers: bool = False, keep_valid=None,
               mask=None):
    """Encodes images, optionally keeping only some patches (MAE, I-JEPA's context).

    Args:
      images: `[B, H, W, C]` float, already normalised.
      keep_ids: optional `[B, K]` int32 indices of the patches to encode (position embeddings are added before the
        patches are dropped, as in MAE). None encodes all `T = (H/p)(W/p)` patches.
      train: apply stochastic depth (needs a "dropout" rng when `drop_path` > 0).
      return_layers: also return every block's output (`Transformer`'s `return_layers`).
      keep_valid: optional `[B, K]` bool beside `keep_ids`: False marks padding slots (a static capacity larger than
        an example's count), which no valid token attends to; their outputs are meaningless.
      mask: optional `[B, T]` bool (needs `mask_token`): the patches whose embedding is replaced by the [MASK]
        embedding before the position embedding is added (BEiT's `x * (1 - w) + mask_token * w`).

    Returns:
      `[B, P + K, width]` (P = 1 with the [CLS] token, first, else 0; K = T without `keep_ids`) after the final
      LayerNorm (if `final_norm`); with `return_layers` a tuple of it and the `[depth, B, P + K, width]` block
      outputs (before the final LayerNorm).
    """
    gh, gw = self.grid(images.shape)
    x = masking.patchify(images, self.patch_size).astype(self.dtype)
    style = BlockStyle(init_std=self.init_std, layer_scale=self.layer_scale, init_truncation=self.init_truncation,
                       depth_scaled_init=self.depth_scaled_init, tanh_gelu=self.tanh_gelu)
    x = nn.Dense(self.width, dtype=self.dtype, name="embedding", kernel_init=style.kernel_init(("patch", "embed")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(x)
    if self.mask_token:
      token = self.param("mask_token", nn.with_logical_partitioning(style.normal(0.02), (None, None, "embed")),
                         (1, 1, self.width))
      if mask is not None:
        x = jnp.where(mask[..., None], token.astype(self.dtype), x)
    elif mask is not None:
      raise ValueError("ViT(mask=...) needs mask_token=True (a learned [MASK] embedding).")
    if self.posemb == "sincos2d":
      pos = jnp.asarray(sincos_2d(self.width, gh, gw))[None]
    elif self.posemb == "learn":
      pos = self.param("pos_embedding", nn.with_logical_partitioning(
          nn.initializers.normal(0.02), (None, "length", "embed")), (1, gh * gw, self.width))
    elif self.posemb == "none":
      pos = jnp.zeros((), self.dtype)
    else:
      raise ValueError(f"unknown posemb {self.posemb!r}: use 'sincos2d', 'learn' or 'none'.")
    x = x + pos.astype(self.dtype)
    bias = None
    if self.relative_position_bias:
      if keep_ids is not None:
        raise ValueError("ViT(keep_ids=...) drops patches, which a relative position bias over the full grid does "
                         "not support: mask with mask_token=True and ViT(mask=...) instead.")
      bias = RelativePositionBias((gh, gw), self.num_heads, self.class_token, name="rel_pos_bias")()
    if keep_ids is not None:
      x = masking.gather_tokens(x, keep_ids)
    segment_ids = None if keep_valid is None else keep_valid.astype(jnp.int32)
    if self.class_token:
      # The [CLS] token carries no position embedding (MAE adds a zero one).
      cls = self.param("cls", nn.with_logical_partitioning(style.normal(0.02), (None, None, "embed")),
                       (1, 1, self.width))
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, self.width)), x], axis=1)
      if segment_ids is not None:
        segment_ids = jnp.pad(segment_ids, ((0, 0), (1, 0)), constant_values=1)
    if self.pre_norm:
      x = layer_norm(self.dtype, "pre_norm")(x)
    x = constrain_tokens(x)
    return Transformer(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, self.drop_path,
                       self.final_norm, self.remat, self.scan, style=style, drop_path_uniform=self.drop_path_uniform,
                       name="encoder")(x, train, segment_ids=segment_ids, return_layers=return_layers, bias=bias)


class MAPHead(nn.Module):
  """Multi-head attention pooling (Lee et al. 2019, "Set Transformer"'s PMA; big_vision's `MAPHead`, SigLIP's image
  pooling): a learned probe token attends to the tokens, then a residual MLP block on the LayerNormed result:
  `[B, T, D] -> float32 [B, D]`. Xavier-uniform maps with zero biases, as big_vision's; the MLP's GELU as the
  encoder's (`tanh_gelu`)."""
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  tanh_gelu: bool = False

  @nn.compact
  def __call__(self, x):
    b, _, d = x.shape
    h = d // self.num_heads
    probe = self.param("probe", nn.with_logical_partitioning(nn.initializers.xavier_uniform(), (None, None, "embed")),
                       (1, 1, d))
    xavier = nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2))
    param = lambda name, init, names, shape: self.param(name, nn.with_logical_partitioning(init, names), shape)

    def proj(name, inputs):
      kernel = param(f"{name}_kernel", xavier, ("embed", "heads", "kv"), (d, self.num_heads, h))
      bias = param(f"{name}_bias", nn.initializers.zeros, ("heads", "kv"), (self.num_heads, h))
      return jnp.einsum("btd,dnh->btnh", inputs.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)
    q = proj("query", jnp.broadcast_to(probe, (b, 1, d)))
    k, v = proj("key", x), proj("value", x)
    logits = jnp.einsum("bqnh,bknh->bnqk", q, k, preferred_element_type=jnp.float32) / np.sqrt(h)
    weights = nn.softmax(logits, axis=-1).astype(self.dtype)
    o = jnp.einsum("bnqk,bknh->bqnh", weights, v)
    out_kernel = param("out_kernel", nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2),
                       ("heads", "kv", "embed"), (self.num_heads, h, d))
    out_bias = param("out_bias", nn.initializers.zeros, ("embed",), (d,))
    y = jnp.einsum("bqnh,nhd->bqd", o, out_kernel.astype(self.dtype)) + out_bias.astype(self.dtype)
    y = y + MlpBlock(self.mlp_dim, self.dtype, BlockStyle(tanh_gelu=self.tanh_gelu), name="mlp")(
        layer_norm(self.dtype, "norm")(y))
    return y[:, 0].astype(jnp.float32)


class MaskedImageModel(nn.Module):
  """BEiT's and data2vec's student: a ViT that sees the [MASK] embedding at the masked patches (`ViT(mask=...)`),
  and a linear head (`lm_head`) on its final tokens at the masked patches.

  Attributes:
    encoder: `ViT` keywords (`vit_kwargs`; needs `mask_token`).
    out_dim: the head's outputs (BEiT: the tokenizer's vocabulary; data2vec: the width). The head is initialised as
      the encoder's linear maps (BEiT, data2vec: truncated normal 0.02), with a zero bias.
  """
  encoder: dict
  out_dim: int

  @nn.compact
  def __call__(self, images, mask, masked_ids, train: bool = False):
    """`images` `[B, H, W, 3]`, `mask` `[B, T]` bool, `masked_ids` `[B, K]` -> the head's outputs `[B, K, out_dim]`
    (float32) at the patches `masked_ids`."""
    enc = self.encoder
    tokens = ViT(**enc, name="encoder")(images, train=train, mask=mask)
    patches = masking.gather_tokens(tokens[:, int(enc["class_token"]):], masked_ids)
    style = BlockStyle(init_std=enc["init_std"], init_truncation=enc["init_truncation"])
    head = nn.Dense(self.out_dim, dtype=enc["dtype"], name="lm_head", kernel_init=style.kernel_init(("embed", "mlp")),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))
    return head(patches).astype(jnp.float32)


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
    x = nn.Dense(self.width, dtype=self.dtype, name="embed", kernel_init=dense_init((None, "embed")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(tokens)
    mask_token = self.param("mask_token", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), (None, None, "embed")), (1, 1, self.width))
    visible = x[:, 1:]
    filler = jnp.broadcast_to(mask_token.astype(x.dtype), (b, t - visible.shape[1], self.width))
    x_ = masking.gather_tokens(jnp.concatenate([visible, filler], axis=1), ids_restore)
    x = jnp.concatenate([x[:, :1], x_], axis=1)
    pos = sincos_2d(self.width, *self.grid)
    pos = np.concatenate([np.zeros((1, self.width), np.float32), pos])[None]
    x = constrain_tokens(x + jnp.asarray(pos, self.dtype))
    x = Transformer(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, remat=self.remat,
                    scan=self.scan, name="decoder")(x)
    x = nn.Dense(self.patch_dim, dtype=self.dtype, name="pred", kernel_init=dense_init(("embed", "patch")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("patch",)))(x)
    return x[:, 1:].astype(jnp.float32)


class JEPAPredictor(nn.Module):
  """I-JEPA's narrow predictor (the official `VisionTransformerPredictor`): context tokens + mask tokens at the
  positions of one target block -> predicted target-encoder features of that block.

  The context tokens are mapped to the predictor's width and get the predictor's own fixed sin-cos position
  embedding of their patches; each target block is predicted separately from its own copy of the context (the
  official code repeats the context once per target), its tokens being a shared learned mask token plus the position
  embedding of each target patch. After the blocks and a LayerNorm, the target tokens are projected back to the
  encoder's width.

  Attributes:
    width, depth, num_heads, mlp_dim: the predictor (I-JEPA ViT-H/14: 384 wide, 12 blocks, 16 heads, mlp 1536).
    out_dim: the encoder's width.
    grid: (H, W) patch grid.
    init_std: N(0, init_std) linear maps and mask token (I-JEPA: 0.02; None: Xavier-uniform).
  """
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  out_dim: int
  grid: tuple[int, int]
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  init_std: float | None = 0.02
  drop_path: float = 0.0
  remat: str = "none"
  scan: bool = False

  @nn.compact
  def __call__(self, context, context_ids, context_valid, target_ids, target_valid, train: bool = False):
    """Predicts.

    Args:
      context: `[B, Kc, D_enc]` the context encoder's output tokens (no [CLS]).
      context_ids, context_valid: `[B, Kc]` their patch indices and validity (False: padding).
      target_ids, target_valid: `[B, M, Kt]` the patch indices of each of M target blocks and their validity.
      train: stochastic depth.

    Returns:
      `[B, M, Kt, out_dim]` float32 predictions (meaningless where `target_valid` is False).
    """
    b, m, kt = target_ids.shape
    kc = context.shape[1]
    style = BlockStyle(init_std=self.init_std)
    pos = jnp.asarray(sincos_2d(self.width, *self.grid), self.dtype)                     # [T, W]
    x = nn.Dense(self.width, dtype=self.dtype, name="embed", kernel_init=style.kernel_init(("embed", "mlp")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(context)
    x = x + pos[context_ids]
    mask_token = self.param("mask_token", nn.with_logical_partitioning(
        nn.initializers.normal(self.init_std or 0.02), (None, None, "embed")), (1, 1, self.width))
    queries = mask_token.astype(self.dtype)[None] + pos[target_ids]                      # [B, M, Kt, W]
    x = jnp.broadcast_to(x[:, None], (b, m, kc, self.width))
    x = jnp.concatenate([x, queries], axis=2).reshape(b * m, kc + kt, self.width)     # example-major copies
    valid = jnp.concatenate([jnp.broadcast_to(context_valid[:, None], (b, m, kc)), target_valid], axis=2)
    x = Transformer(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, self.drop_path,
                    remat=self.remat, scan=self.scan, style=style, name="predictor")(
                        constrain_tokens(x), train, segment_ids=valid.reshape(b * m, kc + kt).astype(jnp.int32))
    x = nn.Dense(self.out_dim, dtype=self.dtype, name="proj", kernel_init=style.kernel_init(("mlp", "embed")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(x[:, kc:])
    return x.reshape(b, m, kt, self.out_dim).astype(jnp.float32)


def vit_kwargs(*, variant: str | None = None, patch_size: int | None = None, width: int | None = None,
               depth: int | None = None, num_heads: int | None = None, mlp_dim: int | None = None,
               posemb: str | None = "sincos2d", dtype: str | None = "float32", attention_impl: str | None = None,
               drop_path: float | None = 0.0, remat: str | None = "none", scan: bool | None = False,
               class_token: bool | None = True, init_std: float | None = None, layer_scale: float | None = None,
               mask_token: bool | None = False, init_truncation: float | None = None,
               depth_scaled_init: bool | None = False, relative_position_bias: bool | None = False,
               drop_path_uniform: bool | None = False, pre_norm: bool | None = False,
               tanh_gelu: bool | None = False) -> dict[str, Any]:
  """ViT keyword arguments from a named variant ("B/16") with optional explicit overrides of its sizes.

  None (an unset config placeholder) means the default for `posemb` ("sincos2d"), `dtype` ("float32"),
  `drop_path` (0), `remat` ("none"), `scan` (False), `class_token` (True), `init_std` (Xavier-uniform),
  `layer_scale` (none), `mask_token`, `depth_scaled_init`, `relative_position_bias`, `drop_path_uniform`, `pre_norm`
  and `tanh_gelu` (False) and `init_truncation` (none).
  """
  posemb, dtype, drop_path = posemb or "sincos2d", dtype or "float32", drop_path or 0.0
  class_token = True if class_token is None else bool(class_token)
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
  if posemb not in ("sincos2d", "learn", "none"):
    raise ValueError(f"model.posemb={posemb!r} is unknown; use 'sincos2d', 'learn' or 'none'.")
  if (init_truncation is not None or depth_scaled_init) and init_std is None:
    raise ValueError("model.init_truncation and model.depth_scaled_init shape a normal initialisation: set "
                     "model.init_std (BEiT, data2vec: 0.02).")
  return dict(size, posemb=posemb, dtype=jnp.dtype(dtype), attention_impl=attention_impl, drop_path=drop_path,
              remat=remat, scan=scan, class_token=class_token, init_std=init_std, layer_scale=layer_scale,
              mask_token=bool(mask_token), init_truncation=init_truncation, depth_scaled_init=bool(depth_scaled_init),
              relative_position_bias=bool(relative_position_bias), drop_path_uniform=bool(drop_path_uniform),
              pre_norm=bool(pre_norm), tanh_gelu=bool(tanh_gelu))

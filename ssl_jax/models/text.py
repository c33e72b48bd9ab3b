"""Text transformers on the shared stack (`ssl_jax.models.transformer`): GPT-2, BERT, and the text towers of CLIP and
SigLIP.

- GPT-2 (Radford et al. 2019; `style="gpt2"`): token + learned position embeddings, pre-LayerNorm blocks (eps 1e-5,
  tanh GELU, N(0, 0.02) weights, residual projections N(0, 0.02 / sqrt(2 depth))), causal attention, a final
  LayerNorm, and the output layer tied to the token embedding (no bias).
- BERT (Devlin et al. 2019; `style="bert"`): token + learned position (+ token type) embeddings followed by a
  LayerNorm (eps 1e-12), post-LayerNorm blocks with exact GELU and hidden dropout, no final LayerNorm; the masked-LM
  head is a dense layer, GELU and LayerNorm, then the output layer tied to the token embedding with a bias of its
  own.

- CLIP's text tower (Radford et al. 2021; `style="clip"`): GPT-2's pre-LayerNorm causal stack with a final
  LayerNorm, pooled at the end-of-text token (the last token of the caption); exact GELU as open_clip's own models
  (OpenAI's released ones use QuickGELU) and GPT-2's initialisation (OpenAI's scales its attention by the width).
- SigLIP's text tower (Zhai et al. 2023, big_vision's `text_transformer`; `style="siglip"`): a pre-LayerNorm
  bidirectional stack (eps 1e-6, tanh GELU, Xavier-uniform weights) with a final LayerNorm, attending to the whole
  padded window as big_vision does (no padding mask: captions are padded with the end-of-text token, "sticky EOS"),
  pooled at the last position.

Attention is bidirectional for BERT and SigLIP and causal for GPT-2 and CLIP, and except in SigLIP restricted to a
token's own segment when `segment_ids` are given (packed documents never see each other); `positions` restart at each
segment (`ssl_jax.data.text.TokenWindows`). Parameters carry logical axis names: the embedding is `("vocab", "embed")`,
so the vocabulary splits over the tensor-parallel axis and the width over FSDP, as the blocks' weights do. Deviations:
attention probabilities are not dropped out (hidden and embedding dropout are); the q/k/v projection is one fused kernel
(as GPT-2's `c_attn`; BERT has three, which `ssl_jax.convert` splits).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models import transformer

STYLES = ("gpt2", "bert", "clip", "siglip")
# How each style pools its hidden states into one vector (`TextTransformer.pool`'s default).
POOLS = {"gpt2": "mean", "bert": "mean", "clip": "eot", "siglip": "last"}


def block_style(style: str, depth: int, dropout: float = 0.0) -> transformer.BlockStyle:
  """The `transformer.BlockStyle` of GPT-2, BERT, CLIP's or SigLIP's text tower."""
  if style in ("gpt2", "clip"):
    return transformer.BlockStyle(eps=1e-5, tanh_gelu=style == "gpt2", init_std=0.02,
                                  out_init_std=0.02 / (2 * depth) ** 0.5, dropout=dropout)
  if style == "bert":
    return transformer.BlockStyle(post_norm=True, eps=1e-12, init_std=0.02, dropout=dropout)
  if style == "siglip":
    return transformer.BlockStyle(eps=1e-6, tanh_gelu=True, dropout=dropout)
  raise ValueError(f"model.style={style!r} is unknown; use one of {STYLES}.")


class TextTransformer(nn.Module):
  """GPT-2, BERT or a CLIP / SigLIP text tower: token ids `[B, T]` -> `{"pooled": float32 [B, D], "tokens": [B, T,
  D]}` (+ `"layers"`), and `logits(tokens)` -> `[B, T, vocab_size]` float32 through the tied output layer (GPT-2,
  BERT).

  Attributes:
    vocab_size, max_length: the vocabulary and the number of learned positions.
    width, depth, num_heads, mlp_dim: the stack (GPT-2 small and BERT-base: 768, 12, 12, 3072).
    style: "gpt2", "bert", "clip" or "siglip" (module docstring).
    pool: how `pooled` is made: "mean" over the first segment (GPT-2's and BERT's default), "eot" the last token of
      the first segment (CLIP's end-of-text token), "last" the window's last position (SigLIP), "first" its first;
      None: the style's (`POOLS`).
    type_vocab_size: BERT's token types (segment A/B embeddings); 0: none.
    dropout: embedding and hidden dropout (BERT and GPT-2: 0.1; nanoGPT pretrains GPT-2 with 0).
    dtype, attention_impl, remat, scan: as the ViT's (`transformer.Transformer`).
    decode: GPT-2 generation with a key/value cache (`ssl_jax.sample`): calls append their tokens to the cache of
      the "cache" collection, with `positions` given; the parameters are the same.
  """
  vocab_size: int
  max_length: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  style: str = "gpt2"
  pool: str | None = None
  type_vocab_size: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  remat: str = "none"
  scan: bool = False
  decode: bool = False

  @property
  def num_features(self) -> int:
    return self.width

  def setup(self):
    st = block_style(self.style, self.depth, self.dropout)
    embed = lambda std: nn.with_logical_partitioning(nn.initializers.normal(std), ("vocab", "embed"))
    self.token_embedding = self.param("token_embedding", embed(0.02), (self.vocab_size, self.width))
    posemb_std = {"gpt2": 0.01, "clip": 0.01, "bert": 0.02, "siglip": self.width ** -0.5}[self.style]
    self.position_embedding = self.param("position_embedding", nn.with_logical_partitioning(
        nn.initializers.normal(posemb_std), ("length", "embed")),
        (self.max_length, self.width))
    if self.type_vocab_size:
      self.type_embedding = self.param("type_embedding", nn.with_logical_partitioning(
          nn.initializers.normal(0.02), (None, "embed")), (self.type_vocab_size, self.width))
    if self.style == "bert":
      self.embedding_norm = transformer.layer_norm(self.dtype, eps=st.eps)
      self.mlm_dense = nn.Dense(self.width, dtype=self.dtype, kernel_init=st.kernel_init(("embed", "mlp")),
                                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))
      self.mlm_norm = transformer.layer_norm(self.dtype, eps=st.eps)
      self.mlm_bias = self.param("mlm_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                                 (self.vocab_size,))
    self.encoder = transformer.Transformer(
        self.depth, self.num_heads, self.mlp_dim, self.dtype, self.attention_impl, final_norm=self.style != "bert",
        remat=self.remat, scan=self.scan, causal=self.style in ("gpt2", "clip"), style=st, decode=self.decode)

  def __call__(self, tokens: jax.Array, *, positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
               token_types: jax.Array | None = None, train: bool = False, return_layers: bool = False) -> dict:
    """Encodes `tokens` `[B, T]` int.

    Args:
      positions: `[B, T]` int, each token's position in its document piece; default `0..T-1`.
      segment_ids: `[B, T]` int: attention within a segment only (except SigLIP's, which attends to the whole
        window); the pooled feature is made from segment 1 (the first document of a window or the caption; padding is
        segment 0).
      token_types: `[B, T]` int, BERT's sentence A/B ids (with `type_vocab_size`).
      train: apply dropout (needs a "dropout" rng when `dropout` > 0).
      return_layers: also return every block's output, `[depth, B, T, D]`.

    Returns:
      `{"pooled": float32 [B, D], "tokens": [B, T, D]}` (+ `"layers"`): the final hidden states and their pool
      (`pool`; the whole window is the first segment without `segment_ids`).
    """
    pool = self.pool or POOLS.get(self.style, "mean")
    if pool not in ("mean", "eot", "last", "first"):
      raise ValueError(f"model.pool={pool!r} is unknown for a text transformer; use 'mean', 'eot', 'last' or 'first'.")
    b, t = tokens.shape
    if t > self.max_length:
      raise ValueError(f"a window of {t} tokens is longer than the model's {self.max_length} positions.")
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t), (b, t))
    # A lookup reads whole rows of a table: each table is gathered whole first (as FSDP gathers any parameter for
    # its use), so that the rows come out sharded like the tokens, instead of XLA rematerialising them across the mesh.
    whole = lambda table: nn.with_logical_constraint(table, (None, None))
    x = (jnp.take(whole(self.token_embedding), tokens, axis=0)
         + jnp.take(whole(self.position_embedding), positions, axis=0))
    if self.type_vocab_size:
      types = jnp.zeros_like(tokens) if token_types is None else token_types
      x = x + jnp.take(whole(self.type_embedding), types, axis=0)
    x = x.astype(self.dtype)
    if self.style == "bert":
      x = self.embedding_norm(x)
    x = transformer.dropout(self, x, self.dropout, train)
    masks = None if self.style == "siglip" else segment_ids
    out = self.encoder(transformer.constrain_tokens(x), train, masks, return_layers=return_layers)
    hidden, layers = out if return_layers else (out, None)
    if self.is_initializing() and self.style in ("gpt2", "bert"):
      self.logits(hidden[:, :1])             # creates the output head's parameters
    first = jnp.ones((b, t), jnp.float32) if segment_ids is None else (segment_ids == 1).astype(jnp.float32)
    if pool == "mean":
      pooled = jnp.einsum("btd,bt->bd", hidden.astype(jnp.float32), first) / jnp.maximum(
          first.sum(-1, keepdims=True), 1.0)
    else:
      index = {"eot": jnp.maximum(first.sum(-1).astype(jnp.int32) - 1, 0), "last": jnp.full((b,), t - 1),
               "first": jnp.zeros((b,), jnp.int32)}[pool]
      pooled = jnp.take_along_axis(hidden, index[:, None, None], axis=1)[:, 0].astype(jnp.float32)
    result = {"pooled": pooled, "tokens": hidden}
    return dict(result, layers=layers) if return_layers else result

  def logits(self, hidden: jax.Array) -> jax.Array:
    """`[..., D]` final hidden states -> `[..., vocab_size]` float32 logits through the tied output layer (BERT:
    after its masked-LM transform, plus its output bias)."""
    if self.style == "bert":
      hidden = self.mlm_norm(nn.gelu(self.mlm_dense(hidden), approximate=False))
    logits = jnp.einsum("...d,vd->...v", hidden.astype(self.dtype), self.token_embedding.astype(self.dtype),
                        preferred_element_type=jnp.float32)
    return logits + self.mlm_bias if self.style == "bert" else logits

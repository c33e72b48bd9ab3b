"""Multi-head dot-product attention: three implementations behind one function, and its masks.

`dot_product_attention(q, k, v, implementation=..., causal=..., segment_ids=..., bias=...)` computes
`softmax(q k^T / sqrt(head_dim) + bias + mask) v` over `[B, T, heads, head_dim]` q/k/v by

- "einsum": `einsum_attention`, plain XLA ops with FlashAttention's backward pass (CPUs, TPUs, float32 GPUs);
- "xla": `jax.nn.dot_product_attention`'s XLA implementation;
- "cudnn": its cuDNN flash attention (NVIDIA GPUs of compute capability >= 8.0, bfloat16/float16).

Masks: `causal=True` lets token t attend to tokens <= t only (GPT); `segment_ids` `[B, T]` int lets a token attend
only to tokens of its own segment, so that documents packed into one window never see each other (Grain's packing
convention: segment 0 is padding, which then attends only to padding). Both together give packed causal language
modelling. Every implementation computes the same masked softmax: masked logits are replaced by the float32 minimum
before the softmax, so their probabilities are exactly 0 and no row is empty (a token always sees itself).

An additive `bias` `[B or 1, heads, T, T]` (BEiT's and data2vec's relative position bias, `vit.RelativePositionBias`)
is learned: every implementation returns its gradient.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Values of `attention_impl` (None picks one: see `dot_product_attention`).
ATTENTION_IMPLS = ("einsum", "xla", "cudnn")


def attention_mask(*, length: int, causal: bool = False, segment_ids: jax.Array | None = None) -> jax.Array | None:
  """The boolean mask (True: may attend) of causal and/or segment-restricted self-attention over `length` tokens.

  Args:
    length: T, the number of tokens.
    causal: query t sees keys s <= t.
    segment_ids: optional `[B, T]` int; query t sees key s only when `segment_ids[b, t] == segment_ids[b, s]`.

  Returns:
    `[B or 1, 1, T, T]` bool (broadcastable over heads, as `jax.nn.dot_product_attention`'s `mask`), or None when
    every token sees every token.
  """
  mask = jnp.tril(jnp.ones((length, length), bool))[None, None] if causal else None
  if segment_ids is not None:
    if segment_ids.shape[-1] != length:
      raise ValueError(f"segment_ids {segment_ids.shape} do not match a sequence of {length} tokens.")
    same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    mask = same if mask is None else mask & same
  return mask


@jax.custom_vjp
def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                     bias: jax.Array | None = None) -> jax.Array:
  """`softmax(q k^T / sqrt(head_dim) + bias) v` over `[B, T, heads, head_dim]` q/k/v, with a hand-written backward.

  `mask`: optional bool `[B or 1, 1, T, S]` (`attention_mask`), True where a query may attend to a key; masked
  logits become the float32 minimum, so their probabilities are exactly zero (every row must keep one key).
  `bias`: optional float `[B or 1, heads or 1, T, S]` added to the scaled logits (in float32); it gets a gradient,
  summed over the dimensions it is broadcast along.

  The forward pass is the math of `jax.nn.dot_product_attention`'s XLA implementation (scores and softmax in float32,
  probabilities cast to the value dtype for the weighted sum). The backward pass is FlashAttention's (Dao et al. 2022,
  Alg. 2, untiled): with the probabilities `P` kept from the forward pass, `dV = P^T dY`, `dP = dY V^T`,
  `dS = P * (dP - rowsum(dY * Y))`, `dQ = dS K / sqrt(d)`, `dK = dS^T Q / sqrt(d)` — four matmuls and one
  element-wise pass over the `[B, heads, T, T]` scores, where autodiff of the softmax makes several; a mask needs
  nothing more (masked entries of P are zero, so are those of dS), and the bias's gradient is `dS` itself. MAE
  ViT-B's decoder attention (197 tokens, 16 heads of 32, batch 8) on the 2-core CPU: forward 24 -> 11 ms, forward +
  backward 57 -> 41 ms against jax's XLA implementation (`benchmarks/attention.py`).
  """
  return _einsum_attention_fwd(q, k, v, mask, bias)[0]


def _einsum_attention_fwd(q, k, v, mask, bias):
  # Heads-major [B, heads, T, head_dim] inside: XLA:CPU runs the batched matmuls several times faster in this layout
  # than on [B, T, heads, head_dim] operands (benchmarks/attention.py).
  q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
  logits = jnp.einsum("bhtd,bhsd->bhts", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  p = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  y = jnp.einsum("bhts,bhsd->bhtd", p, v)
  return y.transpose(0, 2, 1, 3), (q, k, v, p, y, bias)     # the bias for its shape and dtype


def _einsum_attention_bwd(residuals, dy):
  q, k, v, p, y, bias = residuals
  dy = dy.transpose(0, 2, 1, 3)
  dv = jnp.einsum("bhts,bhtd->bhsd", p, dy.astype(p.dtype))
  dp = jnp.einsum("bhtd,bhsd->bhts", dy, v, preferred_element_type=jnp.float32)
  # rowsum(P * dP) = rowsum(dY * Y), without another pass over the scores.
  delta = jnp.sum(dy.astype(jnp.float32) * y.astype(jnp.float32), axis=-1, keepdims=True)
  dlogits = p.astype(jnp.float32) * (dp - delta)
  dbias = None
  if bias is not None:                            # summed over the axes the bias is broadcast along
    axes = tuple(i for i, n in enumerate(bias.shape) if n == 1 and dlogits.shape[i] != 1)
    dbias = jnp.sum(dlogits, axis=axes, keepdims=True).astype(bias.dtype)
  ds = (dlogits * q.shape[-1] ** -0.5).astype(q.dtype)
  dq = jnp.einsum("bhts,bhsd->bhtd", ds, k)
  dk = jnp.einsum("bhts,bhtd->bhsd", ds, q)
  return (*(x.transpose(0, 2, 1, 3) for x in (dq, dk, dv)), None, dbias)     # the mask has no cotangent


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


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, implementation: str | None = None,
                          causal: bool = False, segment_ids: jax.Array | None = None,
                          bias: jax.Array | None = None, pad_to: int | None = None) -> jax.Array:
  """Self-attention over `[B, T, heads, head_dim]` q/k/v by one of `ATTENTION_IMPLS`, optionally masked.

  Args:
    q, k, v: `[B, T, heads, head_dim]`.
    implementation: "einsum", "xla", "cudnn" (see the module docstring), or None: "cudnn" where cuDNN can run it (an
      NVIDIA GPU of compute capability 8.0 or more, half precision) and "einsum" elsewhere (CPUs, TPUs, float32).
    causal: token t attends to tokens <= t only (cuDNN skips the masked blocks instead of masking them).
    segment_ids: optional `[B, T]` int: tokens attend within their segment only (cuDNN then takes the mask as a
      bias, which is slower than its causal mask but exact).
    bias: optional float `[heads, T, T]` or `[B, heads, T, T]` added to the scaled logits, with a gradient (cuDNN
      takes it in the compute dtype).
    pad_to: pad T to a multiple of this (below).

  Returns:
    `[B, T, heads, head_dim]`.

  JAX's cuDNN flash-attention gradient (jax <= 0.11) refuses odd sequence lengths ("Unsupported sequence length Q
  197, KV 197": its training path always counts a bias, and biased cuDNN attention needs even lengths), which every
  ViT with a [CLS] token has (1 + 14 x 14). With "cudnn" (or "xla" and `pad_to` given, as the tests do), q/k/v are
  zero-padded along T to a multiple of `pad_to` (default 2), the padded keys are masked out by the kernel's padding
  mask (`key_value_seq_lengths`; padded tokens get a segment of their own), and the padded query rows are dropped,
  so the result is exactly the unpadded attention; the cost is one pad of q/k/v and one slice of the output.
  """
  if implementation is None:
    implementation = "cudnn" if _cudnn_likely(q) else "einsum"
  if implementation not in ATTENTION_IMPLS:
    raise ValueError(f"attention implementation {implementation!r} is unknown; use one of {ATTENTION_IMPLS} or None.")
  t = q.shape[1]
  if bias is not None:
    if bias.ndim == 3:
      bias = bias[None]
    if bias.ndim != 4 or bias.shape[1:] != (q.shape[2], t, t) or bias.shape[0] not in (1, q.shape[0]):
      raise ValueError(f"attention bias {bias.shape} does not fit {q.shape[2]} heads over {t} tokens: use "
                       f"[heads, T, T] or [B, heads, T, T].")
  if implementation == "einsum":
    return einsum_attention(q, k, v, attention_mask(length=t, causal=causal, segment_ids=segment_ids), bias)
  if bias is not None and implementation == "cudnn":
    bias = bias.astype(q.dtype)
  multiple = pad_to or (2 if implementation == "cudnn" else 1)
  extra = -t % multiple
  if not extra:
    mask = attention_mask(length=t, segment_ids=segment_ids)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=causal,
                                        implementation=implementation)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, extra)) + ((0, 0),) * (x.ndim - 2))
  if bias is not None:
    bias = jnp.pad(bias, ((0, 0), (0, 0), (0, extra), (0, extra)))
  if segment_ids is not None:
    segment_ids = jnp.pad(segment_ids, ((0, 0), (0, extra)), constant_values=jnp.iinfo(segment_ids.dtype).min)
  mask = attention_mask(length=t + extra, segment_ids=segment_ids)
  lengths = jnp.full((q.shape[0],), t, jnp.int32)
  y = jax.nn.dot_product_attention(pad(q), pad(k), pad(v), bias=bias, mask=mask, is_causal=causal,
                                   query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                                   implementation=implementation)
  return y[:, :t]


class Attention(nn.Module):
  """Multi-head self-attention with a fused q/k/v projection, `[B, T, D] -> [B, T, D]`.

  The q/k/v kernel is `[D, heads, 3, head_dim]` (heads outermost, so tensor parallelism splits heads, not q|k|v, and
  flattening the kernel to `[D, 3 D]` keeps each device's heads contiguous), initialised with the fan-in/fan-out of
  the fused `Linear(D, 3D)` of MAE/timm; the output kernel is `[heads, head_dim, D]`. Both projections run as 2-D
  matmuls on `[B * T, D]` tokens: XLA:CPU runs them markedly faster than the equivalent 4-D einsums, whose gradients
  it computes through transposed copies of the kernels (benchmarks/README.md).

  Attributes:
    num_heads: heads; D must be divisible by it.
    dtype: compute dtype (parameters stay float32).
    attention_impl: one of `ATTENTION_IMPLS`, or None to pick (`dot_product_attention`).
    causal: each token attends to itself and the tokens before it only.
    init_std: None: the Xavier-uniform kernels above; else N(0, init_std) ones (GPT-2, BERT).
    out_init_std: the output kernel's std when `init_std` is set (GPT-2's scaled residual projection); default
      `init_std`.
    init_truncation: with `init_std`, truncate the normals at +-`init_truncation` std (BEiT, data2vec: 1).
    decode: autoregressive decoding with a key/value cache (the "cache" collection, created by `init` with the
      whole sequence's shape `[B, S, D]`: `cached_key`, `cached_value` `[B, S, heads, head_dim]`, `cache_index`).
      Each call appends its `[B, L, D]` tokens' keys and values at `cache_index` and attends causally over the cache
      (query i sees slots <= cache_index + i), so that a prefix is never recomputed.
  """
  num_heads: int
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  causal: bool = False
  init_std: float | None = None
  out_init_std: float | None = None
  decode: bool = False
  init_truncation: float | None = None

  @nn.compact
  def __call__(self, x: jax.Array, segment_ids: jax.Array | None = None, bias: jax.Array | None = None) -> jax.Array:
    """`x` `[B, T, D]`, optional `segment_ids` `[B, T]` (tokens attend within their segment) and `bias`
    `[(B,) heads, T, T]` (added to the attention logits) -> `[B, T, D]`."""
    batch, length, width = x.shape
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}.")
    head_dim = width // self.num_heads
    param = lambda name, init, names, shape: self.param(
        name, nn.with_logical_partitioning(init, names), shape).astype(self.dtype)
    if self.init_std is None:
      qkv_init = nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2, 3))
      out_init = nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2)
    else:
      t = self.init_truncation
      normal = nn.initializers.normal if t is None else (
          lambda std: nn.initializers.truncated_normal(std, lower=-t, upper=t))
      qkv_init = normal(self.init_std)
      out_init = normal(self.init_std if self.out_init_std is None else self.out_init_std)
    w_qkv = param("qkv_kernel", qkv_init, ("embed", "heads", None, "kv"), (width, self.num_heads, 3, head_dim))
    b_qkv = param("qkv_bias", nn.initializers.zeros, ("heads", None, "kv"), (self.num_heads, 3, head_dim))
    w_out = param("out_kernel", out_init, ("heads", "kv", "embed"), (self.num_heads, head_dim, width))
    b_out = param("out_bias", nn.initializers.zeros, ("embed",), (width,))
    tokens = x.astype(self.dtype).reshape(batch * length, width)
    qkv = (tokens @ w_qkv.reshape(width, 3 * width)).reshape(batch, length, self.num_heads, 3, head_dim) + b_qkv
    q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]
    if self.decode and bias is not None:
      raise ValueError("an attention bias is not supported with decode=True (a key/value cache).")
    if self.decode and self.has_variable("cache", "cached_key"):
      y = self._decode(q, k, v)
    else:
      if self.decode:                               # init: the cache, shaped like this (whole) sequence
        self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
        self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
        self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
      y = dot_product_attention(q, k, v, implementation=self.attention_impl, causal=self.causal,
                                segment_ids=segment_ids, bias=bias)
    y = y.reshape(batch * length, width) @ w_out.reshape(width, width) + b_out
    return y.reshape(batch, length, width)

  def _decode(self, q, k, v):
    """Attention of `[B, L, heads, head_dim]` new tokens over the cache, after appending their keys and values."""
    cached_key, cached_value = self.variable("cache", "cached_key"), self.variable("cache", "cached_value")
    index = self.variable("cache", "cache_index")
    start = index.value
    cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, k.astype(cached_key.value.dtype),
                                                    (0, start, 0, 0))
    cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, v.astype(cached_value.value.dtype),
                                                      (0, start, 0, 0))
    index.value = start + q.shape[1]
    slots = jnp.arange(cached_key.value.shape[1])
    mask = (slots[None, :] <= start + jnp.arange(q.shape[1])[:, None])[None, None]
    return einsum_attention(q, cached_key.value, cached_value.value, mask)

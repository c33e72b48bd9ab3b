"""wav2vec 2.0's networks (Baevski et al. 2020; fairseq's `Wav2Vec2Model`, Hugging Face's `Wav2Vec2Model`): the
convolutional feature encoder, the context network on the shared transformer stack, and the Gumbel product quantizer.

    waveform [B, S] -> FeatureEncoder (7 convolutions, 512 channels, strides 5,2,2,2,2,2,2: one frame per 20 ms)
      -> LayerNorm -> `features` [B, T, 512]                       (the quantizer's input: the targets)
      -> projection to the width, dropout, masked frames replaced by a learned vector
      -> + convolutional relative position embedding (kernel 128, 16 groups, weight-normalised, GELU)
      -> LayerNorm (post-LN "base") -> transformer blocks (-> final LayerNorm, pre-LN "large") -> `tokens` [B, T, D]

- `FeatureEncoder`: fairseq's `ConvFeatureExtractionModel`: convolutions without bias, Kaiming-normal weights, exact
  GELU; `mode="group_norm"` (base, fairseq's "default"): a GroupNorm with one group per channel (over time) after the
  first convolution only; `mode="layer_norm"` (large): a LayerNorm over channels after every convolution.
- `Wav2Vec2Encoder` (`config.model.arch = "wav2vec2"`): the whole encoder above, with `feature_grad_mult` (the
  feature encoder's gradient scaled by 0.1 in base), the feature penalty (the mean square of the feature encoder's
  output), padding (frames past an utterance's end are zeroed before the position convolution and never attended to)
  and LayerDrop. `pooled` is the mean of the output frames inside the utterance.
- `GumbelQuantizer`: G groups of V codewords of dimension d/G; logits by a linear map of the features (weights
  N(0, 1), as fairseq), a hard Gumbel-softmax sample with the straight-through gradient in training (temperature
  given per step), the argmax otherwise; the chosen codewords of the groups concatenated.

Initialisation as fairseq: the context network's linear maps N(0, 0.02) with zero biases (`init_bert_params`), the
position convolution N(0, sqrt(4 / (kernel x width))) with its weight-norm gain at the initial norm, the feature
projection and the method's heads PyTorch's default (uniform +-1/sqrt(fan_in)), the mask embedding and the
codewords uniform in [0, 1). LayerNorm epsilon 1e-5. Deviations: attention probabilities are not dropped out
(fairseq: `attention_dropout` 0.1), and fairseq's per-utterance chunk test of which frames are padding is replaced
by the convolutions' output-length formula (Hugging Face's `_get_feat_extract_output_lengths`).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models import transformer

# fairseq's default `conv_feature_layers`: (channels, kernel, stride) of the 7 convolutions.
CONV_LAYERS = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


def torch_linear_init(fan_in: int):
  """PyTorch's default `nn.Linear` weight and bias init: uniform in +-1/sqrt(fan_in) (kaiming_uniform(a=sqrt(5)))."""
  bound = 1.0 / fan_in ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_dense(features: int, fan_in: int, names: tuple, *, use_bias: bool = True, dtype=jnp.float32,
                name: str | None = None) -> nn.Dense:
  """A Dense layer initialised as PyTorch's `nn.Linear(fan_in, features)`, with logical axis `names`."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, name=name,
                  kernel_init=nn.with_logical_partitioning(torch_linear_init(fan_in), names),
                  bias_init=nn.with_logical_partitioning(torch_linear_init(fan_in), names[-1:]))


def num_frames(length, conv_layers=CONV_LAYERS):
  """Frames the feature encoder makes of `length` samples (an int or an int array): `(L - kernel) // stride + 1`
  per convolution, 0 for inputs shorter than the receptive field (Hugging Face's `_get_feat_extract_output_lengths`).
  16,000 samples -> 49 frames."""
  for _, kernel, stride in conv_layers:
    length = max((length - kernel) // stride + 1, 0) if isinstance(length, int) else \
        jnp.maximum((length - kernel) // stride + 1, 0)
  return length


def frame_mask(audio_length: jax.Array, num_samples: int, conv_layers=CONV_LAYERS) -> jax.Array:
  """float32 `[B, T]`: 1 at the frames of `[B]` utterances of `audio_length` samples (of `num_samples`) that come from
  real samples, 0 at those that come from padding."""
  t = num_frames(num_samples, conv_layers)
  return (jnp.arange(t)[None, :] < num_frames(audio_length, conv_layers)[:, None]).astype(jnp.float32)


@jax.custom_vjp
def scale_gradient(x: jax.Array, factor: float) -> jax.Array:
  """Identity in the forward pass; the gradient multiplied by `factor` (fairseq's `GradMultiply`)."""
  return x


def _scale_fwd(x, factor):
  return x, factor


def _scale_bwd(factor, g):
  return g * factor, None


scale_gradient.defvjp(_scale_fwd, _scale_bwd)


class FeatureEncoder(nn.Module):
  """Waveforms `[B, S]` -> features `[B, T, C]` (module docstring). `mode`: "group_norm" or "layer_norm"."""
  conv_layers: tuple = CONV_LAYERS
  mode: str = "group_norm"
  conv_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, audio: jax.Array) -> jax.Array:
    if self.mode not in ("group_norm", "layer_norm"):
      raise ValueError(f"model.extractor_mode={self.mode!r}: use 'group_norm' (base) or 'layer_norm' (large).")
    x = audio[..., None].astype(self.dtype)
    fan_in = 1
    for i, (channels, kernel, stride) in enumerate(self.conv_layers):
      x = nn.Conv(channels, (kernel,), strides=(stride,), padding="VALID", use_bias=self.conv_bias, dtype=self.dtype,
                  kernel_init=nn.with_logical_partitioning(
                      nn.initializers.variance_scaling(2.0, "fan_in", "normal"), (None, None, "mlp")),
                  bias_init=nn.with_logical_partitioning(torch_linear_init(fan_in * kernel), ("mlp",)),
                  name=f"conv{i}")(x)
      if self.mode == "layer_norm":
        x = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name=f"norm{i}")(x.astype(jnp.float32)).astype(self.dtype)
      elif i == 0:
        x = nn.GroupNorm(num_groups=channels, epsilon=1e-5, dtype=jnp.float32, name="norm0")(
            x.astype(jnp.float32)).astype(self.dtype)
      x = nn.gelu(x, approximate=False)
      fan_in = channels
    return x


class PositionalConv(nn.Module):
  """wav2vec 2.0's relative position embedding: a grouped convolution over time (`kernel` taps, `groups` groups,
  "same" padding, the last output frame dropped for an even kernel as fairseq's `SamePad`), weight-normalised over
  each tap (`torch.nn.utils.weight_norm(dim=2)`: `w = g v / ||v||`, the norm over output and input channels), then
  GELU. `[B, T, D] -> [B, T, D]`."""
  kernel: int = 128
  groups: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    if width % self.groups:
      raise ValueError(f"model.pos_conv_groups={self.groups} must divide the width {width}.")
    std = (4.0 / (self.kernel * width)) ** 0.5
    v = self.param("weight_v", nn.with_logical_partitioning(nn.initializers.normal(std), (None, None, "embed")),
                   (self.kernel, width // self.groups, width))
    g = self.param("weight_g", nn.with_logical_partitioning(
        lambda key, shape: jnp.sqrt(jnp.sum(jnp.square(nn.unbox(v)), axis=(1, 2))), (None,)), (self.kernel,))
    b = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), (width,))
    v = v.astype(jnp.float32)
    kernel = g[:, None, None] * v / jnp.sqrt(jnp.sum(jnp.square(v), axis=(1, 2), keepdims=True))
    pad = self.kernel // 2
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1,), [(pad, pad)],
                                     dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=self.groups)
    if self.kernel % 2 == 0:
      y = y[:, :-1]
    return nn.gelu(y + b.astype(self.dtype), approximate=False)


class Wav2Vec2Encoder(nn.Module):
  """wav2vec 2.0's encoder (module docstring): `__call__(audio [B, S], audio_length [B] | None, mask [B, T] | None,
  train)` -> dict:

  - `pooled`: float32 `[B, D]`, the mean of `tokens` over the frames inside each utterance;
  - `tokens`: `[B, T, D]` the context network's output;
  - `features`: `[B, T, C]` the layer-normalised feature-encoder output, before any masking or dropout (the
    quantizer's input);
  - `frames`: float32 `[B, T]`, 1 at frames inside the utterance (`frame_mask`);
  - `feature_penalty`: the mean square of the feature encoder's output (fairseq's `features_pen`);
  - with `return_layers`, `layers`: every block's output `[depth, B, T, D]`.

  `mask` (1 at frames to hide) replaces those frames' projected features with the learned `mask_embedding`.

  Attributes:
    conv_layers, extractor_mode, conv_bias: the feature encoder (`FeatureEncoder`).
    width, depth, num_heads, mlp_dim: the transformer (base: 768, 12, 12, 3072; large: 1024, 24, 16, 4096).
    pos_conv_kernel, pos_conv_groups: the position convolution (128, 16).
    layer_norm_first: pre-LN blocks and a final LayerNorm (large) instead of a LayerNorm before post-LN blocks (base).
    dropout: after the position embedding and on every residual branch (0.1).
    dropout_input: on the projected features (0.1).
    layer_drop: LayerDrop (base 0.05, large 0.2 in the LibriVox config, 0.0 in fairseq's large LibriSpeech one).
    feature_grad_mult: the feature encoder's gradient scale (base 0.1, large 1.0).
    dtype, attention_impl, remat, scan: as the ViT's.
  """
  conv_layers: tuple = CONV_LAYERS
  extractor_mode: str = "group_norm"
  conv_bias: bool = False
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  pos_conv_kernel: int = 128
  pos_conv_groups: int = 16
  layer_norm_first: bool = False
  dropout: float = 0.1
  dropout_input: float = 0.1
  layer_drop: float = 0.05
  feature_grad_mult: float = 0.1
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  remat: str = "none"
  scan: bool = False

  @property
  def num_features(self) -> int:
    return self.width

  @property
  def feature_dim(self) -> int:
    return self.conv_layers[-1][0]

  @nn.compact
  def __call__(self, audio: jax.Array, audio_length: jax.Array | None = None, mask: jax.Array | None = None,
               train: bool = False, return_layers: bool = False) -> dict:
    if audio_length is None:
      audio_length = jnp.full(audio.shape[:1], audio.shape[1], jnp.int32)
    raw = FeatureEncoder(tuple(tuple(c) for c in self.conv_layers), self.extractor_mode, self.conv_bias, self.dtype,
                         name="feature_encoder")(audio)
    if self.feature_grad_mult != 1.0:
      raw = scale_gradient(raw, self.feature_grad_mult)
    penalty = jnp.mean(jnp.square(raw.astype(jnp.float32)))
    features = transformer.layer_norm(jnp.float32, "feature_norm", 1e-5)(raw.astype(jnp.float32))
    frames = frame_mask(audio_length, audio.shape[1], self.conv_layers)
    x = torch_dense(self.width, self.feature_dim, ("mlp", "embed"), dtype=self.dtype, name="feature_projection")(
        features)
    x = transformer.dropout(self, x, self.dropout_input, train)
    emb = self.param("mask_embedding", nn.with_logical_partitioning(nn.initializers.uniform(1.0), ("embed",)),
                     (self.width,))
    if mask is not None:
      x = jnp.where(mask[..., None] > 0, emb.astype(x.dtype), x)
    x = x * frames[..., None].astype(x.dtype)                   # padding frames zeroed before the convolution
    x = x + PositionalConv(self.pos_conv_kernel, self.pos_conv_groups, self.dtype, name="pos_conv")(x)
    style = transformer.BlockStyle(post_norm=not self.layer_norm_first, eps=1e-5, init_std=0.02,
                                   dropout=self.dropout)
    if not self.layer_norm_first:
      x = transformer.layer_norm(self.dtype, "encoder_norm", 1e-5)(x)
    x = transformer.dropout(self, x, self.dropout, train)
    x = transformer.constrain_tokens(x)
    out = transformer.Transformer(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.attention_impl,
                                  final_norm=self.layer_norm_first, remat=self.remat, scan=self.scan, style=style,
                                  layer_drop=self.layer_drop, name="transformer")(
        x, train=train, segment_ids=frames.astype(jnp.int32), return_layers=return_layers)
    tokens, layers = out if return_layers else (out, None)
    pooled = jnp.sum(tokens.astype(jnp.float32) * frames[..., None], axis=1) / jnp.maximum(
        jnp.sum(frames, axis=1, keepdims=True), 1.0)
    result = {"pooled": pooled, "tokens": tokens, "features": features, "frames": frames, "feature_penalty": penalty}
    return dict(result, layers=layers) if return_layers else result


def gumbel_softmax_hard(key: jax.Array, logits: jax.Array, temperature) -> jax.Array:
  """A one-hot sample of `softmax((logits + Gumbel noise) / temperature)` over the last axis, with the
  straight-through gradient of the soft sample (PyTorch's `F.gumbel_softmax(hard=True)`). float32."""
  logits = logits.astype(jnp.float32)
  soft = jax.nn.softmax((logits + jax.random.gumbel(key, logits.shape)) / temperature, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1], dtype=jnp.float32)
  return hard - jax.lax.stop_gradient(soft) + soft


class GumbelQuantizer(nn.Module):
  """wav2vec 2.0's product quantizer: `[..., C]` features -> (`[..., dim]` quantized vectors, `[..., G, V]` logits,
  `[..., G]` chosen codeword indices). `key`/`temperature`: the Gumbel noise and temperature in training (both None:
  the argmax, as at evaluation)."""
  groups: int = 2
  num_vars: int = 320
  dim: int = 256

  @nn.compact
  def __call__(self, x: jax.Array, key: jax.Array | None = None, temperature=None):
    if self.dim % self.groups:
      raise ValueError(f"the quantizer's dim {self.dim} must be divisible by its groups {self.groups}.")
    logits = nn.Dense(self.groups * self.num_vars, dtype=jnp.float32, name="weight_proj",
                      kernel_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("mlp", None)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)))(x.astype(jnp.float32))
    logits = logits.reshape(x.shape[:-1] + (self.groups, self.num_vars))
    codewords = self.param("codevectors", nn.with_logical_partitioning(nn.initializers.uniform(1.0), (None, None)),
                           (self.groups * self.num_vars, self.dim // self.groups))
    if key is None:
      onehot = jax.nn.one_hot(jnp.argmax(logits, axis=-1), self.num_vars, dtype=jnp.float32)
    else:
      onehot = gumbel_softmax_hard(key, logits, temperature)
    per_group = codewords.reshape(self.groups, self.num_vars, -1)
    q = jnp.einsum("...gv,gvd->...gd", onehot, per_group.astype(jnp.float32))
    return q.reshape(x.shape[:-1] + (self.dim,)), logits, jnp.argmax(onehot, axis=-1)

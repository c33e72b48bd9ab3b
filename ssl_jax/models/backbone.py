"""Encoders from `config.model`, by name: one registry (`ENCODERS`) of ViT, ResNet, text-transformer and wav2vec 2.0
builders.

`create(arch="vit", variant="S/16", pool="cls", ...)` or `create(arch="resnet", depth=50, ...)`; the module maps
normalised images `[B, H, W, 3]` to `{"pooled": float32 [B, D], "tokens": [B, T, D]}` (the ViT's output tokens, [CLS]
first; the ResNet's last feature map, row by row) and exposes `D` as `num_features`. Called with
`return_layers=True` it adds `"layers"`, the per-layer outputs: the ViT's block outputs `[depth, B, T, D]`, the
ResNet's stage outputs (a tuple of `[B, T_i, D_i]`). Text encoders read token ids `[B, T]` (`models/text.py`), the
wav2vec 2.0 encoder waveforms `[B, S]` with their `audio_length` (`models/audio.py`). A new architecture is one
builder function and one entry in `ENCODERS`.
"""

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax.models import audio
from ssl_jax.models import resnet
from ssl_jax.models import text
from ssl_jax.models import transformer
from ssl_jax.models import vit


POOLS = ("cls", "gap", "gap_fc_norm", "map")


class ViTEncoder(nn.Module):
  """A ViT giving its output tokens `[B, 1 + N, D]` ([CLS] first) and one float32 vector per image, by `pool`:

  - "cls": the [CLS] token after the final LayerNorm (MAE linear probe, MoCo v3, DINO);
  - "gap": the mean of the patch tokens after the final LayerNorm (I-JEPA's ViTs, which have no [CLS] token);
  - "gap_fc_norm": the mean of the patch tokens before any final LayerNorm, then a LayerNorm of its own (`fc_norm`;
    MAE fine-tuning's `global_pool`, timm's `global_pool="avg"` with `fc_norm`): the pretrained final norm is unused;
  - "map": multi-head attention pooling of the tokens after the final LayerNorm (`vit.MAPHead`: SigLIP's image
    pooling, Hugging Face's `SiglipMultiheadAttentionPoolingHead`).
  """
  vit: dict
  pool: str = "cls"

  @property
  def num_features(self) -> int:
    return self.vit["width"]

  @nn.compact
  def __call__(self, x, train: bool = False, return_layers: bool = False):
    """`x` `[B, H, W, 3]` -> `{"pooled": float32 [B, D], "tokens": [B, 1 + N, D]}`, and with `return_layers` also
    `"layers"`: every block's output tokens, `[depth, B, 1 + N, D]`, before the final LayerNorm (data2vec's
    targets)."""
    out = vit.ViT(**self.vit, final_norm=self.pool != "gap_fc_norm", name="vit")(x, train=train,
                                                                                 return_layers=return_layers)
    tokens, layers = out if return_layers else (out, None)
    if self.pool == "cls":
      feats = tokens[:, 0]
    elif self.pool == "map":
      feats = vit.MAPHead(self.vit["num_heads"], self.vit["mlp_dim"], self.vit["dtype"], self.vit["tanh_gelu"],
                          name="map_head")(tokens)
    else:
      feats = jnp.mean(tokens[:, int(self.vit["class_token"]):], axis=1)
      if self.pool == "gap_fc_norm":
        feats = transformer.layer_norm(self.vit["dtype"], "fc_norm")(feats)
    out = {"pooled": feats.astype(jnp.float32), "tokens": tokens}
    return dict(out, layers=layers) if return_layers else out


def _vit(*, pool: str | None = "cls", **kw: Any) -> nn.Module:
  """A ViT (keywords of `vit.vit_kwargs`) pooled by `pool` (None: "cls", or "gap" without a [CLS] token)."""
  kw = vit.vit_kwargs(**kw)
  pool = pool or ("cls" if kw["class_token"] else "gap")
  if pool not in POOLS:
    raise ValueError(f"model.pool must be one of {POOLS}, got {pool!r}.")
  if pool == "cls" and not kw["class_token"]:
    raise ValueError("model.pool='cls' needs the [CLS] token; this ViT has model.class_token=False: use 'gap'.")
  return ViTEncoder(kw, pool)


def _resnet(*, pool: str | None = None, **kw: Any) -> nn.Module:
  """A ResNet (fields of `resnet.ResNet`; unset ones at their defaults), pooled by the global mean."""
  del pool
  kw = {k: v for k, v in kw.items() if v is not None}
  if kw.pop("remat", "none") != "none" or kw.pop("scan", False):
    raise ValueError("model.remat and model.scan apply to ViT blocks; a ResNet takes neither (leave them unset).")
  if "dtype" in kw:
    kw["dtype"] = jnp.dtype(kw["dtype"])
  if kw.get("stages") is not None:
    kw["stages"] = tuple(kw["stages"])
  return resnet.ResNet(**kw)


def _text(**kw: Any) -> nn.Module:
  """A GPT-2 or BERT (fields of `text.TextTransformer`; unset ones at their defaults)."""
  kw = {k: v for k, v in kw.items() if v is not None}
  if "dtype" in kw:
    kw["dtype"] = jnp.dtype(kw["dtype"])
  return text.TextTransformer(**kw)


def _wav2vec2(**kw: Any) -> nn.Module:
  """wav2vec 2.0's encoder (fields of `audio.Wav2Vec2Encoder`; unset ones at their defaults)."""
  kw = {k: v for k, v in kw.items() if v is not None}
  if "dtype" in kw:
    kw["dtype"] = jnp.dtype(kw["dtype"])
  if "conv_layers" in kw:
    kw["conv_layers"] = tuple(tuple(c) for c in kw["conv_layers"])
  return audio.Wav2Vec2Encoder(**kw)


# config.model.arch -> a builder taking the rest of config.model as keywords.
ENCODERS: dict[str, Callable[..., nn.Module]] = {"vit": _vit, "resnet": _resnet, "text": _text, "wav2vec2": _wav2vec2}

# What each modality's encoder reads from a batch: the positional input, and keyword inputs by batch key.
INPUTS = {"image": ("image", {}), "text": ("text", {"segment_ids": "text_segment_ids",
                                                     "positions": "text_positions"}),
          "audio": ("audio", {"audio_length": "audio_length"})}


def encode(module: nn.Module, variables, batch: dict, **kw) -> dict:
  """`module.apply(variables, <the batch's input>, ...)`: an encoder of `ENCODERS` on its modality's part of the batch
  (`batch["image"]`; `batch["text"]` with its segment ids and positions, an image-caption batch holds both;
  `batch["audio"]` with its `audio_length`)."""
  modality = ("text" if isinstance(module, text.TextTransformer) else
              "audio" if isinstance(module, audio.Wav2Vec2Encoder) else "image")
  key, keywords = INPUTS[modality]
  return module.apply(variables, batch[key], **{k: batch[v] for k, v in keywords.items() if v in batch}, **kw)


def create(*, arch: str = "vit", **kw: Any) -> nn.Module:
  """The encoder `arch` of `ENCODERS`, built from the rest of `config.model`."""
  if arch not in ENCODERS:
    raise ValueError(f"unknown model.arch {arch!r}; use one of {sorted(ENCODERS)}.")
  return ENCODERS[arch](**kw)

"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") and SigLIP
(Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"): two towers trained on image-caption pairs.

An image tower (`config.model`: a ViT, pooled by its [CLS] token for CLIP) and a text tower (`text`: CLIP's causal
transformer pooled at the end-of-text token, SigLIP's bidirectional one pooled at the last position; see
`ssl_jax.models.text`) end in linear projections to the joint space (CLIP: both, without bias; SigLIP: the text tower's
`head`, with a bias, while the image tower's attention-pooling head gives its embeddings directly, as big_vision's and
Hugging Face's SigLIP). The embeddings are L2-normalised and compared by scaled cosine similarity over the global batch:

- CLIP: the symmetric InfoNCE of `losses.clip_loss`; the scale `exp(t)` is learned from `t = log(1 / 0.07)` and
  kept at most 100 by clamping `t` after every update (open_clip's `logit_scale.clamp_(0, log 100)`, as
  `project_params`).
- SigLIP: the pairwise sigmoid loss of `losses.siglip_loss` with a learned scale `exp(t')` (`t' = log 10`) and bias
  (`b = -10`), which keep the initial loss small when nearly every pair is a negative. -10 is the log prior odds of a
  positive pair at the paper's batch (-log(32767) = -10.4); `logit_bias_init="prior"` sets `b = -log(B - 1)` for the
  run's batch B instead (-5.5 at 256), so that a small batch starts at its own prior.

The loss is computed over the global batch in one of three ways (`loss_impl`), equal in value and gradient:
"plain" (the whole `[B, B]` similarity matrix under `jit`), "chunked" (`chunk_size` rows at a time) or "ring"
(`jax.shard_map` over the batch's mesh axes: every device keeps its image embeddings and the text embeddings travel
around the devices, so that a device holds one `[b, b]` block at a time; `losses.clip_loss_ring` /
`siglip_loss_ring`). Representation: each tower's pooled features before the projection (`"image"`, `"text"`);
`embed` gives the normalised joint-space embeddings that zero-shot classification and retrieval compare.

The image towers are the shared ViT with the papers' options: CLIP's LayerNorm before the blocks (`model.pre_norm`,
OpenAI's `ln_pre`), SigLIP's tanh GELU and attention pooling (`model.tanh_gelu`, `model.pool="map"`). Deviations:
exact GELU in CLIP's towers (OpenAI's released models use QuickGELU; open_clip's own use GELU) and GPT-2's
initialisation of CLIP's text tower (OpenAI scales its attention initialisation by the width).
"""

import dataclasses
import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ssl_jax import losses
from ssl_jax import monitors
from ssl_jax.methods import contract
from ssl_jax.models import backbone

LOSS_IMPLS = ("plain", "chunked", "ring")


class Projection(nn.Module):
  """A tower's linear map to the joint space, `[B, D] -> [B, E]` float32 (N(0, D^-1/2) kernel as CLIP's projections)."""
  dim: int
  bias: bool = False

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.dim, use_bias=self.bias, name="dense",
                    kernel_init=nn.with_logical_partitioning(nn.initializers.normal(x.shape[-1] ** -0.5),
                                                             ("embed", None)),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)))(x.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class CLIP(contract.Method):
  image_encoder: nn.Module
  text_encoder: nn.Module
  image_projection: Projection | None          # None: the pooled image features are the embeddings (SigLIP)
  text_projection: Projection
  logit_scale_init: float
  logit_scale_max: float | None
  logit_bias_init: float | None
  loss_impl: str
  chunk_size: int | None

  model_spec: tuple = ()
  text_spec: tuple = ()

  embeds_pairs: ClassVar[bool] = True
  sigmoid: ClassVar[bool] = False

  # -- the towers -------------------------------------------------------------------------------------------------

  def _towers(self, params, batch, *, train: bool = False, rng=None):
    """`(image pooled [B, D_i], image embeddings [B, E], text pooled, text embeddings)`, each None where the batch
    lacks the modality; embeddings not normalised."""
    rngs = {"dropout": rng} if rng is not None else {}
    out = [None] * 4
    if "image" in batch:
      pooled = self.image_encoder.apply({"params": params["image"]}, batch["image"], train, rngs=rngs)["pooled"]
      out[:2] = pooled, (pooled if self.image_projection is None else
                         self.image_projection.apply({"params": params["image_projection"]}, pooled))
    if "text" in batch:
      pooled = self.text_encoder.apply({"params": params["text"]}, batch["text"],
                                       segment_ids=batch["text_segment_ids"], train=train, rngs=rngs)["pooled"]
      out[2:] = pooled, self.text_projection.apply({"params": params["text_projection"]}, pooled)
    return out

  def init(self, rng, batch):
    keys = jax.random.split(rng, 4)
    image = self.image_encoder.init(keys[0], batch["image"])["params"]
    text = self.text_encoder.init(keys[1], batch["text"], segment_ids=batch["text_segment_ids"])["params"]
    params = {
        "image": image, "text": text,
        "text_projection": self.text_projection.init(keys[3], jnp.zeros((1, self.text_encoder.num_features)))["params"],
        "logit_scale": jnp.asarray(math.log(self.logit_scale_init), jnp.float32)}
    if self.image_projection is not None:
      params["image_projection"] = self.image_projection.init(
          keys[2], jnp.zeros((1, self.image_encoder.num_features)))["params"]
    if self.logit_bias_init is not None:
      params["logit_bias"] = jnp.asarray(self.logit_bias_init, jnp.float32)
    return params, {}

  # -- the loss ---------------------------------------------------------------------------------------------------

  def _pair_losses(self, img, txt, scale, bias):
    """Per-example losses `[B]` of the global batch by `loss_impl`."""
    if self.loss_impl == "ring":
      axes = nn.logical_to_mesh_axes(("batch",))[0]          # the mesh axes the batch is split over
      mesh = jax.sharding.get_abstract_mesh()
      axes = tuple(a for a in ((axes,) if isinstance(axes, str) else (axes or ())) if a in mesh.axis_names)
      size = math.prod(mesh.shape[a] for a in axes)
      if size > 1:
        if self.sigmoid:
          ring = lambda i, t, s, b: losses.siglip_loss_ring(i, t, s, b, axis_name=axes, axis_size=size)
        else:
          ring = lambda i, t, s, b: losses.clip_loss_ring(i, t, s, axis_name=axes, axis_size=size)
        return jax.shard_map(ring, in_specs=(P(axes), P(axes), P(), P()), out_specs=P(axes))(
            img, txt, scale, jnp.zeros((), jnp.float32) if bias is None else bias)
    chunk = self.chunk_size if self.loss_impl == "chunked" else None
    if self.sigmoid:
      return losses.siglip_loss(img, txt, scale, bias, chunk_size=chunk)
    return losses.clip_loss(img, txt, scale, chunk_size=chunk)

  def loss(self, params, extra, batch, rng, step):
    del step
    _, img, _, txt = self._towers(params, batch, train=True, rng=rng)
    scale = jnp.exp(params["logit_scale"])
    bias = params.get("logit_bias")
    loss = jnp.mean(self._pair_losses(img, txt, scale, bias))
    img_n, txt_n = losses.l2_normalize(img), losses.l2_normalize(txt)
    metrics = {"ssl_loss": loss, "logit_scale": scale,
               "positive_cosine": jnp.mean(jnp.sum(img_n * txt_n, axis=-1)),
               **monitors.collapse_metrics(img)}
    if bias is not None:
      metrics["logit_bias"] = bias
    return loss, (metrics, extra)

  def project_params(self, params):
    if self.logit_scale_max is None:
      return params
    return dict(params, logit_scale=jnp.clip(params["logit_scale"], 0.0, math.log(self.logit_scale_max)))

  # -- evaluation and release -------------------------------------------------------------------------------------

  def represent(self, params, extra, batch):
    image, _, text, _ = self._towers(params, batch)
    return {k: v for k, v in (("image", image), ("text", text)) if v is not None}

  def embed(self, params, extra, batch):
    _, image, _, text = self._towers(params, batch)
    return {k: losses.l2_normalize(v) for k, v in (("image", image), ("text", text)) if v is not None}

  def encoders(self, params, extra):
    return {"image": (dict(self.model_spec), {"params": params["image"]}),
            "text": (dict(self.text_spec), {"params": params["text"]})}

  # -- construction -----------------------------------------------------------------------------------------------

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, text: dict, embed_dim: int | None = 512,
             logit_scale_init: float = 1 / 0.07, logit_scale_max: float | None = 100.0,
             logit_bias_init: float | str | None = None, projection_bias: bool = False, image_projection: bool = True,
             loss_impl: str = "plain", chunk_size: int | None = None) -> "CLIP":
    """Builds CLIP (SigLIP: the same keywords, with its defaults).

    Args:
      model: the image tower's keywords (`ssl_jax.models.backbone.create`: a ViT; CLIP ViT-B/16: pool "cls").
      run: the run's facts: the caption length (`run.inputs["text"]`) and the tokenizer's vocabulary.
      text: the text tower's `ssl_jax.models.text.TextTransformer` fields (width, depth, num_heads, mlp_dim, style
        "clip" or "siglip"; CLIP ViT-B/16: 512, 12, 8, 2048); its vocabulary and positions come from the data.
      embed_dim: the joint space (CLIP ViT-B/16: 512); without `image_projection` the image tower's width (None: that
        width).
      logit_scale_init: the initial `exp(t)` (CLIP 1 / 0.07; SigLIP 10).
      logit_scale_max: `exp(t)` is clamped to at most this after every update (CLIP 100; SigLIP: None, unclamped).
      logit_bias_init: SigLIP's learned bias b, initialised at -10 (the paper) or at "prior", `-log(B - 1)` for the
        batch B of each loss call; None (CLIP): no bias.
      projection_bias: the projections have a bias (SigLIP's text head) or not (CLIP).
      image_projection: a linear map from the pooled image features to the joint space (CLIP); False: the pooled
        features are the image embeddings (SigLIP, whose image tower ends in its attention-pooling head).
      loss_impl: "plain", "chunked" (`chunk_size` rows at a time) or "ring" (module docstring).
      chunk_size: rows per block of the "chunked" loss (must divide the batch each loss call sees).
    """
    if "text" not in run.inputs or "image" not in run.inputs:
      raise ValueError(f"{cls.__name__.lower()} trains on image-caption pairs: build config.data with "
                       "config_lib.image_text_data(name, size=..., length=...).")
    if run.vocab_size is None and text.get("vocab_size") is None:
      raise ValueError("the text tower needs the tokenizer's vocabulary (method.text.vocab_size).")
    if loss_impl not in LOSS_IMPLS:
      raise ValueError(f"method.loss_impl={loss_impl!r} is unknown; use one of {LOSS_IMPLS}.")
    if loss_impl == "chunked" and (not chunk_size or (run.batch_size and run.batch_size % chunk_size)):
      raise ValueError(f"method.loss_impl='chunked' needs method.chunk_size dividing the batch of each loss call "
                       f"({run.batch_size}), got {chunk_size}.")
    if logit_scale_init <= 0 or (logit_scale_max is not None and not 1.0 <= logit_scale_init <= logit_scale_max):
      raise ValueError(f"method.logit_scale_init={logit_scale_init} must be positive and, with logit_scale_max, in "
                       f"[1, {logit_scale_max}].")
    if cls.sigmoid and logit_bias_init is None:
      raise ValueError("siglip needs method.logit_bias_init (the paper: -10; 'prior': -log(batch - 1)).")
    if logit_bias_init == "prior":
      if not run.batch_size or run.batch_size < 2:
        raise ValueError("method.logit_bias_init='prior' needs the batch of each loss call (at least 2 pairs).")
      logit_bias_init = -math.log(run.batch_size - 1)
    elif isinstance(logit_bias_init, str):
      raise ValueError(f"method.logit_bias_init={logit_bias_init!r}: give a number (the paper: -10) or 'prior'.")
    text_spec = dict(arch="text", style="clip", vocab_size=run.vocab_size, max_length=run.inputs["text"].shape[0])
    text_spec.update({k: v for k, v in text.items() if k != "arch" and v is not None})
    if run.vocab_size and text_spec["vocab_size"] < run.vocab_size:
      raise ValueError(f"method.text.vocab_size={text_spec['vocab_size']} is smaller than the caption tokenizer's "
                       f"vocabulary ({run.vocab_size} tokens); leave it unset or at least {run.vocab_size}.")
    image_encoder = backbone.create(**model)
    if not image_projection:
      if embed_dim not in (None, image_encoder.num_features):
        raise ValueError(f"method.embed_dim={embed_dim}: without an image projection (method.image_projection=False) "
                         f"the joint space is the image tower's width, {image_encoder.num_features}; leave embed_dim "
                         "unset.")
      embed_dim = image_encoder.num_features
    elif embed_dim is None:
      raise ValueError("method.embed_dim: set the joint space's dimension (CLIP ViT-B/16: 512).")
    return cls(image_encoder=image_encoder, text_encoder=backbone.create(**text_spec),
               image_projection=Projection(embed_dim, projection_bias) if image_projection else None,
               text_projection=Projection(embed_dim, projection_bias), logit_scale_init=float(logit_scale_init),
               logit_scale_max=logit_scale_max, logit_bias_init=logit_bias_init, loss_impl=loss_impl,
               chunk_size=chunk_size, model_spec=contract.freeze(model), text_spec=contract.freeze(text_spec))


@dataclasses.dataclass(frozen=True)
class SigLIP(CLIP):
  sigmoid: ClassVar[bool] = True

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, text: dict, embed_dim: int | None = None,
             logit_scale_init: float = 10.0, logit_scale_max: float | None = None,
             logit_bias_init: float | str | None = -10.0,
             projection_bias: bool = True, image_projection: bool = False, loss_impl: str = "plain",
             chunk_size: int | None = None) -> "SigLIP":
    """Builds SigLIP: `CLIP.create`'s keywords with the paper's defaults (t' = log 10, b = -10, no clamp; the text
    head with a bias, no image projection: the joint space is the image tower's width, 768 for B/16)."""
    return super().create(model=model, run=run, text=dict({"style": "siglip"}, **text), embed_dim=embed_dim,
                          logit_scale_init=logit_scale_init, logit_scale_max=logit_scale_max,
                          logit_bias_init=logit_bias_init, projection_bias=projection_bias,
                          image_projection=image_projection, loss_impl=loss_impl, chunk_size=chunk_size)

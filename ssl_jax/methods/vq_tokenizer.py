"""A VQ visual tokenizer trained with ssl_jax: BEiT v2's VQ-KD architecture and quantizer (Peng et al. 2022, "BEiT
v2: Masked Image Modeling with Vector-Quantized Visual Tokenizers", microsoft/unilm `beit2/modeling_vqkd.py`,
`norm_ema_quantizer.py`) with a pixel-reconstruction target, so that BEiT-style methods get visual tokens without
downloading DALL-E's or CLIP's weights.

A ViT encoder (no [CLS] token) maps each patch to a token; a small head (`to_code`: Linear, Tanh, Linear, VQ-KD's
`encode_task_layer`) maps it to a `code_dim`-dimensional vector, l2-normalised; its code is the nearest of `vocab_size`
l2-normalised codebook vectors. The codebook is not trained by the optimizer: it is initialised by spherical k-means
on the first batch's vectors (`quantize_kmeans_init`) and then moves by BEiT v2's normalised EMA (decay 0.99,
`quantize.norm_ema_update`), in `extra["codebook"]`. The quantized vectors pass to a transformer decoder with the
straight-through estimator (`z + sg(e - z)`), which predicts each patch's normalised pixels; the loss is their mean
squared error plus `beta` times the commitment `mean((sg(e) - z)^2)` (beta 1, as VQ-KD's).

Deviation from VQ-KD: its decoder regresses a CLIP teacher's features (cosine loss), which cannot be downloaded here;
this one reconstructs pixels (the VQ-VAE objective, van den Oord et al. 2017), so its codes describe appearance, as
DALL-E's do, rather than CLIP's semantics.

Logged: `tokenizer/usage` (the fraction of the vocabulary the batch uses) and `tokenizer/perplexity` (of the batch's
code frequencies; a collapsed codebook shows as both falling), `loss/reconstruction`, `loss/commitment`. Report:
`reconstructions.png` (input, the decoder's image from the codes). Representation and release: the encoder, its
patch tokens averaged; `codes(params, extra, images)` gives the visual tokens.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import masking
from ssl_jax.methods import contract
from ssl_jax.models import transformer
from ssl_jax.models import vit
from ssl_jax.ops import image
from ssl_jax.ops import quantize


class VQTokenizerModel(nn.Module):
  """The tokenizer's trained parts: `encoder` (a ViT), `to_code`, and the decoder (`decoder_embed`, `decoder`,
  `to_pixels`).

  Attributes:
    encoder: `vit.ViT` keywords (no [CLS] token).
    decoder: width, depth, num_heads, mlp_dim of the decoder (VQ-KD base: 768, 3, 12, 3072).
    code_dim: the codebook's dimension (32).
    patch_dim: pixels per patch, `p * p * 3`.
    grid: (H, W) patch grid.
  """
  encoder: dict
  decoder: dict
  code_dim: int
  patch_dim: int
  grid: tuple[int, int]

  def setup(self):
    enc = self.encoder
    style = transformer.BlockStyle(init_std=enc["init_std"])
    dense = lambda n, names, name: nn.Dense(n, dtype=enc["dtype"], name=name, kernel_init=style.kernel_init(names),
                                            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[1:]))
    self.vit = vit.ViT(**enc, name="encoder")
    self.code_hidden = dense(enc["width"], ("embed", "mlp"), "code_hidden")
    self.code_out = dense(self.code_dim, ("mlp", None), "to_code")
    d = self.decoder
    self.decoder_embed = dense(d["width"], (None, "embed"), "decoder_embed")
    self.decoder_stack = transformer.Transformer(d["depth"], d["num_heads"], d["mlp_dim"], enc["dtype"],
                                                 enc["attention_impl"], remat=enc["remat"], scan=enc["scan"],
                                                 style=style, name="decoder")
    self.to_pixels = dense(self.patch_dim, ("embed", "patch"), "to_pixels")

  def encode(self, images, train: bool = False):
    """`[B, H, W, 3]` -> unit vectors `[B, T, code_dim]` float32 (before quantization)."""
    tokens = self.vit(images, train=train)
    return quantize.l2_normalize(self.code_out(jnp.tanh(self.code_hidden(tokens))))

  def decode(self, quantized):
    """Quantized unit vectors `[B, T, code_dim]` -> each patch's pixels `[B, T, patch_dim]` float32."""
    x = self.decoder_embed(quantized.astype(self.encoder["dtype"]))
    x = x + jnp.asarray(vit.sincos_2d(self.decoder["width"], *self.grid), x.dtype)[None]
    return self.to_pixels(self.decoder_stack(transformer.constrain_tokens(x))).astype(jnp.float32)

  def __call__(self, images):
    return self.decode(self.encode(images))


@dataclasses.dataclass(frozen=True)
class VQTokenizer(contract.Method):
  """The VQ tokenizer behind the method contract (`ssl_jax.methods.contract.Method`)."""
  reconstructs = True
  pictures = ("reconstructions", ("input", "reconstruction"))

  model: VQTokenizerModel
  patch_size: int
  vocab_size: int
  decay: float
  beta: float
  norm_pix_loss: bool
  kmeans_iterations: int
  kmeans_samples: int
  encoder_spec: tuple = ()

  def codes(self, params, extra, images) -> jax.Array:
    """The visual tokens of normalised `images` `[B, H, W, 3]`: `[B, T]` int32 (BEiT's targets)."""
    z = self.model.apply({"params": params}, images, method=VQTokenizerModel.encode)
    return quantize.nearest_codes(z, extra["codebook"])

  def _targets(self, images):
    target = masking.patchify(images, self.patch_size).astype(jnp.float32)
    if self.norm_pix_loss:
      mean, var = jnp.mean(target, -1, keepdims=True), jnp.var(target, -1, keepdims=True)
      target = (target - mean) / jnp.sqrt(var + 1e-6)
    return target

  def init(self, rng, batch):
    images = batch["image"]
    params = self.model.init(rng, images)["params"]
    codebook = quantize.l2_normalize(jax.random.normal(jax.random.fold_in(rng, 1),
                                                       (self.vocab_size, self.model.code_dim)))
    return params, {"codebook": codebook}

  def loss(self, params, extra, batch, rng, step):
    images = batch["image"]
    k_drop, k_means = jax.random.split(rng)
    z = self.model.apply({"params": params}, images, train=True, rngs={"dropout": k_drop},
                         method=VQTokenizerModel.encode)                                     # [B, T, d]
    flat = jax.lax.stop_gradient(z.reshape(-1, z.shape[-1]))
    codebook = jax.lax.cond(   # k-means on the first batch (`quantize_kmeans_init`), then the running codebook
        step == 0, lambda: quantize.spherical_kmeans(k_means, flat[:self.kmeans_samples], self.vocab_size,
                                                     self.kmeans_iterations),
        lambda: extra["codebook"].astype(jnp.float32))
    codes = quantize.nearest_codes(z, codebook)                                              # [B, T]
    e = jax.lax.stop_gradient(codebook[codes])
    commitment = jnp.mean(jnp.square(e - z))
    quantized = z + jax.lax.stop_gradient(e - z)                                             # straight through
    pred = self.model.apply({"params": params}, quantized, method=VQTokenizerModel.decode)
    reconstruction = jnp.mean(jnp.square(pred - self._targets(images)))
    loss = reconstruction + self.beta * commitment
    new_codebook = quantize.norm_ema_update(codebook, flat, codes.reshape(-1), self.decay)
    usage = quantize.code_usage(codes, self.vocab_size)
    metrics = {"loss": loss, "loss/reconstruction": reconstruction, "loss/commitment": commitment,
               "tokenizer/usage": usage["usage"], "tokenizer/perplexity": usage["perplexity"]}
    return loss, (metrics, dict(extra, codebook=new_codebook.astype(extra["codebook"].dtype)))

  def represent(self, params, extra, batch):
    del extra
    tokens = vit.ViT(**self.model.encoder).apply({"params": params["encoder"]}, batch["image"])
    return {"image": jnp.mean(tokens, axis=1).astype(jnp.float32)}

  def encoders(self, params, extra):
    """The tokenizer's ViT encoder, average pooled: (`backbone.create` keywords, variables)."""
    del extra
    return {"image": (dict(self.encoder_spec), {"params": {"vit": params["encoder"]}})}

  def reconstruct(self, params, extra, batch, rng):
    """Pictures: the input and the decoder's image from its codes (the codes' reconstruction; with
    `norm_pix_loss` each patch mapped back with its true mean and variance, as MAE's demo does), uint8."""
    del rng
    x = batch["image"]
    _, h, w, _ = x.shape
    codes = self.codes(params, extra, x)
    pred = self.model.apply({"params": params}, extra["codebook"][codes], method=VQTokenizerModel.decode)
    if self.norm_pix_loss:
      target = masking.patchify(x, self.patch_size)
      mean, var = jnp.mean(target, -1, keepdims=True), jnp.var(target, -1, keepdims=True)
      pred = pred * jnp.sqrt(var + 1e-6) + mean
    return image.denormalize(x), image.denormalize(masking.unpatchify(pred, self.patch_size, h, w))

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, decoder: dict, vocab_size: int = 8192, code_dim: int = 32,
             decay: float = 0.99, beta: float = 1.0, norm_pix_loss: bool = False, kmeans_iterations: int = 10,
             kmeans_samples_per_code: int = 16) -> "VQTokenizer":
    """Builds the tokenizer.

    Args:
      model: encoder keywords for `ssl_jax.models.vit.vit_kwargs` (VQ-KD: ViT-B/16, `class_token=False`); `pool`
        "gap" or unset.
      run: the run's facts (image shape).
      decoder: width, depth, num_heads, mlp_dim of the decoder (VQ-KD base: 768, 3, 12, 3072).
      vocab_size, code_dim: the codebook (8192 x 32).
      decay: the codebook's EMA decay (0.99).
      beta: the commitment loss's weight (1).
      norm_pix_loss: reconstruct each patch's pixels normalised by its own mean and variance (MAE's option).
      kmeans_iterations: iterations of the first batch's k-means (10).
      kmeans_samples_per_code: the k-means reads at most this many of the first batch's vectors per code (16), to
        bound its `[N, vocab]` similarity matrix at full scale.
    """
    model = dict(model)
    if model.pop("arch", "vit") != "vit":
      raise ValueError("the VQ tokenizer's encoder is a ViT (build config.model with config_lib.vit).")
    if model.pop("pool", None) not in (None, "gap"):
      raise ValueError("the VQ tokenizer's features are its average-pooled tokens: set config.model.pool='gap' or "
                       "leave it unset.")
    enc = vit.vit_kwargs(**model)
    if enc["class_token"]:
      raise ValueError("the VQ tokenizer's encoder has no [CLS] token (each patch is a token): set "
                       "config.model.class_token=False.")
    h, w, _ = run.image_shape()
    p = enc["patch_size"]
    if h % p or w % p:
      raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}.")
    if vocab_size < 2 or code_dim < 1 or not 0.0 <= decay < 1.0:
      raise ValueError(f"method.vocab_size={vocab_size}, code_dim={code_dim}, decay={decay}: a vocabulary of 2 or "
                       "more codes of 1 or more dimensions, and a decay in [0, 1).")
    grid = (h // p, w // p)
    spec = contract.freeze(dict(model, arch="vit", pool="gap", class_token=False))
    tokenizer = VQTokenizerModel(encoder=enc, decoder=dict(decoder), code_dim=code_dim, patch_dim=p * p * 3,
                                 grid=grid)
    return cls(model=tokenizer, patch_size=p, vocab_size=vocab_size, decay=decay, beta=beta,
               norm_pix_loss=norm_pix_loss, kmeans_iterations=kmeans_iterations,
               kmeans_samples=max(vocab_size, kmeans_samples_per_code * vocab_size), encoder_spec=spec)

"""Masked Autoencoders (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners").

The encoder sees only the visible 25% of the patches (random per-sample shuffle); a light decoder reconstructs the
pixels of every patch from the encoded visible tokens and shared mask tokens; the loss is the MSE on the masked
patches only, against per-patch normalised pixels (`norm_pix_loss`). Representation for evaluation: the [CLS] token
after the encoder's final LayerNorm (the MAE linear-probe protocol), or the mean of the patch tokens ("gap").
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.ops import image
from ssl_jax import losses
from ssl_jax import masking
from ssl_jax.methods import contract
from ssl_jax.models import vit


class MAEModel(nn.Module):
  """Encoder + decoder. `__call__` reconstructs; `encode` gives features."""
  encoder: dict
  decoder: dict
  patch_dim: int
  grid: tuple[int, int]

  def setup(self):
    self.vit = vit.ViT(**self.encoder, name="encoder")
    self.dec = vit.MAEDecoder(patch_dim=self.patch_dim, grid=self.grid, **self.decoder, name="decoder")

  def __call__(self, images, ids_keep, ids_restore):
    return self.dec(self.vit(images, ids_keep), ids_restore)

  def encode(self, images):
    return self.vit(images)


@dataclasses.dataclass(frozen=True)
class MAE(contract.Method):
  """MAE behind the method contract (`ssl_jax.methods.contract.Method`)."""
  reconstructs = True

  model: MAEModel
  patch_size: int
  num_patches: int
  mask_ratio: float
  norm_pix_loss: bool
  feature: str
  encoder_spec: tuple = ()

  def init(self, rng, batch):
    images = batch["image"]
    m = masking.random_masking(jax.random.fold_in(rng, 1), images.shape[0], self.num_patches, self.mask_ratio)
    params = self.model.init(rng, images, m.ids_keep, m.ids_restore)["params"]
    return params, {}

  def loss(self, params, extra, batch, rng, step):
    del step
    images = batch["image"]
    m = masking.random_masking(rng, images.shape[0], self.num_patches, self.mask_ratio)
    pred = self.model.apply({"params": params}, images, m.ids_keep, m.ids_restore)
    target = masking.patchify(images, self.patch_size)
    # Every example has the same number of masked patches, so the mean of per-example losses is MAE's loss.
    loss = jnp.mean(losses.mae_loss(pred, target, m.mask, norm_pix=self.norm_pix_loss))
    return loss, ({"loss": loss}, extra)

  def encoders(self, params, extra):
    """The encoder (`backbone.create` keywords, variables), for fine-tuning, probing and export."""
    del extra
    return {"image": (dict(self.encoder_spec), {"params": {"vit": params["encoder"]}})}

  def reconstruct(self, params, extra, batch, rng):
    """Pictures of MAE at work: `batch["image"]` (normalised) -> (input, masked input, reconstruction), uint8.

    Masked patches are grey in the masked input; the reconstruction shows the predicted pixels of the masked patches
    with the visible patches pasted in (MAE's "reconstruction + visible"). With `norm_pix_loss` the predictions are
    per-patch normalised, so each is mapped back with its true patch's mean and variance, as MAE's demo does.
    """
    del extra
    x = batch["image"]
    b, h, w, _ = x.shape
    m = masking.random_masking(rng, b, self.num_patches, self.mask_ratio)
    pred = self.model.apply({"params": params}, x, m.ids_keep, m.ids_restore)
    target = masking.patchify(x, self.patch_size)
    if self.norm_pix_loss:
      mean, var = jnp.mean(target, -1, keepdims=True), jnp.var(target, -1, keepdims=True, ddof=1)
      pred = pred * jnp.sqrt(var + 1e-6) + mean
    masked = m.mask[..., None] > 0
    grey = image.normalize(jnp.full((3,), 128, jnp.uint8))
    grey = masking.patchify(jnp.broadcast_to(grey, x.shape), self.patch_size)
    to_uint8 = lambda patches: image.denormalize(masking.unpatchify(patches, self.patch_size, h, w))
    masked_input = jnp.where(masked, grey, target)
    return image.denormalize(x), to_uint8(masked_input), to_uint8(jnp.where(masked, pred, target))

  def represent(self, params, extra, batch):
    del extra
    tokens = self.model.apply({"params": params}, batch["image"], method=MAEModel.encode)
    if self.feature == "cls":
      return {"image": tokens[:, 0].astype(jnp.float32)}
    return {"image": jnp.mean(tokens[:, 1:], axis=1).astype(jnp.float32)}

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, mask_ratio: float = 0.75, norm_pix_loss: bool = True,
             feature: str = "cls", decoder: dict) -> "MAE":
    """Builds MAE.

    Args:
      model: encoder keyword arguments for `ssl_jax.models.vit.vit_kwargs` (variant, sizes, posemb, dtype,
        attention_impl, drop_path, remat, scan; the decoder follows dtype, attention_impl, remat and scan).
      run: the run's facts (MAE uses the image shape).
      mask_ratio: fraction of patches removed (paper: 0.75).
      norm_pix_loss: per-patch normalised pixel targets (paper: True for the reported numbers).
      feature: "cls" or "gap", the representation given to evaluators.
      decoder: width, depth, num_heads, mlp_dim of the decoder (paper: 512, 8, 16, 2048).
    """
    model = dict(model)
    arch = model.pop("arch", "vit")
    if arch != "vit":
      raise ValueError(f"MAE's encoder is a ViT, not config.model.arch={arch!r} (build it with config_lib.vit).")
    enc = vit.vit_kwargs(**model)
    if not enc["class_token"]:
      raise ValueError("MAE's encoder and decoder carry a [CLS] token: leave config.model.class_token unset (True).")
    if not 0.0 <= mask_ratio < 1.0:
      raise ValueError(f"method.mask_ratio must be in [0, 1), got {mask_ratio}.")
    if feature not in ("cls", "gap"):
      raise ValueError(f"method.feature must be 'cls' or 'gap', got {feature!r}.")
    h, w, c = run.image_shape()
    p = enc["patch_size"]
    if h % p or w % p:
      raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}.")
    dec = dict(decoder, dtype=enc["dtype"], attention_impl=enc["attention_impl"], remat=enc["remat"], scan=enc["scan"])
    mae_model = MAEModel(encoder=enc, decoder=dec, patch_dim=p * p * c, grid=(h // p, w // p))
    spec = contract.freeze(dict(model, arch="vit", pool=feature))
    return cls(model=mae_model, patch_size=p, num_patches=(h // p) * (w // p), mask_ratio=mask_ratio,
               norm_pix_loss=norm_pix_loss, feature=feature, encoder_spec=spec)

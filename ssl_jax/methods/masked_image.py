"""What the masked-image-modelling methods with BEiT's input masking share (BEiT, data2vec): block-wise masks as
static-shape index lists, the encoder they build, release and evaluate, and the picture of the masks for the report
(`MaskedImageMethod`, their base class)."""

import jax
import jax.numpy as jnp

from ssl_jax import masking
from ssl_jax.methods import contract
from ssl_jax.models import vit
from ssl_jax.ops import image


class MaskedImageMethod(contract.Method):
  """The hooks BEiT and data2vec share. A subclass is a frozen dataclass with the fields `model`
  (`vit.MaskedImageModel`, whose encoder's parameters are `params["encoder"]`), `grid`, `patch_size`, `mask` (frozen
  `masking.blockwise_masking` keywords), `num_mask_patches` and `encoder_spec` (the released encoder's frozen spec)."""
  reconstructs = True
  pictures = ("masks", ("input", "masked"))

  def masks(self, rng: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """BEiT's block-wise masks: `[B, T]` bool, the masked patches' indices `[B, K]` and their validity `[B, K]`."""
    return block_masks(rng, batch_size, self.grid, self.mask, self.num_mask_patches)

  def represent(self, params, extra, batch):
    """The encoder's patch tokens after its final LayerNorm, averaged (the released encoder's "gap" features)."""
    del extra
    enc = self.model.encoder
    tokens = vit.ViT(**enc).apply({"params": params["encoder"]}, batch["image"])
    return {"image": jnp.mean(tokens[:, int(enc["class_token"]):], axis=1).astype(jnp.float32)}

  def encoders(self, params, extra):
    """The trained encoder (both official codes fine-tune it): (`backbone.create` keywords, variables)."""
    del extra
    return {"image": (dict(self.encoder_spec), {"params": {"vit": params["encoder"]}})}

  def reconstruct(self, params, extra, batch, rng):
    """Pictures of the masks: the input, and the input with the masked patches grey (what the encoder sees in
    place of them is the [MASK] embedding), uint8."""
    del params, extra
    mask, _, _ = self.masks(rng, batch["image"].shape[0])
    return mask_picture(batch["image"], mask, self.grid, self.patch_size)


def block_masks(rng: jax.Array, batch_size: int, grid: tuple[int, int], mask: tuple,
                capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """BEiT's block-wise masks (`masking.blockwise_masking` with the keywords `mask`, a frozen dict): `[B, T]` bool, the
  masked patches' indices `[B, capacity]` in increasing order, and their validity `[B, capacity]` (an example's count
  never exceeds `capacity`, the masking's target count; slots past it are padding)."""
  m = masking.blockwise_masking(rng, batch_size, grid, **dict(mask)).astype(bool)
  ids, valid = masking.mask_to_indices(m, capacity)
  return m, ids, valid


def mask_picture(images: jax.Array, mask: jax.Array, grid: tuple[int, int], patch_size: int):
  """(the input, the input with the masked patches grey), uint8 `[B, H, W, 3]`, from normalised `images` and the
  `[B, T]` bool `mask` (the student sees the [MASK] embedding there)."""
  shown = image.denormalize(images)
  b = images.shape[0]
  cells = jnp.repeat(jnp.repeat(mask.reshape(b, *grid, 1), patch_size, 1), patch_size, 2)
  return shown, jnp.where(cells, jnp.uint8(128), shown)


def encoder_kwargs(model: dict, run: contract.RunInfo, method: str) -> tuple[dict, dict, tuple[int, int]]:
  """(`vit.ViT` keywords, the spec the method releases, the patch grid) of a masked-image-modelling encoder built
  from `config.model`, refusing what the method cannot use: not a ViT, a pooling other than the average of the patch
  tokens, no [MASK] embedding, an image size the patches do not tile."""
  model = dict(model)
  if model.pop("arch", "vit") != "vit":
    raise ValueError(f"{method}'s encoders are ViTs (build config.model with config_lib.vit).")
  if model.pop("pool", None) not in (None, "gap"):
    raise ValueError(f"{method}'s features are the average-pooled patch tokens: set config.model.pool='gap' or "
                     "leave it unset.")
  enc = vit.vit_kwargs(**model)
  if not enc["mask_token"]:
    raise ValueError(f"{method}'s encoder replaces masked patches by a [MASK] embedding: set "
                     "config.model.mask_token=True.")
  h, w, _ = run.image_shape()
  p = enc["patch_size"]
  if h % p or w % p:
    raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}.")
  return enc, dict(model, arch="vit", pool="gap"), (h // p, w // p)


def mask_settings(grid: tuple[int, int], *, num_mask_patches: float, min_mask_patches_per_block: int,
                  max_mask_patches_per_block: int | None, mask_aspect: float) -> tuple[dict, int]:
  """(`masking.blockwise_masking` keywords, the masked count) from a method's mask hyperparameters; a count below 1
  is a fraction of the patches."""
  t = grid[0] * grid[1]
  count = int(round(num_mask_patches * t)) if num_mask_patches < 1 else int(num_mask_patches)
  if not 0 < count < t:
    raise ValueError(f"method.num_mask_patches={num_mask_patches}: mask between 1 and {t - 1} of the {t} patches "
                     "(a count, or a fraction below 1).")
  return dict(num_masking_patches=count, min_num_patches=min_mask_patches_per_block,
              max_num_patches=max_mask_patches_per_block, min_aspect=mask_aspect), count

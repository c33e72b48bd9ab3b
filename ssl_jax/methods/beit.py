"""BEiT (Bao et al. 2022, "BEiT: BERT Pre-Training of Image Transformers"), as the official code (microsoft/unilm
`beit/`, `run_beit_pretraining.py`, `engine_for_pretraining.py`, `modeling_pretrain.py`), with a visual tokenizer
that needs no download.

A ViT with a [MASK] embedding, a relative position bias shared by all blocks and LayerScale (`vit.MaskedImageModel`,
the same student as data2vec's) sees the image with BEiT's block-wise mask (`masking.blockwise_masking`, 75 of 196
patches for ViT-B/16); a linear head (`lm_head`) on its final tokens predicts, at the masked patches, the visual
token of each patch, with cross-entropy averaged over the masked patches. Representation and release: the encoder,
features the mean of its patch tokens after the final LayerNorm.

Visual tokens. The official code tokenizes a second, 112-pixel view of the same crop with DALL-E's discrete VAE
(8192 codes, 8x downsampling, so 14 x 14 tokens), whose weights cannot be downloaded here. `tokenizer` chooses:

- "random_projection": BEST-RQ's frozen random-projection quantizer (`ssl_jax.ops.quantize`; Chiu et al. 2022)
  on each patch's normalised pixels: a random `[p * p * 3, dim]` projection and `vocab_size` random unit vectors,
  the code the nearest to the normalised projection. It needs no training and no second view; it is drawn from
  `tokenizer_seed` and kept in the state (`extra["tokenizer"]`), so a run's targets never change. No published BEiT
  number uses it (BEST-RQ is a speech method): compare with this code's own runs, and with MAE, whose pixel
  targets it discretises.
- "vq_tokenizer": the codes of a tokenizer trained with ssl_jax (`ssl_jax.methods.vq_tokenizer`, BEiT v2's VQ
  architecture with a pixel target), read from its run (`tokenizer_workdir`) when this run starts and kept in this
  run's state (`extra["tokenizer"]`: its parameters and codebook), so a resumed run never reads it again. Its patch
  grid must be this encoder's (the same image size and patch size: one token per patch), its vocabulary
  `vocab_size`. No published BEiT number uses it either.

Logged: `masked_token_accuracy` (the official `mlm_acc`), `mask/masked_tokens`, and the tokenizer's use of its
vocabulary on the batch (`tokenizer/usage`, the fraction of codes that occur; `tokenizer/perplexity`).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ssl_jax import masking
from ssl_jax.methods import contract
from ssl_jax.methods import masked_image
from ssl_jax.models import vit
from ssl_jax.ops import quantize

TOKENIZERS = ("random_projection", "vq_tokenizer")


@dataclasses.dataclass(frozen=True)
class BEiT(masked_image.MaskedImageMethod):
  """BEiT behind the method contract (`ssl_jax.methods.contract.Method`)."""
  reads_runs = ("tokenizer_workdir",)

  model: vit.MaskedImageModel
  grid: tuple[int, int]
  patch_size: int
  mask: tuple
  num_mask_patches: int
  tokenizer: str
  vocab_size: int
  tokenizer_dim: int
  tokenizer_seed: int
  encoder_spec: tuple = ()
  tokenizer_method: Any = None                       # the trained tokenizer's method ("vq_tokenizer")

  def visual_tokens(self, tokenizer_state, images) -> jax.Array:
    """The visual token of every patch of normalised `images` `[B, H, W, 3]`: `[B, T]` int32."""
    if self.tokenizer == "vq_tokenizer":
      return self.tokenizer_method.codes(tokenizer_state["params"], tokenizer_state["extra"], images)
    return quantize.random_projection_codes(tokenizer_state, masking.patchify(images, self.patch_size))

  def init(self, rng, batch):
    images = batch["image"]
    mask, ids, _ = self.masks(jax.random.fold_in(rng, 1), images.shape[0])
    params = self.model.init(rng, images, mask, ids)["params"]
    if self.tokenizer == "vq_tokenizer":    # shapes only: `load_runs` puts the trained tokenizer in place
      tok_params, tok_extra = self.tokenizer_method.init(jax.random.fold_in(rng, 2), batch)
      return params, {"tokenizer": {"params": tok_params, "extra": tok_extra}}
    tokenizer = quantize.random_projection_init(jax.random.key(self.tokenizer_seed), self.patch_size ** 2 * 3,
                                                dim=self.tokenizer_dim, vocab_size=self.vocab_size)
    return params, {"tokenizer": tokenizer}

  def load_runs(self, params, extra, states):
    """The trained tokenizer's parameters and codebook (`states["tokenizer_workdir"]`) as `extra["tokenizer"]`."""
    tok_params, tok_extra = states["tokenizer_workdir"]
    return params, dict(extra, tokenizer={"params": tok_params, "extra": tok_extra})

  def loss(self, params, extra, batch, rng, step):
    del step
    images = batch["image"]
    k_mask, k_drop = jax.random.split(rng)
    mask, ids, valid = self.masks(k_mask, images.shape[0])
    tokens = self.visual_tokens(extra["tokenizer"], images)                            # [B, T]
    labels = jnp.take_along_axis(tokens, ids, axis=1)                                 # [B, K]
    logits = self.model.apply({"params": params}, images, mask, ids, train=True, rngs={"dropout": k_drop})
    weight = valid.astype(jnp.float32)
    total = jnp.maximum(jnp.sum(weight), 1.0)
    loss = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels) * weight) / total
    hits = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    usage = quantize.code_usage(tokens, self.vocab_size)
    metrics = {
        "loss": loss,
        "masked_token_accuracy": jnp.sum(hits * weight) / total,
        "mask/masked_tokens": jnp.mean(jnp.sum(weight, axis=1)),
        "tokenizer/usage": usage["usage"],
        "tokenizer/perplexity": usage["perplexity"],
    }
    return loss, (metrics, extra)

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, num_mask_patches: float = 75,
             min_mask_patches_per_block: int = 16, max_mask_patches_per_block: int | None = None,
             mask_aspect: float = 0.3, tokenizer: str = "random_projection", vocab_size: int = 8192,
             tokenizer_dim: int = 16, tokenizer_seed: int = 0, tokenizer_workdir: str | None = None,
             runs: dict | None = None) -> "BEiT":
    """Builds BEiT.

    Args:
      model: encoder keywords for `ssl_jax.models.vit.vit_kwargs` (BEiT ViT-B/16: `posemb="none",
        relative_position_bias=True, mask_token=True, layer_scale=0.1, init_std=0.02, init_truncation=1.0,
        depth_scaled_init=True, drop_path=0.1`); `pool` must be "gap" or unset.
      run: the run's facts (image shape).
      num_mask_patches: patches to mask per image (75 of 196, 40%); a value below 1 is a fraction of the patches.
      min_mask_patches_per_block, max_mask_patches_per_block, mask_aspect: BEiT's block-wise masking (16, None: the
        masked count, 0.3: aspect ratios in (0.3, 1 / 0.3)).
      tokenizer: where the visual tokens come from (`TOKENIZERS`; see the module docstring).
      vocab_size: the visual vocabulary (BEiT: 8192, DALL-E's).
      tokenizer_dim: the random projection's dimension (BEST-RQ: 16).
      tokenizer_seed: the seed of the random projection and codebook.
      tokenizer_workdir: with `tokenizer="vq_tokenizer"`, the workdir of the tokenizer's run.
      runs: the trainer's: `{"tokenizer_workdir": the tokenizer run's method}` (`contract.Method.reads_runs`).
    """
    enc, spec, grid = masked_image.encoder_kwargs(model, run, "BEiT")
    mask, count = masked_image.mask_settings(
        grid, num_mask_patches=num_mask_patches, min_mask_patches_per_block=min_mask_patches_per_block,
        max_mask_patches_per_block=max_mask_patches_per_block, mask_aspect=mask_aspect)
    if tokenizer not in TOKENIZERS:
      raise ValueError(f"method.tokenizer={tokenizer!r} is unknown; use one of {TOKENIZERS}.")
    if vocab_size < 2 or tokenizer_dim < 1:
      raise ValueError(f"method.vocab_size={vocab_size}, method.tokenizer_dim={tokenizer_dim}: a vocabulary of 2 or "
                       "more codes and a projection of 1 or more dimensions.")
    tokenizer_method = None
    if tokenizer == "vq_tokenizer":
      tokenizer_method = (runs or {}).get("tokenizer_workdir")
      if tokenizer_method is None:
        raise ValueError("method.tokenizer='vq_tokenizer' reads a trained tokenizer: set method.tokenizer_workdir to "
                         "the --workdir of a vq_tokenizer run (configs/vqvae_tokenizer.py).")
      if type(tokenizer_method).__name__ != "VQTokenizer":
        raise ValueError(f"method.tokenizer_workdir holds a {type(tokenizer_method).__name__} run, not a "
                         "vq_tokenizer run.")
      if tokenizer_method.model.grid != grid:
        raise ValueError(f"the tokenizer in method.tokenizer_workdir tokenizes a {tokenizer_method.model.grid} patch "
                         f"grid and this encoder has {grid}: BEiT needs one token per patch (the same image and "
                         "patch sizes).")
      if tokenizer_method.vocab_size != vocab_size:
        raise ValueError(f"method.vocab_size={vocab_size}, but the tokenizer in method.tokenizer_workdir has "
                         f"{tokenizer_method.vocab_size} codes: set method.vocab_size={tokenizer_method.vocab_size}.")
    elif tokenizer_workdir:
      raise ValueError(f"method.tokenizer_workdir is read with method.tokenizer='vq_tokenizer', not {tokenizer!r}.")
    return cls(model=vit.MaskedImageModel(encoder=enc, out_dim=vocab_size), grid=grid, patch_size=enc["patch_size"],
               mask=contract.freeze(mask), num_mask_patches=count, tokenizer=tokenizer, vocab_size=vocab_size,
               tokenizer_dim=tokenizer_dim, tokenizer_seed=tokenizer_seed, encoder_spec=contract.freeze(spec),
               tokenizer_method=tokenizer_method)

"""data2vec for images (Baevski et al. 2022, "data2vec: A General Framework for Self-supervised Learning in Speech,
Vision and Language"), as the official vision code (facebookresearch/data2vec_vision, `run_cyclical.py`,
`engine_for_cyclical.py`, `modeling_cyclical.py`).

The student, a BEiT-style ViT (a [CLS] token, a [MASK] embedding, a relative position bias shared by all blocks,
LayerScale), sees the image with BEiT's block-wise mask (`masking.blockwise_masking`; 120 of 196 patches for
ViT-B/16) put in place of the masked patches' embeddings; a linear head (`lm_head`) on its final tokens regresses,
at the masked patches only, the teacher's representation of the whole, unmasked image. The teacher is an EMA of the
student (constant momentum 0.9998 for ViT-B) run without stochastic depth; its targets are built from the residual
stream after each of the top K blocks (`layer_results="end"`, blocks 6..11 of 12 for ViT-B, K = 6), each
layer-normalised without affine parameters, averaged, and layer-normalised again (`post_target_layer_norm`), all
with `F.layer_norm`'s eps 1e-5 (`losses.data2vec_targets`). The loss is smooth L1 with beta 2, averaged over every
element of every masked patch of the batch. Representation and release: the student encoder (the official code
fine-tunes the student), features the mean of its patch tokens after the final LayerNorm.

Static shapes: the masked patches of each example are gathered into `num_mask_patches` slots (the block-wise
masking never masks more); the slots beyond an example's count are left out of the loss.

Logged: `mask/masked_tokens` (patches masked per example), the targets' collapse monitors
(`monitor/target_token_std`, the per-dimension std over all patch tokens of the targets, about 1 when the patches
differ and 0 when every patch maps to one vector; `monitor/embedding_std` and `monitor/rankme` of the average-pooled
targets), and `teacher_momentum`.

tests/test_data2vec_reference.py compares the relative position index, the target construction, one loss and its
gradients with a PyTorch transcription of the official code, and the mask counts with the official generator's.
"""

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import masking
from ssl_jax import monitors
from ssl_jax.methods import contract
from ssl_jax.methods import masked_image
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.models import vit


@dataclasses.dataclass(frozen=True)
class Data2Vec(masked_image.MaskedImageMethod):
  """data2vec (vision) behind the method contract (`ssl_jax.methods.contract.Method`)."""
  model: vit.MaskedImageModel
  teacher: vit.ViT
  grid: tuple[int, int]
  patch_size: int
  mask: tuple
  num_mask_patches: int
  top_k: int
  layer_norm_targets: str | None
  final_norm_targets: str | None
  target_eps: float
  loss_kind: str
  beta: float
  momentum: tuple[float, float]
  total_steps: int
  encoder_spec: tuple = ()

  def targets(self, teacher_params, images):
    """The teacher's targets for every patch, `[B, T, D]` float32 (`losses.data2vec_targets` of its top blocks)."""
    _, layers = self.teacher.apply({"params": teacher_params}, images, return_layers=True)
    layers = layers[:, :, int(self.teacher.class_token):]                  # [depth, B, T, D], no [CLS]
    return losses.data2vec_targets(layers, self.top_k, self.layer_norm_targets, self.final_norm_targets,
                                   eps=self.target_eps)

  def init(self, rng, batch):
    images = batch["image"]
    mask, ids, _ = self.masks(jax.random.fold_in(rng, 1), images.shape[0])
    params = self.model.init(rng, images, mask, ids)["params"]
    return params, {"teacher": params["encoder"]}

  def loss(self, params, extra, batch, rng, step):
    images = batch["image"]
    k_mask, k_drop = jax.random.split(rng)
    mask, ids, valid = self.masks(k_mask, images.shape[0])
    targets = jax.lax.stop_gradient(self.targets(extra["teacher"], images))             # [B, T, D]
    pred = self.model.apply({"params": params}, images, mask, ids, train=True, rngs={"dropout": k_drop})
    per_token = losses.regression_loss(pred, masking.gather_tokens(targets, ids), kind=self.loss_kind,
                                       beta=self.beta)                                   # [B, K]
    weight = valid.astype(jnp.float32)
    loss = jnp.sum(per_token * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    metrics = {
        "loss": loss,
        "mask/masked_tokens": jnp.mean(jnp.sum(weight, axis=1)),
        "monitor/target_token_std": jnp.mean(jnp.std(targets.reshape(-1, targets.shape[-1]), axis=0)),
        "teacher_momentum": self._momentum(step),
        **monitors.collapse_metrics(jnp.mean(targets, axis=1)),
    }
    return loss, (metrics, extra)

  def _momentum(self, step):
    return teacher_lib.linear_increase(step, self.total_steps, *self.momentum)

  def after_update(self, params, extra, step):
    return dict(extra, teacher=teacher_lib.ema_update(extra["teacher"], params["encoder"], self._momentum(step)))

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, num_mask_patches: float = 120,
             min_mask_patches_per_block: int = 16, max_mask_patches_per_block: int | None = None,
             mask_aspect: float = 0.3, top_k: int = 6, layer_norm_targets: str | None = "layer",
             final_norm_targets: str | None = "layer", target_eps: float = 1e-5, loss: str = "smooth_l1",
             beta: float = 2.0, momentum=(0.9998, 0.9998)) -> "Data2Vec":
    """Builds data2vec.

    Args:
      model: encoder keywords for `ssl_jax.models.vit.vit_kwargs` (data2vec ViT-B/16: `posemb="none",
        relative_position_bias=True, mask_token=True, layer_scale=1e-4, init_std=0.02, init_truncation=1.0,
        depth_scaled_init=True, drop_path=0.25`); `pool` must be "gap" or unset.
      run: the run's facts (image shape, total steps).
      num_mask_patches: patches to mask per image (120 of 196); a value below 1 is a fraction of the patches.
      min_mask_patches_per_block, max_mask_patches_per_block, mask_aspect: BEiT's block-wise masking (16, None: no
        limit, 0.3: aspect ratios in (0.3, 1 / 0.3)).
      top_k: the teacher blocks averaged (the top K; ViT-B: 6, `--target_layers [6..11]`).
      layer_norm_targets: normalisation of each block's output before the average: "layer" (vision), "instance"
        (over the patches, per channel: the paper's speech recipe), or None.
      final_norm_targets: normalisation of the average: "layer" (vision's `post_target_layer_norm`), "instance",
        or None.
      target_eps: the epsilon of those normalisations (`F.layer_norm`'s and `F.instance_norm`'s 1e-5).
      loss: "smooth_l1" (vision) or "l2".
      beta: smooth L1's threshold (`--l1_beta`, 2 for ViT-B/L).
      momentum: the teacher's EMA momentum at the first and the last step, linear in between (ViT-B: constant
        0.9998).
    """
    enc, spec, grid = masked_image.encoder_kwargs(model, run, "data2vec")
    mask, count = masked_image.mask_settings(
        grid, num_mask_patches=num_mask_patches, min_mask_patches_per_block=min_mask_patches_per_block,
        max_mask_patches_per_block=max_mask_patches_per_block, mask_aspect=mask_aspect)
    if not 0 < top_k <= enc["depth"]:
      raise ValueError(f"method.top_k={top_k}: average between 1 and the encoder's {enc['depth']} blocks.")
    for name, value in (("layer_norm_targets", layer_norm_targets), ("final_norm_targets", final_norm_targets)):
      if value not in ("layer", "instance", None):
        raise ValueError(f"method.{name}={value!r}: use 'layer', 'instance' or None.")
    if loss not in ("smooth_l1", "l2"):
      raise ValueError(f"method.loss={loss!r}: use 'smooth_l1' or 'l2'.")
    return cls(model=vit.MaskedImageModel(encoder=enc, out_dim=enc["width"]), teacher=vit.ViT(**enc), grid=grid,
               patch_size=enc["patch_size"], mask=contract.freeze(mask), num_mask_patches=count, top_k=top_k,
               layer_norm_targets=layer_norm_targets, final_norm_targets=final_norm_targets, target_eps=target_eps,
               loss_kind=loss, beta=beta, momentum=tuple(momentum), total_steps=run.total_steps,
               encoder_spec=contract.freeze(spec))

"""I-JEPA (Assran et al. 2023, "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture").

A context encoder (a ViT without [CLS] token) sees one large block of the image minus four target blocks
(`masking.multiblock_masking`, the official `MaskCollator`); a narrow predictor (`vit.JEPAPredictor`) predicts, for
each target block separately, the target encoder's output at its patches from the context tokens and mask tokens
placed at the target positions. The target encoder, an EMA of the context encoder (momentum 0.996 -> 1, linear over
the run), sees the whole image; its outputs are layer-normalised (without affine parameters, eps 1e-5 as
`F.layer_norm`) and regressed with smooth L1 (beta 1), averaged over every predicted element. No augmentation beyond
a random resized crop: the masks make the task. Representation: the target encoder's patch tokens, average pooled
(the paper evaluates the target encoder).

Static shapes. The official collator truncates every context of a (per-GPU) batch to the smallest context of that
batch, and every target to the smallest target (all targets of a batch have one size). Here every context is
gathered into `context_capacity` slots and every target into `target_capacity` slots (the largest block
`multiblock_extremes` allows), and the slots beyond the batch's smallest count are padding: no valid token attends
to them (`segment_ids`) and the loss skips them, so the result equals the truncated computation. `mask_group` is the
official per-GPU batch over which the smallest context is taken (the global batch by default); a group whose smallest
context exceeds `context_capacity` is truncated to it (logged as `mask/context_truncated`, the fraction of such
examples): choose the capacity above what the masks need (`configs/ijepa_vit_h14.py` says how it was chosen).

Logged: `mask/context_tokens` and `mask/target_tokens` (the official log's mask-A / mask-B), the target features'
collapse monitors (`monitor/embedding_std`, `monitor/rankme` of the average-pooled target features;
`monitor/target_token_std`, the per-dimension std over all patch tokens of the normalised targets, about 1 when the
patches differ and 0 when every patch maps to one vector), and `target_momentum`.

tests/test_ijepa_reference.py compares one step with a PyTorch transcription of the official step and the mask
sampler's statistics with the official collator's.
"""

import dataclasses
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import masking
from ssl_jax import monitors
from ssl_jax.methods import contract
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.models import vit
from ssl_jax.ops import image


class IJEPAModel(nn.Module):
  """The context encoder (`encoder`) and the predictor (`predictor`); `__call__` predicts the target features."""
  encoder: dict
  predictor: dict

  def setup(self):
    self.vit = vit.ViT(**self.encoder, name="encoder")
    self.pred = vit.JEPAPredictor(**self.predictor, name="predictor")

  def __call__(self, images, masks: "Masks", train: bool = False):
    z = self.vit(images, masks.context_ids, train=train, keep_valid=masks.context_valid)
    return self.pred(z, masks.context_ids, masks.context_valid, masks.target_ids, masks.target_valid, train=train)


class Masks(NamedTuple):
  """One batch's masks as static-shape index lists.

  Attributes:
    context_ids, context_valid: `[B, Kc]` the context patches (increasing) and which slots hold one.
    target_ids, target_valid: `[B, M, Kt]` each target block's patches and which slots hold one.
    context_counts: `[B]` each example's context size before truncation to its group's smallest.
  """
  context_ids: jax.Array
  context_valid: jax.Array
  target_ids: jax.Array
  target_valid: jax.Array
  context_counts: jax.Array


@dataclasses.dataclass(frozen=True)
class IJEPA(contract.Method):
  """I-JEPA behind the method contract (`ssl_jax.methods.contract.Method`)."""
  reconstructs = True
  pictures = ("masks", ("input", "context", "targets"))

  model: IJEPAModel
  target: vit.ViT
  grid: tuple[int, int]
  patch_size: int
  mask: tuple
  context_capacity: int
  target_capacity: int
  mask_group: int | None
  momentum: tuple[float, float]
  total_steps: int
  target_eps: float
  encoder_spec: tuple = ()

  def masks(self, rng: jax.Array, batch_size: int, group: int | None = None) -> Masks:
    """The multi-block masks of a batch, truncated as the official collator does (see the module docstring)."""
    m = masking.multiblock_masking(rng, batch_size, self.grid, **dict(self.mask))
    b, num_targets, t = m.targets.shape
    target_ids, _ = masking.mask_to_indices(m.targets.reshape(b * num_targets, t), self.target_capacity)
    target_count = jnp.min(jnp.sum(m.targets, axis=-1))
    target_valid = jnp.broadcast_to(jnp.arange(self.target_capacity) < target_count,
                                    (b, num_targets, self.target_capacity))
    context_ids, _ = masking.mask_to_indices(m.context, self.context_capacity)
    counts = jnp.sum(m.context, axis=-1).astype(jnp.int32)
    g = group or b
    smallest = jnp.repeat(jnp.min(counts.reshape(b // g, g), axis=1), g)
    context_valid = jnp.arange(self.context_capacity)[None] < jnp.minimum(smallest, self.context_capacity)[:, None]
    return Masks(context_ids, context_valid, target_ids.reshape(b, num_targets, -1), target_valid, counts)

  def _targets(self, target_params, images, masks: Masks):
    """The target encoder's output `[B, T, D]`, its layer-normalisation `[B, T, D]`, and that at each target block
    `[B, M, Kt, D]` (the regression targets)."""
    out = jax.lax.stop_gradient(self.target.apply({"params": target_params}, images))
    h = losses.layer_norm(out, eps=self.target_eps)
    b, m, k = masks.target_ids.shape
    return out, h, masking.gather_tokens(h, masks.target_ids.reshape(b, m * k)).reshape(b, m, k, -1)

  def init(self, rng, batch):
    images = batch["image"]
    masks = self.masks(jax.random.fold_in(rng, 1), images.shape[0])
    params = self.model.init(rng, images, masks)["params"]
    return params, {"target": params["encoder"]}

  def loss(self, params, extra, batch, rng, step):
    images = batch["image"]
    k_mask, k_drop = jax.random.split(rng)
    masks = self.masks(k_mask, images.shape[0], self.mask_group)
    out, h, targets = self._targets(extra["target"], images, masks)
    z = self.model.apply({"params": params}, images, masks, train=True, rngs={"dropout": k_drop})
    per_position = losses.regression_loss(z, targets, kind="smooth_l1", beta=1.0)       # [B, M, Kt]
    weight = masks.target_valid.astype(jnp.float32)
    loss = jnp.sum(per_position * weight) / jnp.sum(weight)
    used = jnp.sum(masks.context_valid, axis=1)
    metrics = {
        "loss": loss,
        "mask/context_tokens": jnp.mean(used.astype(jnp.float32)),
        "mask/target_tokens": jnp.mean(jnp.sum(weight, axis=-1)),
        "mask/context_truncated": jnp.mean((masks.context_counts > self.context_capacity).astype(jnp.float32)),
        "monitor/target_token_std": jnp.mean(jnp.std(h.reshape(-1, h.shape[-1]), axis=0)),
        "target_momentum": self._momentum(step),
        **monitors.collapse_metrics(jnp.mean(out, axis=1)),
    }
    return loss, (metrics, extra)

  def _momentum(self, step):
    return teacher_lib.linear_increase(step, self.total_steps, *self.momentum)

  def after_update(self, params, extra, step):
    return dict(extra, target=teacher_lib.ema_update(extra["target"], params["encoder"], self._momentum(step)))

  def represent(self, params, extra, batch):
    del params
    tokens = self.target.apply({"params": extra["target"]}, batch["image"])
    return {"image": jnp.mean(tokens, axis=1).astype(jnp.float32)}

  def encoders(self, params, extra):
    """The target encoder (I-JEPA evaluates it): (`backbone.create` keywords, variables)."""
    del params
    return {"image": (dict(self.encoder_spec), {"params": {"vit": extra["target"]}})}

  def reconstruct(self, params, extra, batch, rng):
    """Pictures of the masks: (input, the patches the context encoder sees with the rest grey, the four target
    blocks tinted red, green, blue and yellow over the dimmed input), uint8. Contexts are truncated over groups of
    `mask_group` examples as in training (where it divides the batch; else each example keeps its whole context)."""
    del params, extra
    x = batch["image"]
    b, h, w, _ = x.shape
    masks = self.masks(rng, b, self.mask_group if self.mask_group and b % self.mask_group == 0 else 1)
    t = self.grid[0] * self.grid[1]
    rows = jnp.arange(b)[:, None]
    seen = jnp.zeros((b, t), bool).at[rows, masks.context_ids].max(masks.context_valid)
    picture = lambda mask: jnp.repeat(jnp.repeat(mask.reshape(b, *self.grid, 1), self.patch_size, 1),
                                      self.patch_size, 2)
    shown = image.denormalize(x).astype(jnp.float32)
    context = jnp.where(picture(seen), shown, 128.0)
    tints = jnp.array([[255, 0, 0], [0, 200, 0], [0, 64, 255], [255, 220, 0]], jnp.float32)
    targets = 0.4 * shown
    for i in range(masks.target_ids.shape[1]):
      block = jnp.zeros((b, t), bool).at[rows, masks.target_ids[:, i]].max(masks.target_valid[:, i])
      targets = jnp.where(picture(block), 0.5 * shown + 0.5 * tints[i % len(tints)], targets)
    as_uint8 = lambda y: jnp.clip(jnp.round(y), 0, 255).astype(jnp.uint8)
    return image.denormalize(x), as_uint8(context), as_uint8(targets)

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, predictor: dict, num_targets: int = 4,
             target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0), min_keep: int = 10,
             context_capacity: float = 1.0, mask_group: int | None = None, momentum=(0.996, 1.0),
             target_eps: float = 1e-5) -> "IJEPA":
    """Builds I-JEPA.

    Args:
      model: encoder keywords for `ssl_jax.models.vit.vit_kwargs` (I-JEPA: no [CLS] token, fixed sin-cos
        positions, truncated-normal 0.02 initialisation: `class_token=False, init_std=0.02`).
      run: the run's facts (image shape, total steps, batch size).
      predictor: width, depth, num_heads, mlp_dim of `vit.JEPAPredictor` (ViT-H/14: 384, 12, 16, 1536); it follows
        the encoder's dtype, attention_impl, init_std, remat and scan.
      num_targets, target_scale, target_aspect, context_scale, min_keep: the mask sampler (4, (0.15, 0.2),
        (0.75, 1.5), (0.85, 1.0), 10); the context block is square.
      context_capacity: the context slots, as a fraction of the patches (see the module docstring); never more than
        the largest context block has (which makes 1.0 exact).
      mask_group: examples over which the smallest context is taken (the official per-GPU batch, 128 for ViT-H/14);
        None: the global batch. Must divide the batch.
      momentum: the target encoder's EMA momentum at the first and the last step (0.996, 1.0), linear.
      target_eps: the epsilon of the targets' layer normalisation (`F.layer_norm`'s 1e-5).
    """
    model = dict(model)
    if model.pop("arch", "vit") != "vit":
      raise ValueError("I-JEPA's encoders are ViTs (build config.model with config_lib.vit).")
    if model.pop("pool", None) not in (None, "gap"):
      raise ValueError("I-JEPA's features are the average-pooled tokens: set config.model.pool='gap' or leave it "
                       "unset.")
    enc = vit.vit_kwargs(**model)
    if enc["class_token"]:
      raise ValueError("I-JEPA's encoders have no [CLS] token: set config.model.class_token=False.")
    h, w, _ = run.image_shape()
    p = enc["patch_size"]
    if h % p or w % p:
      raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}.")
    grid = (h // p, w // p)
    mask = dict(num_targets=num_targets, target_scale=tuple(target_scale), target_aspect=tuple(target_aspect),
                context_scale=tuple(context_scale), min_keep=min_keep)
    for name, scale, aspect in (("target", target_scale, target_aspect), ("context", context_scale, (1.0, 1.0))):
      smallest = masking.multiblock_extremes(grid, tuple(scale), tuple(aspect))[0]
      if smallest <= min_keep:
        raise ValueError(f"method: a {name} block (scale {tuple(scale)}) of the {grid[0]}x{grid[1]} patch grid can "
                         f"have {smallest} patches, not more than method.min_keep={min_keep}, and the official "
                         "sampler never finishes; lower min_keep or use a smaller patch size.")
    if not 0.0 < context_capacity <= 1.0:
      raise ValueError(f"method.context_capacity={context_capacity}: a fraction of the patches in (0, 1].")
    if mask_group is not None and run.batch_size is not None and run.batch_size % mask_group:
      raise ValueError(f"method.mask_group={mask_group} does not divide the batch of each step, {run.batch_size} "
                       "(config.batch_size / config.grad_accum_steps); choose a divisor.")
    pred = dict(predictor, out_dim=enc["width"], grid=grid, dtype=enc["dtype"], attention_impl=enc["attention_impl"],
                init_std=enc["init_std"], remat=enc["remat"], scan=enc["scan"])
    spec = contract.freeze(dict(model, arch="vit", pool="gap", class_token=False))
    t = grid[0] * grid[1]
    largest = math.prod(masking.multiblock_block_size(0.999999, grid, tuple(context_scale), (1.0, 1.0)))
    return cls(model=IJEPAModel(encoder=enc, predictor=pred), target=vit.ViT(**enc), grid=grid, patch_size=p,
               mask=contract.freeze(mask), context_capacity=min(max(1, int(round(context_capacity * t))), largest),
               target_capacity=masking.multiblock_extremes(grid, tuple(target_scale), tuple(target_aspect))[1],
               mask_group=mask_group, momentum=tuple(momentum), total_steps=run.total_steps, target_eps=target_eps,
               encoder_spec=spec)

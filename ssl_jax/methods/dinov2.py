"""DINOv2 (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without Supervision"): DINO's image-level
self-distillation plus iBOT's masked-patch self-distillation (Zhou et al. 2022) and the KoLeo regulariser, as the
official code (facebookresearch/dinov2: `train/ssl_meta_arch.py`, `loss/`, `data/collate.py`, `data/masking.py`,
`train/train.py`, `utils/param_groups.py`).

Student and teacher share an architecture: a ViT with a learned [MASK] embedding, a DINO head (3-layer GELU MLP,
bottleneck, l2-normalisation, weight-normalised prototypes with a trained gain) on its [CLS] token, and an iBOT head
on its patch tokens, the DINO head itself unless `separate_ibot_head` (DINOv2's default shares it; its ImageNet-22k
recipes separate them). The teacher is an EMA of the student (0.992 -> 1, cosine) without stochastic depth and sees
the two global crops whole; the student sees the global crops with iBOT masks (the [MASK] embedding in place of the
masked patches' embeddings, before the position embedding) and the local crops unmasked, one encoder pass per crop
size.

- DINO loss: cross-entropy from the teacher's distribution of each global crop's [CLS] token to the student's of
  every other crop (local crops included), averaged over the `2 * (2 + locals) - 2` pairs.
- iBOT loss: for each masked patch, cross-entropy from the teacher's distribution of that patch (unmasked input) to
  the student's (masked input); averaged over the crop's masked patches, then over all global crops (unmasked crops
  count as 0), as `iBOTPatchLoss.forward_masked`.
- KoLeo: `koleo_weight * sum over the two global crops of -mean log(distance to the nearest other [CLS] token)`, on
  the student's masked global crops' [CLS] backbone features, within each group of `group_size` images (DINOv2: per
  GPU, its batch of 64).
- Teacher targets: `centering="center"`, softmax of the teacher logits minus an EMA centre (0.9; one for the [CLS]
  logits, one for the masked patches' logits, each the mean over its tokens of the step) at the teacher temperature,
  or `"sinkhorn"`, Sinkhorn-Knopp over the global batch (its [CLS] logits; its masked patches). The teacher
  temperature rises linearly per step from 0.04 to 0.07 over `teacher_temp_warmup_steps` (DINOv2: 30 epochs of its
  1250-iteration "epochs"), then stays; the student temperature is 0.1.
- Masks (`masking.stratified_mask_counts`, DINOv2's `collate_data_and_cast`): in each group of `group_size` images,
  half of the `2 * group_size` global crops are masked, crop i of those with `int(T * U(lo_i, hi_i))` patches of the
  i-th stratum of [0.1, 0.5], by BEiT's block-wise generator (blocks of at least 4 patches, at most T / 2, aspect
  0.3-3.3); the counts are shuffled over the group's crops. The masked patches of a group are gathered into its
  static-size buffer (`masking.ibot_capacity`, DINOv2's `upperbound`), as the official code gathers them per GPU.
- The prototypes' learning rate is 0 during the first `freeze_last_layer_steps` (1 epoch) while AdamW's moments
  accumulate (`zero_lr_until`: DINOv2's `last_layer_lr_schedule`; DINO instead leaves them out of the optimizer).

BatchNorm in the heads (`use_bn`, an option of DINOv2's `DINOHead` that its training code refuses; the tiny digits
config needs it, as DINO's does): each head pass normalises over the rows it is given, the valid ones of the patch
buffer only, and the teacher's heads use the batch's statistics and keep running statistics of their own (as
`methods/dino.py` with `use_bn_in_head`).

Representation and release: the teacher's encoder (DINOv2 evaluates and releases the teacher), its [CLS] token after
the final LayerNorm.

Logged: `dino_loss`, `ibot_loss`, `koleo_loss`; the teacher's entropy and teacher-student KL of the [CLS] targets
(`monitor/teacher_entropy`, `monitor/teacher_student_kl`) and of the masked-patch targets
(`monitor/ibot_teacher_entropy`), the teacher features' collapse monitors, `mask/masked_tokens` (patches masked per
masked crop), `teacher_temp`, `teacher_momentum`.

tests/test_dinov2_reference.py compares the losses, the centres and their gradients with a PyTorch transcription of
the official `forward_backward`, the mask counts with `collate_data_and_cast`, and the iBOT loss with a
hand-computed case.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import masking
from ssl_jax import monitors
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.methods import masked_image
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.models import heads
from ssl_jax.models import vit


class DINOv2Network(nn.Module):
  """A ViT (`vit.ViT` keywords `encoder`, with a [MASK] embedding) with a DINO head on its [CLS] token and an iBOT
  head on its patch tokens (`heads.DINOHead` fields `dino_head`; `ibot_head` None: the DINO head serves both)."""
  encoder: dict
  dino_head: dict
  ibot_head: dict | None = None

  def setup(self):
    self.vit = vit.ViT(**self.encoder)
    self.dino = heads.DINOHead(**self.dino_head)
    self.ibot = heads.DINOHead(**self.ibot_head) if self.ibot_head is not None else None

  def __call__(self, images, mask=None, train: bool = False):
    """`images` `[N, H, W, 3]` (and the `[N, T]` bool mask) -> (DINO logits `[N, K]`, iBOT logits `[1, N T, K']`)."""
    tokens = self.tokens(images, mask, train)
    patches = tokens[None, :, 1:].reshape(1, -1, tokens.shape[-1])
    return self.heads(tokens[:, 0], patches, jnp.ones(patches.shape[:2], bool), train)

  def tokens(self, images, mask=None, train: bool = False):
    """The encoder's tokens after its final LayerNorm, `[N, 1 + T, D]` ([CLS] first; DINOv2's `x_norm_*`)."""
    return self.vit(images, train=train, mask=mask)

  def heads(self, cls_feats, patch_feats, valid, train: bool = False):
    """The heads on [CLS] features `[N, D]` and a buffer of patch features `[G, C, D]` whose slots `valid` `[G, C]`
    marks: ([CLS] logits `[N, K]`, patch logits `[G, C, K']`). A shared head runs once over both, as DINOv2 runs its
    head over the concatenated tokens; with BatchNorm in the heads, their statistics are those of the valid rows."""
    if self.ibot_head is not None:
      return self.dino(cls_feats, train), self.ibot(patch_feats, train, mask=valid)
    n, (g, c) = cls_feats.shape[0], valid.shape
    rows = jnp.concatenate([cls_feats, patch_feats.reshape(g * c, -1)], axis=0)
    out = self.dino(rows, train, mask=jnp.concatenate([jnp.ones((n,), bool), valid.reshape(-1)]))
    return out[:n], out[n:].reshape(g, c, -1)


def _apply_heads(net: DINOv2Network, params, stats, cls_feats, patch_feats, valid):
  """`net.heads` in training mode: (outputs, updated BatchNorm statistics; `{}` without BatchNorm)."""
  if not stats:
    return net.apply({"params": params}, cls_feats, patch_feats, valid, True, method=DINOv2Network.heads), stats
  out, updates = net.apply({"params": params, "batch_stats": stats}, cls_feats, patch_feats, valid, True,
                           method=DINOv2Network.heads, mutable=["batch_stats"])
  return out, updates["batch_stats"]


def masked_patch_slots(mask: jax.Array, groups: int, capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Each group's masked patches as a static-size buffer (DINOv2's `mask_indices_list` within its `upperbound`).

  Args:
    mask: `[N, T]` bool, N crops in `groups` groups of consecutive crops.
    groups: G.
    capacity: C, the most masked patches a group can have.

  Returns:
    (`[G, C]` indices into the group's flattened `[N / G * T]` patches, `[G, C]` validity, `[G, C]` weights: 1 / the
    masked count of the slot's crop, 0 at invalid slots; `masks_weight`).
  """
  n, t = mask.shape
  ids, valid = masking.mask_to_indices(mask.reshape(groups, n // groups * t), capacity)
  per_crop = jnp.repeat(1.0 / jnp.maximum(jnp.sum(mask, axis=1), 1), t).reshape(groups, n // groups * t)
  return ids, valid, jnp.where(valid, jnp.take_along_axis(per_crop, ids, axis=1), 0.0)


def objective(*, s_cls, s_patch, s_cls_feats, t_cls, t_patch, valid, weight, dino_center, ibot_center,
              teacher_temp, student_temp=0.1, centering="center", center_momentum=0.9, dino_weight=1.0,
              ibot_weight=1.0, koleo_weight=0.1):
  """DINOv2's loss from the heads' outputs (the arithmetic of the official `forward_backward` after the heads).

  Args:
    s_cls: `[2 + L, B, K]` student [CLS] logits, the two global crops first, then the L local crops.
    s_patch: `[G, C, K']` student patch logits of each group's buffer of masked patches.
    s_cls_feats: `[G, n, 2, D]` the student's [CLS] backbone features of the masked global crops, by group of n
      images (KoLeo's neighbourhoods).
    t_cls: `[2, B, K]` teacher [CLS] logits of the whole global crops.
    t_patch: `[G, C, K']` teacher logits of the same patches as `s_patch`.
    valid: `[G, C]` bool, the buffer slots that hold a masked patch.
    weight: `[G, C]` 1 / (the masked patches of the slot's crop), 0 at invalid slots.
    dino_center, ibot_center: `[K]`, `[K']` EMA centres (`centering="center"`).
    teacher_temp, student_temp, centering, center_momentum: as `DINOv2.create`.
    dino_weight, ibot_weight, koleo_weight: the losses' weights.

  Returns:
    (the weighted total, `{"dino_loss", "ibot_loss", "koleo_loss"}` unweighted, the new centres, the teacher's
    target distributions `([2, B, K], [G, C, K'])`).
  """
  n_global, b = t_cls.shape[:2]
  if centering == "sinkhorn":
    q_cls = losses.sinkhorn_knopp(t_cls.reshape(n_global * b, -1), teacher_temp).reshape(t_cls.shape)
    q_patch = losses.sinkhorn_knopp(t_patch.reshape(-1, t_patch.shape[-1]), teacher_temp,
                                    valid=valid.reshape(-1)).reshape(t_patch.shape)
  else:
    q_cls = jax.nn.softmax((t_cls.astype(jnp.float32) - dino_center) / teacher_temp, axis=-1)
    q_patch = jax.nn.softmax((t_patch.astype(jnp.float32) - ibot_center) / teacher_temp, axis=-1)
  q_cls, q_patch = jax.lax.stop_gradient(q_cls), jax.lax.stop_gradient(q_patch)
  new_dino_center = losses.update_center(dino_center, t_cls, center_momentum)
  # iBOT's centre: each group's mean over its masked patches, averaged over the groups (DINOv2: per GPU, then the
  # all-reduce mean).
  group_mean = (jnp.sum(t_patch.astype(jnp.float32) * valid[..., None], axis=1)
                / jnp.maximum(jnp.sum(valid, axis=1), 1)[:, None])
  new_ibot_center = losses.update_center(ibot_center, group_mean, center_momentum)

  dino_loss = jnp.mean(losses.dino_cross_entropy(s_cls, q_cls, student_temp))
  log_p = jax.nn.log_softmax(s_patch.astype(jnp.float32) / student_temp, axis=-1)
  ibot_loss = -jnp.sum(weight * jnp.sum(q_patch * log_p, axis=-1)) / (n_global * b)
  koleo = jax.vmap(jax.vmap(lambda x: jnp.mean(losses.koleo_loss(x)), in_axes=1))(s_cls_feats.astype(jnp.float32))
  koleo_loss = jnp.sum(jnp.mean(koleo, axis=0))              # the two crops' terms summed, the groups averaged
  total = dino_weight * dino_loss + ibot_weight * ibot_loss + koleo_weight * koleo_loss
  return (total, {"dino_loss": dino_loss, "ibot_loss": ibot_loss, "koleo_loss": koleo_loss},
          (new_dino_center, new_ibot_center), (q_cls, q_patch))


@dataclasses.dataclass(frozen=True)
class DINOv2(contract.Method):
  """DINOv2 / iBOT behind the method contract (`ssl_jax.methods.contract.Method`)."""
  net: DINOv2Network
  teacher: DINOv2Network
  grid: tuple[int, int]
  patch_size: int
  global_group: str
  local_group: str | None
  group_size: int
  mask_probability: float
  mask_ratio: tuple[float, float]
  mask_shape: tuple
  dino_weight: float
  ibot_weight: float
  koleo_weight: float
  student_temp: float
  teacher_temp: tuple[float, float]
  teacher_temp_warmup_steps: int
  center_momentum: float
  centering: str
  momentum_base: float
  freeze_last_layer_steps: int
  total_steps: int
  num_classes: int | None
  model_spec: tuple = ()

  reconstructs = True
  pictures = ("masks", ("input", "masked"))

  # -- masks ---------------------------------------------------------------------------------------------------------

  def masks(self, rng: jax.Array, num_crops: int) -> jax.Array:
    """iBOT masks `[num_crops, T]` bool for crops in groups of `2 * group_size` (consecutive crops; example-major
    flattened views keep an image's crops together), each group drawn as one DINOv2 GPU batch."""
    t = self.grid[0] * self.grid[1]
    per_group = min(2 * self.group_size, num_crops)
    groups = num_crops // per_group
    k_count, k_block = jax.random.split(rng)
    counts = jax.vmap(lambda k: masking.stratified_mask_counts(
        k, per_group, t, mask_probability=self.mask_probability, ratio=self.mask_ratio))(
            jax.random.split(k_count, groups))
    return masking.blockwise_masking(k_block, num_crops, self.grid, num_masking_patches=counts.reshape(-1),
                                     **dict(self.mask_shape)).astype(bool)

  def capacity(self, crops_per_group: int) -> int:
    """The static size of one group's buffer of masked patches (DINOv2's `upperbound`)."""
    return masking.ibot_capacity(crops_per_group, self.grid[0] * self.grid[1], mask_probability=self.mask_probability,
                                 ratio=self.mask_ratio)

  # -- the contract --------------------------------------------------------------------------------------------------

  def init(self, rng, batch):
    crops = batch["views"][self.global_group][:, 0]
    variables = self.net.init(rng, crops, jnp.zeros(crops.shape[:1] + (self.grid[0] * self.grid[1],), bool))
    params, stats = variables["params"], variables.get("batch_stats", {})
    k_dino = heads.DINOHead(**self.net.dino_head).out_dim
    k_ibot = heads.DINOHead(**(self.net.ibot_head or self.net.dino_head)).out_dim
    extra = {"teacher": params, "dino_center": jnp.zeros((k_dino,), jnp.float32),
             "ibot_center": jnp.zeros((k_ibot,), jnp.float32), "batch_stats": stats, "teacher_stats": stats}
    return {"net": params, "probe": joint.init_probe(self.num_classes, self.net.encoder["width"])}, extra

  def loss(self, params, extra, batch, rng, step):
    global_views = batch["views"][self.global_group]                    # [B, 2, H, W, 3]
    b, n_global = global_views.shape[:2]
    crops = joint.flatten_views(global_views)                           # [2B, H, W, 3], example-major
    k_mask, k_global, k_local = jax.random.split(rng, 3)
    mask = self.masks(k_mask, crops.shape[0])                           # [2B, T]
    per_group = min(n_global * self.group_size, crops.shape[0])
    groups, t = crops.shape[0] // per_group, mask.shape[1]
    ids, valid, weight = masked_patch_slots(mask, groups, self.capacity(per_group))       # [G, C]
    counts = jnp.sum(mask, axis=1)                                      # [2B]

    def gathered(tokens):                                               # [2B, 1 + T, D] -> [G, C, D]
      return masking.gather_tokens(tokens[:, 1:].reshape(groups, per_group * t, -1), ids)

    # Teacher: the whole global crops; its heads on their [CLS] tokens and the student's masked patches.
    tp = extra["teacher"]
    t_tokens = self.teacher.apply({"params": tp}, crops, method=DINOv2Network.tokens)
    (t_cls, t_patch), teacher_stats = _apply_heads(self.teacher, tp, extra["teacher_stats"], t_tokens[:, 0],
                                                   gathered(t_tokens), valid)
    t_cls = jax.lax.stop_gradient(joint.unflatten_views(t_cls, n_global))                # [2, B, K]
    t_patch = jax.lax.stop_gradient(t_patch)                                             # [G, C, K']
    temp = self.teacher_temperature(step)

    # Student: masked global crops, then the local crops (stochastic depth); one head pass over all its tokens.
    net = {"params": params["net"]}
    s_tokens = self.net.apply(net, crops, mask, train=True, rngs={"dropout": k_global}, method=DINOv2Network.tokens)
    cls_tokens = [s_tokens[:, 0]]
    if self.local_group is not None:
      local_views = batch["views"][self.local_group]
      l_tokens = self.net.apply(net, joint.flatten_views(local_views), train=True, rngs={"dropout": k_local},
                                method=DINOv2Network.tokens)
      cls_tokens.append(l_tokens[:, 0])
    (s_cls, s_patch), stats = _apply_heads(self.net, params["net"], extra["batch_stats"],
                                           jnp.concatenate(cls_tokens, axis=0), gathered(s_tokens), valid)
    n = crops.shape[0]
    s_cls = jnp.concatenate([joint.unflatten_views(s_cls[:n], n_global)] + (
        [joint.unflatten_views(s_cls[n:], local_views.shape[1])] if self.local_group is not None else []), axis=0)
    cls_feats = s_tokens[:, 0].reshape(groups, per_group // n_global, n_global, -1)

    loss, parts, (dino_center, ibot_center), (q_cls, q_patch) = objective(
        s_cls=s_cls, s_patch=s_patch, s_cls_feats=cls_feats, t_cls=t_cls, t_patch=t_patch,
        valid=valid, weight=weight, dino_center=extra["dino_center"], ibot_center=extra["ibot_center"],
        teacher_temp=temp, student_temp=self.student_temp, centering=self.centering,
        center_momentum=self.center_momentum, dino_weight=self.dino_weight, ibot_weight=self.ibot_weight,
        koleo_weight=self.koleo_weight)

    t_feats = jax.lax.stop_gradient(joint.unflatten_views(t_tokens[:, 0].astype(jnp.float32), n_global))
    probe, probe_metrics = joint.probe_loss(params["probe"], t_feats[0], batch.get("label"))
    log_q = jnp.log(jnp.maximum(q_cls, 1e-30)).reshape(-1, q_cls.shape[-1])
    log_q_patch = jnp.log(jnp.maximum(q_patch, 1e-30))
    patch_entropy = -jnp.sum(q_patch * log_q_patch, axis=-1)
    masked_crops = jnp.sum(counts > 0)
    metrics = dict(
        probe_metrics, **monitors.collapse_metrics(t_feats[0]), **parts, ssl_loss=loss, teacher_temp=temp,
        teacher_momentum=teacher_lib.cosine_increase(step, self.total_steps, self.momentum_base),
        **{"monitor/teacher_entropy": monitors.entropy(log_q),
           "monitor/teacher_student_kl": monitors.kl_divergence(
               log_q, jax.lax.stop_gradient(s_cls[:n_global] / self.student_temp).reshape(log_q.shape)),
           "monitor/ibot_teacher_entropy": jnp.sum(patch_entropy * valid) / jnp.maximum(jnp.sum(valid), 1),
           "mask/masked_tokens": jnp.sum(counts) / jnp.maximum(masked_crops, 1),
           "mask/masked_crops": masked_crops / crops.shape[0]})
    return loss + probe, (metrics, dict(extra, dino_center=dino_center, ibot_center=ibot_center, batch_stats=stats,
                                        teacher_stats=teacher_stats))

  def teacher_temperature(self, step: jax.Array) -> jax.Array:
    """DINOv2's teacher temperature: `np.linspace(start, end, warmup)[step]` during the warm-up, then `end`."""
    start, end = self.teacher_temp
    w = self.teacher_temp_warmup_steps
    if w <= 1:
      return jnp.asarray(end, jnp.float32)
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / (w - 1), 0.0, 1.0)
    return (start + (end - start) * frac).astype(jnp.float32)

  @property
  def zero_lr_until(self) -> tuple[tuple[str, int], ...]:
    """The prototypes (of both heads) have learning rate 0 for the first `freeze_last_layer_steps` updates."""
    if not self.freeze_last_layer_steps:
      return ()
    return ((r"net/(dino|ibot)/prototype(s|_gain)", self.freeze_last_layer_steps),)

  def after_update(self, params, extra, step):
    m = teacher_lib.cosine_increase(step, self.total_steps, self.momentum_base)
    return dict(extra, teacher=teacher_lib.ema_update(extra["teacher"], params["net"], m))

  def encoders(self, params, extra):
    """The teacher's encoder (DINOv2 evaluates and releases the teacher): (`backbone.create` keywords, variables)."""
    del params
    return {"image": (dict(self.model_spec), {"params": {"vit": extra["teacher"]["vit"]}})}

  def represent(self, params, extra, batch):
    """The teacher's [CLS] token after the final LayerNorm."""
    del params
    tokens = self.teacher.apply({"params": extra["teacher"]}, batch["image"], method=DINOv2Network.tokens)
    return {"image": tokens[:, 0].astype(jnp.float32)}

  def reconstruct(self, params, extra, batch, rng):
    """Pictures of iBOT's masks on evaluation images (drawn as for one group of global crops): the input, and the
    input with the masked patches grey (the student sees the [MASK] embedding there), uint8."""
    del params, extra
    images = batch["image"]
    grid = (images.shape[1] // self.patch_size, images.shape[2] // self.patch_size)
    counts = masking.stratified_mask_counts(jax.random.fold_in(rng, 0), images.shape[0], grid[0] * grid[1],
                                            mask_probability=self.mask_probability, ratio=self.mask_ratio)
    shape = dict(self.mask_shape, max_num_patches=(grid[0] * grid[1]) // 2)
    mask = masking.blockwise_masking(jax.random.fold_in(rng, 1), images.shape[0], grid, num_masking_patches=counts,
                                     **shape).astype(bool)
    return masked_image.mask_picture(images, mask, grid, self.patch_size)

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, dino_head: dict, ibot_head: dict | None = None,
             separate_ibot_head: bool = False, dino_weight: float = 1.0, ibot_weight: float = 1.0,
             koleo_weight: float = 0.1, mask_probability: float = 0.5, mask_ratio: tuple[float, float] = (0.1, 0.5),
             min_mask_patches_per_block: int = 4, mask_aspect: float = 0.3, group_size: int = 64,
             student_temp: float = 0.1, teacher_temp: tuple[float, float] = (0.04, 0.07),
             teacher_temp_warmup_steps: int = 37500, center_momentum: float = 0.9, centering: str = "center",
             momentum_base: float = 0.992, freeze_last_layer_steps: int = 1250,
             global_group: str = "global_crops", local_group: str | None = "local_crops",
             online_probe: bool = True) -> "DINOv2":
    """Builds DINOv2.

    Args:
      model: encoder keywords (`config_lib.vit`; needs `mask_token=True`; pool "cls" or unset).
      run: the run's facts (views, total steps, batch size, labels).
      dino_head: `heads.DINOHead` fields of the [CLS] head (DINOv2: 65536 prototypes, 2048 hidden, 256 bottleneck,
        3 layers, `norm_last_layer=False`: its prototype gain is trained, as DINOv2's `weight_g`; `use_bn=False`).
      ibot_head: the patch head's fields when `separate_ibot_head` (default: `dino_head`'s).
      separate_ibot_head: a patch head of its own (DINOv2's ImageNet-22k recipes); False shares the DINO head.
      dino_weight, ibot_weight, koleo_weight: the losses' weights (1, 1, 0.1). iBOT without KoLeo: koleo_weight 0.
      mask_probability: the fraction of global crops masked (0.5).
      mask_ratio: (min, max) masked fraction of a masked crop's patches (0.1, 0.5).
      min_mask_patches_per_block, mask_aspect: the block-wise generator's smallest block (4) and aspect bound (0.3).
      group_size: images whose crops are masked together and among which KoLeo finds neighbours (DINOv2: one
        GPU's batch, 64). Must divide the global batch.
      student_temp: 0.1.
      teacher_temp: (start, end) of the linear per-step warm-up (0.04 -> 0.07).
      teacher_temp_warmup_steps: its length (DINOv2: 30 epochs of 1250 iterations).
      center_momentum: 0.9, both centres.
      centering: "center" (the EMA centre; DINOv2's default and ImageNet-1k recipe) or "sinkhorn" (Sinkhorn-Knopp,
        3 iterations, over the global batch; its ImageNet-22k recipes).
      momentum_base: teacher EMA momentum at step 0 (0.992), raised to 1 on a cosine over the run.
      freeze_last_layer_steps: updates with learning rate 0 for the prototypes (DINOv2: 1 epoch, 1250).
      global_group, local_group: the view groups (two global crops; the local group may be None).
    """
    if centering not in ("center", "sinkhorn"):
      raise ValueError(f"method.centering={centering!r}: use 'center' or 'sinkhorn'.")
    if run.view_count(global_group) != 2:
      raise ValueError(f"DINOv2 takes exactly 2 global crops (config.data.image.views.{global_group}.count), as the "
                       "official code asserts.")
    if local_group is not None:
      run.view_count(local_group)
    model = dict(model)
    if model.pop("arch", "vit") != "vit":
      raise ValueError("DINOv2's encoder is a ViT (build config.model with config_lib.vit).")
    if model.pop("pool", None) not in (None, "cls"):
      raise ValueError("DINOv2's features are the [CLS] token: set config.model.pool='cls' or leave it unset.")
    enc = vit.vit_kwargs(**model)
    if not enc["mask_token"] or not enc["class_token"]:
      raise ValueError("DINOv2's encoder needs a [CLS] token and a [MASK] embedding: set config.model.mask_token=True "
                       "(and leave class_token unset).")
    if local_group is not None and enc["posemb"] == "learn":
      raise ValueError("DINOv2 with local crops needs model.posemb='sincos2d' (a learned table fits one crop size).")
    size = run.inputs["views"][global_group].shape[1]
    p = enc["patch_size"]
    if size % p:
      raise ValueError(f"global crops of {size} px are not divisible by the patch size {p}.")
    if not 0 < mask_probability <= 1 or not 0 <= mask_ratio[0] <= mask_ratio[1] <= 1:
      raise ValueError(f"method.mask_probability={mask_probability} must be in (0, 1] and method.mask_ratio="
                       f"{tuple(mask_ratio)} an increasing pair in [0, 1].")
    if run.batch_size is not None and run.batch_size % group_size:
      raise ValueError(f"method.group_size={group_size} must divide the batch of {run.batch_size} images (DINOv2 "
                       "masks and applies KoLeo per GPU batch of 64): pick a divisor.")
    if group_size < 2:
      raise ValueError(f"method.group_size={group_size}: KoLeo needs at least 2 images per group.")
    grid = (size // p, size // p)
    t = grid[0] * grid[1]
    ibot = (dict(dino_head, **(ibot_head or {})) if separate_ibot_head else None)
    spec = dict(model, arch="vit", pool="cls")
    student = DINOv2Network(enc, dict(dino_head), ibot)
    teacher = DINOv2Network(dict(enc, drop_path=0.0), dict(dino_head), ibot)
    mask_shape = dict(min_num_patches=min_mask_patches_per_block, max_num_patches=t // 2, min_aspect=mask_aspect)
    return cls(net=student, teacher=teacher, grid=grid, patch_size=p, global_group=global_group,
               local_group=local_group, group_size=int(group_size), mask_probability=float(mask_probability),
               mask_ratio=tuple(float(r) for r in mask_ratio), mask_shape=contract.freeze(mask_shape),
               dino_weight=dino_weight, ibot_weight=ibot_weight, koleo_weight=koleo_weight,
               student_temp=student_temp, teacher_temp=tuple(teacher_temp),
               teacher_temp_warmup_steps=int(teacher_temp_warmup_steps), center_momentum=center_momentum,
               centering=centering, momentum_base=momentum_base, freeze_last_layer_steps=int(freeze_last_layer_steps),
               total_steps=run.total_steps, num_classes=run.num_classes if online_probe else None,
               model_spec=contract.freeze(spec))

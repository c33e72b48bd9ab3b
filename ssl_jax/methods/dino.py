"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers").

Student and teacher share an architecture (encoder -> DINOHead: 3-layer GELU MLP, 256-d bottleneck, l2-normalised,
weight-normalised prototype layer of `out_dim`); the teacher is an EMA of the student (momentum 0.996 -> 1, cosine)
and sees only the global crops; the student sees every crop (2 global + 10 local in the paper; one encoder pass
per crop size, then one head pass over all crops, as DINO's MultiCropWrapper). Loss: cross-entropy from the centred,
sharpened teacher distribution (temperature warmed up 0.04 -> 0.07 over 30 epochs, once per epoch) to the student's
(temperature 0.1) over all pairs of different crops, averaged; the centre is an EMA (0.9) of the teacher's outputs
over the global batch. The prototype layer stays out of the optimizer during the
first `freeze_last_layer_epochs` (1): no update, no weight decay, and its AdamW moments and bias correction start
afresh after it, as PyTorch's AdamW skips a parameter whose gradient DINO sets to None (`frozen_until`).
Representation: the teacher encoder's [CLS] token (DINO evaluates the teacher).

Logged: teacher entropy and the teacher-student KL on the global crops (a collapsing DINO shows entropy -> 0 with
KL -> 0, or entropy -> log(out_dim), uniform), and the embedding monitors of the teacher features.

Deviation: the position embedding is the fixed 2-D sin-cos one (any crop size works without interpolating a learned
table). Otherwise one step equals the official one: tests/test_dino_reference.py compares them with a PyTorch
transcription of DINO's training step.
"""

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import monitors
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.models import backbone
from ssl_jax.models import heads


@dataclasses.dataclass(frozen=True)
class DINO(contract.Method):
  net: joint.Network
  teacher: joint.Network
  global_group: str
  local_group: str | None
  out_dim: int
  student_temp: float
  teacher_temp: tuple[float, float]
  teacher_temp_warmup_epochs: int
  steps_per_epoch: int
  center_momentum: float
  centering: str
  momentum_base: float
  freeze_last_layer_steps: int
  total_steps: int
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    params, stats = joint.init_network(self.net, rng, batch["views"][self.global_group][:, 0])
    extra = {"teacher": params, "center": jnp.zeros((self.out_dim,), jnp.float32), "batch_stats": stats,
             "teacher_stats": stats}
    return {"net": params, "probe": joint.init_probe(self.num_classes, self.net.encoder.num_features)}, extra

  def _teacher(self, params, stats, views):
    """The teacher on the global views `[B, V, H, W, 3]`: features `[V, B, D]`, head outputs `[V, B, K]` and its
    updated BatchNorm statistics."""
    (feats, logits), stats = joint.teacher_forward(self.teacher, params, stats, joint.flatten_views(views))
    n = views.shape[1]
    return joint.unflatten_views(feats, n), joint.unflatten_views(logits, n), stats

  def loss(self, params, extra, batch, rng, step):
    global_views = batch["views"][self.global_group]
    t_feats, t_logits, t_stats = self._teacher(extra["teacher"], extra["teacher_stats"], global_views)
    t_logits = jax.lax.stop_gradient(t_logits)
    groups = [global_views] + ([batch["views"][self.local_group]] if self.local_group is not None else [])
    # The student on every crop: one encoder pass per crop size, then one head pass over all crops (with `use_bn`,
    # the head's BatchNorm statistics are those of every crop together), as DINO's `MultiCropWrapper`.
    s_feats, s_logits, stats = joint.multi_crop_forward(self.net, params["net"], extra["batch_stats"], groups, rng)
    temp = teacher_lib.epoch_warmup(step, self.steps_per_epoch, self.teacher_temp_warmup_epochs, *self.teacher_temp)
    n, b = t_logits.shape[:2]
    if self.centering == "sinkhorn":
      q = losses.sinkhorn_knopp(t_logits.reshape(n * b, -1), temp).reshape(t_logits.shape)
    else:
      q = jax.nn.softmax((t_logits - extra["center"]) / temp, axis=-1)
    loss = jnp.mean(losses.dino_cross_entropy(s_logits, q, self.student_temp))
    center = losses.update_center(extra["center"], t_logits, self.center_momentum)

    t_centered = jnp.log(jnp.maximum(q, 1e-30))            # the targets' log-probabilities, for the monitors
    s_global = s_logits[:n] / self.student_temp
    probe, probe_metrics = joint.probe_loss(params["probe"], s_feats[0], batch.get("label"))
    metrics = dict(probe_metrics, **monitors.collapse_metrics(jax.lax.stop_gradient(t_feats[0])), ssl_loss=loss,
                   teacher_temp=temp,
                   **{"monitor/teacher_entropy": monitors.entropy(t_centered.reshape(-1, self.out_dim)),
                      "monitor/teacher_student_kl": monitors.kl_divergence(
                          t_centered.reshape(-1, self.out_dim),
                          jax.lax.stop_gradient(s_global).reshape(-1, self.out_dim))})
    return loss + probe, (metrics, dict(extra, center=center, batch_stats=stats, teacher_stats=t_stats))

  @property
  def frozen_until(self) -> tuple[tuple[str, int], ...]:
    """The prototype layer is left out of the first `freeze_last_layer_steps` updates (`optim.make`)."""
    return (("net/projector/prototypes", self.freeze_last_layer_steps),) if self.freeze_last_layer_steps else ()

  def after_update(self, params, extra, step):
    m = teacher_lib.cosine_increase(step, self.total_steps, self.momentum_base)
    return dict(extra, teacher=teacher_lib.ema_update(extra["teacher"], params["net"], m))

  def encoders(self, params, extra):
    """The teacher's encoder (DINO evaluates and releases the teacher): (`backbone.create` keywords, variables)."""
    del params
    return {"image": (dict(self.model_spec), joint.encoder_variables(extra["teacher"], extra["teacher_stats"]))}

  def represent(self, params, extra, batch):
    del params
    return {"image": joint.features(self.teacher, extra["teacher"], extra["teacher_stats"], batch["image"])}


  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, head: dict, student_temp: float = 0.1,
             teacher_temp: tuple[float, float] = (0.04, 0.07), teacher_temp_warmup_epochs: int = 30,
             center_momentum: float = 0.9, centering: str = "center", momentum_base: float = 0.996,
             freeze_last_layer_epochs: float = 1.0,
             global_group: str = "global_crops", local_group: str | None = "local_crops",
             online_probe: bool = True) -> "DINO":
    """Builds DINO.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`; a ViT, pool "cls").
      run: the run's facts (views, steps per epoch, total steps, labels).
      head: `heads.DINOHead` fields (paper: out_dim 65536, hidden 2048, bottleneck 256, 3 layers, norm_last_layer;
        `use_bn` is DINO's `use_bn_in_head`: the teacher then keeps its own BatchNorm statistics).
      student_temp: 0.1.
      teacher_temp: (start, end) of the linear teacher-temperature warm-up (0.04 -> 0.07).
      teacher_temp_warmup_epochs: 30, a whole number: the temperature changes once per epoch, as in DINO.
      center_momentum: 0.9.
      centering: "center" (DINO: subtract the EMA centre, then softmax) or "sinkhorn" (DINOv2's Sinkhorn-Knopp
        equipartition over the global batch, 3 iterations; the centre is then only tracked).
      momentum_base: teacher EMA momentum at step 0 (0.996), raised to 1 on a cosine over the run.
      freeze_last_layer_epochs: epochs without gradient to the prototype layer (1).
      global_group, local_group: the view groups (the local group may be None: no multi-crop).
    """
    if teacher_temp_warmup_epochs != int(teacher_temp_warmup_epochs) or teacher_temp_warmup_epochs < 0:
      raise ValueError(f"method.teacher_temp_warmup_epochs={teacher_temp_warmup_epochs}: use a whole number of epochs "
                       "(DINO's teacher temperature changes once per epoch).")
    if centering not in ("center", "sinkhorn"):
      raise ValueError(f"method.centering={centering!r}: use 'center' or 'sinkhorn'.")
    if run.view_count(global_group) < 2:
      raise ValueError(f"DINO needs at least 2 global views in config.data.image.views.{global_group}.count.")
    if local_group is not None:
      run.view_count(local_group)
      if model.get("posemb", "sincos2d") == "learn":
        raise ValueError("DINO with local crops needs model.posemb='sincos2d' (a learned table fits one crop size).")
    head_module = heads.DINOHead(**head)
    net = joint.Network(backbone.create(**model), head_module)
    teacher = joint.Network(joint.teacher_encoder(model), head_module)
    per_epoch = run.steps_per_epoch
    return cls(net=net, teacher=teacher, global_group=global_group, local_group=local_group,
               out_dim=head.get("out_dim", 65536), student_temp=student_temp, teacher_temp=tuple(teacher_temp),
               teacher_temp_warmup_epochs=int(teacher_temp_warmup_epochs), steps_per_epoch=per_epoch,
               center_momentum=center_momentum, centering=centering, momentum_base=momentum_base,
               freeze_last_layer_steps=int(round(freeze_last_layer_epochs * per_epoch)), total_steps=run.total_steps,
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

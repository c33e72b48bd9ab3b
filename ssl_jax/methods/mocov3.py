"""MoCo v3 (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers").

A base encoder with a 3-layer projector (4096 hidden, 256 out, BatchNorm on every layer, the last without affine) and
a 2-layer predictor, against a momentum encoder (encoder + projector) whose momentum goes from `momentum_base` (0.99)
to 1 on a cosine schedule. Loss: in-batch InfoNCE with temperature t (0.2 for ViT) over the global batch, multiplied
by 2t as the official code does, symmetrised: `ctr(q1, k2) + ctr(q2, k1)`. For ViTs the patch projection stays at
its random initialisation (freeze it with `config.optim.frozen`; the paper's stability trick). Representation: the
base encoder's [CLS] token.
"""

import dataclasses

import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import monitors
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads


@dataclasses.dataclass(frozen=True)
class MoCoV3(joint.ReleasesOnlineEncoder, contract.Method):
  net: joint.Network
  momentum_net: joint.Network
  view_group: str
  temperature: float
  momentum_base: float
  total_steps: int
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    return joint.init_with_teacher(self.net, rng, batch["views"][self.view_group][:, 0], self.num_classes)

  def loss(self, params, extra, batch, rng, step):
    del step
    feats, q, k, extra = joint.two_view_forward(self.net, self.momentum_net, params, extra,
                                                 batch["views"][self.view_group], rng)
    loss = jnp.mean(losses.info_nce(q[0], k[1], self.temperature) + losses.info_nce(q[1], k[0], self.temperature))
    probe, probe_metrics = joint.probe_loss(params["probe"], feats[0], batch.get("label"))
    metrics = dict(probe_metrics, **monitors.collapse_metrics(k[0]), ssl_loss=loss)
    return loss + probe, (metrics, extra)

  def after_update(self, params, extra, step):
    return joint.update_teacher(extra, params, step, self.total_steps, self.momentum_base)



  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, projector: dict, predictor: dict, temperature: float = 0.2,
             momentum_base: float = 0.99, view_group: str = "global_crops", online_probe: bool = True) -> "MoCoV3":
    """Builds MoCo v3.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`; ViT: pool "cls").
      run: the run's facts (views, total steps, labels).
      projector: `heads.MLP` fields (paper: dims (4096, 4096, 256), last_bn "plain", use_bias False).
      predictor: `heads.MLP` fields (paper: dims (4096, 256), last_bn "plain", use_bias False).
      temperature: InfoNCE temperature (0.2 for ViT, 1.0 for ResNet-50).
      momentum_base: momentum at step 0, raised to 1 on a cosine over the run.
    """
    if run.view_count(view_group) != 2:
      raise ValueError(f"MoCo v3 needs exactly 2 views in config.data.image.views.{view_group}.count.")
    proj = heads.MLP(**projector)
    net = joint.Network(backbone.create(**model), proj, heads.MLP(**predictor))
    return cls(net=net, momentum_net=joint.Network(joint.teacher_encoder(model), proj), view_group=view_group,
               temperature=temperature, momentum_base=momentum_base, total_steps=run.total_steps,
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

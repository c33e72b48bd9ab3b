"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent").

An online network (encoder -> projector -> predictor, MLPs 4096 -> 256 with BatchNorm) predicts the projection of the
other view by a target network (encoder -> projector) whose weights are an exponential moving average of the online
ones, with decay tau going from `tau_base` (0.996) to 1 on a cosine schedule (paper eq. 2). Loss: `2 - 2 cos` between
the prediction and the stop-gradient target, symmetrised over the two views (paper eq. 2-3), averaged over the global
batch. The views use asymmetric photometric recipes (`byol1`: blur always; `byol2`: blur 0.1, solarize 0.2).
Representation: the online encoder's pooled features.

BatchNorm: each view is its own batch in both networks (as the BYOL JAX code), statistics over the global batch.
The target keeps its own running statistics (from its forward passes); only its parameters are averaged.
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
class BYOL(joint.ReleasesOnlineEncoder, contract.Method):
  net: joint.Network
  target: joint.Network
  view_group: str
  tau_base: float
  total_steps: int
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    return joint.init_with_teacher(self.net, rng, batch["views"][self.view_group][:, 0], self.num_classes)

  def loss(self, params, extra, batch, rng, step):
    del step
    feats, p, z, extra = joint.two_view_forward(self.net, self.target, params, extra,
                                                 batch["views"][self.view_group], rng)
    loss = jnp.mean(losses.byol_loss(p[0], z[1]) + losses.byol_loss(p[1], z[0]))
    probe, probe_metrics = joint.probe_loss(params["probe"], feats[0], batch.get("label"))
    metrics = dict(probe_metrics, **monitors.collapse_metrics(z[0]), ssl_loss=loss)
    return loss + probe, (metrics, extra)

  def after_update(self, params, extra, step):
    return joint.update_teacher(extra, params, step, self.total_steps, self.tau_base)



  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, projector: dict, predictor: dict, tau_base: float = 0.996,
             view_group: str = "global_crops", online_probe: bool = True) -> "BYOL":
    """Builds BYOL.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (views, total steps, labels).
      projector, predictor: `heads.MLP` fields (paper: dims (4096, 256), hidden BatchNorm, no output BatchNorm).
      tau_base: the target decay at step 0 (0.996), raised to 1 on a cosine over the run.
      view_group: the view group holding the two views.
      online_probe: train a linear probe on the stop-gradient features when the data has labels.
    """
    if run.view_count(view_group) != 2:
      raise ValueError(f"BYOL needs exactly 2 views in config.data.image.views.{view_group}.count.")
    if not 0.0 <= tau_base <= 1.0:
      raise ValueError(f"method.tau_base must be in [0, 1], got {tau_base}.")
    proj = heads.MLP(**projector)
    net = joint.Network(backbone.create(**model), proj, heads.MLP(**predictor))
    return cls(net=net, target=joint.Network(joint.teacher_encoder(model), proj), view_group=view_group,
               tau_base=tau_base, total_steps=run.total_steps, num_classes=run.num_classes if online_probe else None,
               model_spec=contract.freeze(model))

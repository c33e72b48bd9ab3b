"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning").

Two views of each image go through one encoder, projector (Linear-BN-ReLU x 2, then Linear-BN without affine
parameters; no biases: 2048-2048-2048 for ResNet-50) and predictor (Linear-BN-ReLU, Linear with bias: 2048 -> 512
-> 2048), each view a separate batch (BatchNorm statistics per view over the global batch, as the official code calls
the network once per view under SyncBatchNorm). Loss: `D(p1, z2) / 2 + D(p2, z1) / 2` with `D(p, z) = -cos(p,
stopgrad(z))`, averaged over the global batch; no negatives, no momentum encoder: the stop-gradient and the
predictor are what prevent collapse (the paper's point). Representation: the encoder's pooled features.

Computed as `(byol_loss(p1, z2) + byol_loss(p2, z1)) / 4 - 1` (`byol_loss = 2 - 2 cos` with the same stop-gradient):
the official value and gradient exactly.
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
class SimSiam(joint.OnlineNetwork, contract.Method):
  net: joint.Network
  view_group: str
  num_classes: int | None

  model_spec: tuple = ()

  def loss(self, params, extra, batch, rng, step):
    del step
    feats, z, p, stats = joint.per_view_forward(self.net, params["net"], extra["batch_stats"],
                                                batch["views"][self.view_group], rng)
    loss = jnp.mean(losses.byol_loss(p[0], z[1]) + losses.byol_loss(p[1], z[0])) / 4 - 1
    probe, probe_metrics = joint.probe_loss(params["probe"], feats[0], batch.get("label"))
    # The paper's collapse monitor (Figure 2): the std of the l2-normalised projections, 1/sqrt(D) when healthy.
    metrics = dict(probe_metrics, **monitors.collapse_metrics(z[0]), ssl_loss=loss)
    return loss + probe, (metrics, {"batch_stats": stats})

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, projector: dict, predictor: dict,
             view_group: str = "global_crops", online_probe: bool = True) -> "SimSiam":
    """Builds SimSiam.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (views, labels).
      projector: `heads.MLP` fields (paper: dims (2048, 2048, 2048), hidden BatchNorm, output BatchNorm without
        affine parameters, no biases: `use_bias=False, last_bn="plain"`).
      predictor: `heads.MLP` fields (paper: dims (512, 2048), hidden BatchNorm, a bias on the output layer:
        `use_bias=True, last_bn=""`).
      view_group: the view group holding the two views.
      online_probe: train a linear probe on the stop-gradient features when the data has labels.
    """
    if run.view_count(view_group) != 2:
      raise ValueError(f"SimSiam needs exactly 2 views in config.data.image.views.{view_group}.count, got "
                       f"{run.view_count(view_group)}.")
    net = joint.Network(backbone.create(**model), heads.MLP(**projector), heads.MLP(**predictor))
    return cls(net=net, view_group=view_group, num_classes=run.num_classes if online_probe else None,
               model_spec=contract.freeze(model))

"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations").

Two views of each image (random-resized-crop, flip, colour distortion of strength 1, blur) go through one encoder
and a projection head (Linear-BN-ReLU-Linear-BN, 2048 -> 128 for ResNet-50 as in SimCLR's TF code, whose last
BatchNorm has no shift); NT-Xent with temperature 0.1 over the global batch, every other view of the
batch a negative. Both views pass through the network as one batch of 2B, so BatchNorm statistics are those of the
2B views of the global batch (SimCLR's global BN). Representation: the encoder's pooled features.
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
class SimCLR(joint.ReleasesOnlineEncoder, contract.Method):
  net: joint.Network
  view_group: str
  temperature: float
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    x = batch["views"][self.view_group][:, 0]
    params, stats = joint.init_network(self.net, rng, x)
    params = {"net": params, "probe": joint.init_probe(self.num_classes, self.net.encoder.num_features)}
    return params, {"batch_stats": stats}

  def loss(self, params, extra, batch, rng, step):
    del step
    views = batch["views"][self.view_group]                             # [B, 2, H, W, 3], augmented, normalised
    (feats, z, _), stats = joint.forward(self.net, params["net"], extra["batch_stats"], joint.flatten_views(views),
                                         rng)
    z1, z2 = joint.unflatten_views(z, 2)
    loss = jnp.mean(losses.nt_xent(z1, z2, self.temperature))
    probe, probe_metrics = joint.probe_loss(params["probe"], feats, joint.repeat_labels(batch.get("label"), 2))
    metrics = dict(probe_metrics, **monitors.collapse_metrics(z), **{"ssl_loss": loss})
    return loss + probe, (metrics, {"batch_stats": stats})

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, projector: dict, temperature: float = 0.1,
             view_group: str = "global_crops", online_probe: bool = True) -> "SimCLR":
    """Builds SimCLR.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`: arch "resnet" or "vit").
      run: the run's facts (views, labels).
      projector: `heads.MLP` fields (SimCLR ResNet-50: dims (2048, 128), last_bn "scale").
      temperature: NT-Xent temperature (0.1 at batch 4096 in the paper).
      view_group: the view group holding the two views.
      online_probe: train a linear probe on the stop-gradient features when the data has labels.
    """
    if run.view_count(view_group) != 2:
      raise ValueError(f"SimCLR needs exactly 2 views in config.data.image.views.{view_group}.count, got "
                       f"{run.view_count(view_group)}.")
    net = joint.Network(backbone.create(**model), heads.MLP(**projector))
    return cls(net=net, view_group=view_group, temperature=temperature,
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

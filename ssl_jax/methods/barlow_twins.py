"""Barlow Twins (Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction").

Two views of each image go through one encoder and projector (Linear-BN-ReLU x 2, then Linear; no biases: 8192-8192-
8192 for ResNet-50), each view a separate batch (BatchNorm statistics per view over the global batch, as the official
code calls the network once per view under SyncBatchNorm). The projections are standardised over the global batch
(BatchNorm without affine parameters) and their cross-correlation matrix `C` (D x D) is pushed to the identity:
`sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`, lambda 0.0051 (`ssl_jax.losses.barlow_twins_loss`). No
negatives, no momentum encoder, no stop-gradient: the redundancy term is what prevents collapse. Representation: the
encoder's pooled features.
"""

import dataclasses

from ssl_jax import losses
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads


@dataclasses.dataclass(frozen=True)
class BarlowTwins(joint.PairObjective, contract.Method):
  net: joint.Network
  view_group: str
  lambda_offdiag: float
  num_classes: int | None

  model_spec: tuple = ()

  def objective(self, z1, z2):
    on_diag, off_diag = losses.barlow_twins_terms(z1, z2)
    return on_diag + self.lambda_offdiag * off_diag, {"on_diagonal": on_diag, "off_diagonal": off_diag}

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, projector: dict, lambda_offdiag: float = 0.0051,
             view_group: str = "global_crops", online_probe: bool = True) -> "BarlowTwins":
    """Builds Barlow Twins.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (views, labels).
      projector: `heads.MLP` fields (paper: dims (8192, 8192, 8192), hidden BatchNorm, no biases, no output
        BatchNorm: `use_bias=False, last_bn=""`).
      lambda_offdiag: weight of the off-diagonal (redundancy) term (official code: 0.0051).
      view_group: the view group holding the two views.
      online_probe: train a linear probe on the stop-gradient features when the data has labels.
    """
    if run.view_count(view_group) != 2:
      raise ValueError(f"Barlow Twins needs exactly 2 views in config.data.image.views.{view_group}.count, got "
                       f"{run.view_count(view_group)}.")
    if lambda_offdiag < 0:
      raise ValueError(f"method.lambda_offdiag must be >= 0, got {lambda_offdiag}.")
    net = joint.Network(backbone.create(**model), heads.MLP(**projector))
    return cls(net=net, view_group=view_group, lambda_offdiag=lambda_offdiag,
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

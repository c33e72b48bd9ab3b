"""VICReg (Bardes, Ponce, LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
Learning").

Two views of each image go through one encoder and expander (Linear-BN-ReLU x 2, then Linear without bias: 8192-
8192-8192 for ResNet-50), each view a separate batch (BatchNorm statistics per view over the global batch, as the
official code calls the network once per view). Loss (`ssl_jax.losses.vicreg_loss`): `lambda * mse(z1, z2) + mu *
(hinge(z1) + hinge(z2)) / 2 + nu * (cov(z1) + cov(z2))`, with the variance hinge `mean_d relu(1 - sqrt(var_d + 1e-4))`
and the covariance term the squared off-diagonal covariances over D, lambda = mu = 25, nu = 1, all over the global
batch (the official code gathers the embeddings of every GPU for the variance and covariance; its invariance term
on each GPU's batch, averaged by DDP, is the global mean). Representation: the encoder's pooled features.

The expander's hidden layers have no bias before their BatchNorm (the official code has one; BatchNorm subtracts it
again, in training and, through the running mean, in evaluation, so the function and its gradients are the same).
"""

import dataclasses

from ssl_jax import losses
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads


@dataclasses.dataclass(frozen=True)
class VICReg(joint.PairObjective, contract.Method):
  net: joint.Network
  view_group: str
  sim_coeff: float
  std_coeff: float
  cov_coeff: float
  num_classes: int | None

  model_spec: tuple = ()

  def objective(self, z1, z2):
    invariance, variance, covariance = losses.vicreg_terms(z1, z2)
    loss = self.sim_coeff * invariance + self.std_coeff * variance + self.cov_coeff * covariance
    return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, projector: dict, sim_coeff: float = 25.0,
             std_coeff: float = 25.0, cov_coeff: float = 1.0, view_group: str = "global_crops",
             online_probe: bool = True) -> "VICReg":
    """Builds VICReg.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (views, labels).
      projector: the expander, `heads.MLP` fields (paper: dims (8192, 8192, 8192), hidden BatchNorm, no output
        BatchNorm or bias: `use_bias=False, last_bn=""`).
      sim_coeff, std_coeff, cov_coeff: lambda, mu and nu of the paper (25, 25, 1).
      view_group: the view group holding the two views.
      online_probe: train a linear probe on the stop-gradient features when the data has labels.
    """
    if run.view_count(view_group) != 2:
      raise ValueError(f"VICReg needs exactly 2 views in config.data.image.views.{view_group}.count, got "
                       f"{run.view_count(view_group)}.")
    if min(sim_coeff, std_coeff, cov_coeff) < 0:
      raise ValueError(f"VICReg's coefficients must be >= 0, got sim {sim_coeff}, std {std_coeff}, cov {cov_coeff}.")
    net = joint.Network(backbone.create(**model), heads.MLP(**projector))
    return cls(net=net, view_group=view_group, sim_coeff=sim_coeff, std_coeff=std_coeff, cov_coeff=cov_coeff,
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

"""Supervised classification on top of a (pretrained) encoder: the linear probe and fine-tuning of the papers.

One method for both protocols, chosen by its hyperparameters:

- linear probe (MAE appendix A.2): `freeze_encoder=True` (the encoder runs in evaluation mode under a stop-gradient;
  the config also freezes its parameters with `optim.frozen`), head `batchnorm=True`, `init_std=0.01`, LARS;
- fine-tuning (MAE appendix A.3): the whole network trained with stochastic depth, label smoothing, mixup / CutMix,
  random erasing (`ssl_jax.ops.regularization`), RandAugment on the host (`config.data.image.rand_augment`),
  layer-wise lr decay (`config.optim.layer_decay`), head `init_std=2e-5`.

The encoder comes from `config.init_from` (a pretraining workdir; see `ssl_jax.pretrained`), or is trained from
scratch. It `predicts` (the contract's `predict(params, extra, batch) -> logits`), from which the trainer
reports top-1 and top-5 accuracy on the test split.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssl_jax.methods import contract
from ssl_jax.models import backbone
from ssl_jax.models import heads
from ssl_jax.ops import regularization


class ClassifierNet(nn.Module):
  """`encoder -> head`; returns (features, logits)."""
  encoder: nn.Module
  head: nn.Module
  freeze_encoder: bool = False

  def __call__(self, x, train: bool = False):
    feats = self.encoder(x, train and not self.freeze_encoder)["pooled"]
    if self.freeze_encoder:
      feats = jax.lax.stop_gradient(feats)
    return feats, self.head(feats, train)


@dataclasses.dataclass(frozen=True)
class Classify(contract.Method):
  """The classifier behind the method contract; `config.init_from` loads its encoder (`load_encoders`)."""
  accepts_pretrained_encoder = True
  predicts = True

  net: ClassifierNet
  num_classes: int
  label_smoothing: float
  mixup: float
  cutmix: float
  mix_switch_prob: float
  mix_prob: float
  random_erasing: float
  model_spec: tuple

  def init(self, rng, batch):
    variables = self.net.init(rng, batch["image"], False)
    return variables["params"], {"batch_stats": variables.get("batch_stats", {})}

  def _apply(self, params, extra, x, train, rng=None):
    variables = {"params": params, **({"batch_stats": extra["batch_stats"]} if extra["batch_stats"] else {})}
    if not train or not extra["batch_stats"]:
      return self.net.apply(variables, x, train, rngs={"dropout": rng} if rng is not None else {}), extra
    out, updates = self.net.apply(variables, x, True, rngs={"dropout": rng}, mutable=["batch_stats"])
    return out, dict(extra, batch_stats=updates["batch_stats"])

  def loss(self, params, extra, batch, rng, step):
    del step
    k_erase, k_mix, k_drop = jax.random.split(rng, 3)
    x = batch["image"]
    if self.random_erasing > 0:
      x = regularization.random_erasing(k_erase, x, self.random_erasing)
    targets = regularization.smooth_labels(batch["label"], self.num_classes, self.label_smoothing)
    x, targets, _ = regularization.mixup_cutmix(k_mix, x, targets, mixup_alpha=self.mixup, cutmix_alpha=self.cutmix,
                                                switch_prob=self.mix_switch_prob, prob=self.mix_prob)
    (_, logits), extra = self._apply(params, extra, x, True, k_drop)
    loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
    top1 = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
    return loss, ({"loss": loss, "train_top1": top1}, extra)

  def represent(self, params, extra, batch):
    (feats, _), _ = self._apply(params, extra, batch["image"], False)
    return {"image": feats}

  def predict(self, params, extra, batch):
    """Logits `[B, C]` of `batch["image"]` (evaluation mode)."""
    (_, logits), _ = self._apply(params, extra, batch["image"], False)
    return logits

  def load_encoders(self, params, extra, variables):
    """(params, extra) with the encoder's variables replaced by `variables["image"]` (`encoders`' structure)."""
    image_vars = variables["image"]
    params = dict(params, encoder=image_vars["params"])
    if "batch_stats" in image_vars:
      extra = dict(extra, batch_stats=dict(extra["batch_stats"], encoder=image_vars["batch_stats"]))
    return params, extra

  def encoders(self, params, extra):
    variables = {"params": params["encoder"]}
    if extra["batch_stats"].get("encoder"):
      variables["batch_stats"] = extra["batch_stats"]["encoder"]
    return {"image": (dict(self.model_spec), variables)}


  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, freeze_encoder: bool = False, head_batchnorm: bool = False,
             head_init_std: float = 0.01, label_smoothing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0,
             mix_switch_prob: float = 0.5, mix_prob: float = 1.0, random_erasing: float = 0.0) -> "Classify":
    """Builds the classifier.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`); with `config.init_from` the trainer fills in the
        pretrained encoder's and lets `config.model` override some (e.g. `drop_path`, `pool`).
      run: the run's facts (`num_classes` is required).
      freeze_encoder: linear probing: the encoder in evaluation mode, no gradient into it.
      head_batchnorm: BatchNorm without affine parameters before the linear layer (MAE linear probe).
      head_init_std: std of the head's N(0, std) initialisation (MAE: 0.01 probe, 2e-5 fine-tuning).
      label_smoothing: timm's label smoothing (MAE fine-tuning: 0.1).
      mixup, cutmix: Beta parameters (MAE fine-tuning: 0.8, 1.0); 0 turns each off.
      mix_switch_prob, mix_prob: probability of CutMix rather than mixup when both are on (0.5), and of mixing a
        batch at all (1.0).
      random_erasing: probability of erasing a rectangle per image (MAE fine-tuning: 0.25).
    """
    if not run.num_classes:
      raise ValueError("method 'classify' needs a labelled training split (config.data.name with labels).")
    for name, p in (("mix_switch_prob", mix_switch_prob), ("mix_prob", mix_prob), ("random_erasing", random_erasing),
                    ("label_smoothing", label_smoothing)):
      if not 0.0 <= p <= 1.0:
        raise ValueError(f"method.{name} must be in [0, 1], got {p}.")
    if mixup < 0 or cutmix < 0:
      raise ValueError(f"method.mixup and method.cutmix must be >= 0, got {mixup} and {cutmix}.")
    encoder = backbone.create(**model)
    head = heads.ClassifierHead(run.num_classes, head_batchnorm, head_init_std)
    return cls(net=ClassifierNet(encoder, head, freeze_encoder), num_classes=run.num_classes,
               label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix, mix_switch_prob=mix_switch_prob,
               mix_prob=mix_prob, random_erasing=random_erasing, model_spec=contract.freeze(model))

"""Rotation prediction, RotNet (Gidaris, Singh, Komodakis 2018, "Unsupervised Representation Learning by Predicting
Image Rotations").

Every augmented image of the batch is fed in all four rotations (0, 90, 180, 270 degrees; `pretext.rotations`), so
the network sees a batch of 4B images with the four copies of an image side by side, as the official data loader's
`_collate_fun` builds it (BatchNorm statistics over all 4B); a classifier on the encoder's pooled features predicts
the rotation, and the loss is the cross-entropy over the 4B images. The representation is the encoder's pooled
features of the upright image.

The classifier (`heads.MLP`, `head.dims` ending in 4): the paper's AlexNet ends in fc6-fc7-fc8 (4096-4096-4 with
BatchNorm and ReLU), which configs/rotation_resnet50.py keeps on a ResNet-50's pooled features; a linear layer
(`dims=(4,)`, as the tiny config) is the other common choice for a ResNet (Kolesnikov, Zhai, Beyer 2019, "Revisiting
Self-Supervised Visual Representation Learning").
Logged: `rotation_top1` (the pretext task's accuracy on the training batch) and, with labels, the online linear
probe on the upright images' stop-gradient features.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ssl_jax import pretext
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads


@dataclasses.dataclass(frozen=True)
class Rotation(joint.ReleasesOnlineEncoder, contract.Method):
  net: joint.Network             # encoder -> the rotation classifier (the network's "projector")
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    params, stats = joint.init_network(self.net, rng, batch["image"])
    return {"net": params, "probe": joint.init_probe(self.num_classes, self.net.encoder.num_features)}, {
        "batch_stats": stats}

  def loss(self, params, extra, batch, rng, step):
    del step
    images, targets = pretext.rotations(batch["image"])                          # [4B, H, W, 3], [4B]
    (feats, logits), stats = joint.forward(self.net, params["net"], extra["batch_stats"], images, rng,
                                           method=joint.Network.embed)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
    hits = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    upright = feats.reshape((-1, 4) + feats.shape[1:])[:, 0]                   # [B, D]: rotation 0 of every image
    probe, probe_metrics = joint.probe_loss(params["probe"], upright, batch.get("label"))
    metrics = dict(probe_metrics, ssl_loss=loss, rotation_top1=jnp.mean(hits))
    return loss + probe, (metrics, {"batch_stats": stats})

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, head: dict, online_probe: bool = True) -> "Rotation":
    """Builds RotNet.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (single-view square images, labels).
      head: `heads.MLP` fields of the rotation classifier; `dims` ends in 4 (a linear layer: `dims=(4,)`; AlexNet's
        fc6-fc7-fc8: `dims=(4096, 4096, 4)` with `hidden_bn=True`).
      online_probe: train a linear probe on the upright images' stop-gradient features when the data has labels.
    """
    h, w, _ = run.image_shape()
    if h != w:
      raise ValueError(f"RotNet rotates square images; config.data.image gives {h}x{w}: set its size.")
    if tuple(head.get("dims", ()))[-1:] != (4,):
      raise ValueError(f"method.head.dims={tuple(head.get('dims', ()))} must end in 4, the four rotations "
                       "(e.g. (4,) for a linear classifier).")
    net = joint.Network(backbone.create(**model), heads.MLP(**head))
    return cls(net=net, num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

"""Context encoders: inpainting (Pathak, Krähenbühl, Donahue, Darrell, Efros 2016, "Context Encoders: Feature Learning
by Inpainting").

A region of each training image is removed (`pretext.inpainting_mask`: the central square of a quarter of the area,
the paper's 64 x 64 of 128 x 128, or random blocks) and filled with the data set's mean colour, all but an `overlap`
pixels wide ring at its border, which stays visible; the network predicts the region's pixels from the rest. The
reconstruction loss is the squared error over the region, the visible ring weighted `overlap_weight` (10) times the
interior, as the official `train.lua` (`overlapPred=4`, `overlapL2Weight=10`). With `adversarial=True`, the paper's
joint loss: a DCGAN discriminator on the predicted region (`Discriminator`: 4 x 4 stride-2 convolutions,
BatchNorm, LeakyReLU 0.2, sigmoid), the generator's loss `(1 - wtl2) adversarial + wtl2 reconstruction` with
`wtl2 = 0.999`, and the discriminator trained on real against predicted regions.

The network: the encoder (a ViT or ResNet) on the masked image, then a linear layer from each token of its feature
map to the pixels the token covers (`heads.PixelHead`, as SimMIM; the paper's channel-wise fully connected layer and
up-convolutions are replaced). The representation is the encoder's pooled features of the whole image.

Deviations: the discriminator and the generator are updated together, from one loss whose parts reach each through
stop-gradients (the official loop updates the discriminator, then the generator); the generator's 10x learning rate
is `config.optim.lr_multipliers` on the discriminator (0.1); pixels are predicted in the normalised input space,
without the tanh. Logged: `inpainting/reconstruction` (the region's mean squared error, unweighted) and, with the
adversarial term, `inpainting/discriminator` and `inpainting/adversarial`. Report: `inpaintings.png`, the test
images, their masked inputs and the inpainted images.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssl_jax import pretext
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads
from ssl_jax.models import resnet
from ssl_jax.ops import image as image_ops

MEAN_COLOUR = (117.0 / 255, 104.0 / 255, 123.0 / 255)     # the official fill of the removed region


class Discriminator(nn.Module):
  """The context encoder's DCGAN discriminator on a region `[B, h, h, 3]` -> logits `[B]`: 4 x 4 stride-2
  convolutions doubling the width from `width` while the side is above 4 (BatchNorm after all but the first), LeakyReLU
  0.2, then a convolution over the remaining map to one logit (the sigmoid is in the loss)."""
  width: int = 64

  @nn.compact
  def __call__(self, x, train: bool = False):
    x, width, i = x.astype(jnp.float32), self.width, 0
    while x.shape[1] > 4:
      x = nn.Conv(width, (4, 4), 2, padding=1, name=f"conv{i}")(x)
      if i > 0:
        x = resnet.batch_norm(train, f"bn{i}")(x)
      x = nn.leaky_relu(x, 0.2)
      width, i = width * 2, i + 1
    return nn.Conv(1, x.shape[1:3], padding="VALID", name="logit")(x).reshape(-1)


@dataclasses.dataclass(frozen=True)
class Inpainting(joint.ReleasesOnlineEncoder, contract.Method):
  """The context encoder; `encoders` releases `net`'s encoder (`joint.ReleasesOnlineEncoder`)."""
  reconstructs = True
  pictures = ("inpaintings", ("input", "masked", "inpainted"))

  net: joint.DenseNetwork
  discriminator: Discriminator | None
  mask: str
  fraction: float
  num_blocks: int
  overlap: int
  overlap_weight: float
  wtl2: float
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    k_net, k_disc = jax.random.split(rng)
    variables = self.net.init(k_net, batch["image"], False)
    params = {"net": variables["params"], "probe": joint.init_probe(self.num_classes, self.net.encoder.num_features)}
    extra = {"batch_stats": variables.get("batch_stats", {})}
    if self.discriminator is not None:
      top, size = self._region(batch["image"].shape[1])
      d = self.discriminator.init(k_disc, batch["image"][:, top:top + size, top:top + size], False)
      params["discriminator"] = d["params"]
      extra["discriminator_stats"] = d.get("batch_stats", {})
    return params, extra

  def _region(self, side: int) -> tuple[int, int]:
    """The central square's first row (and column) and side."""
    size = round(side * self.fraction ** 0.5)
    return (side - size) // 2, size

  def _masks(self, rng, images):
    """`(region [B, H, W, 1], filled [B, H, W, 1])`: the region to predict, and the part of it the input hides (the
    region without its visible `overlap` ring)."""
    b, h, w, _ = images.shape
    region = pretext.inpainting_mask(rng, b, h, w, kind=self.mask, fraction=self.fraction, num_blocks=self.num_blocks)
    if not self.overlap:
      return region, region
    # A pixel is hidden when the whole (2 overlap + 1)-wide square around it lies in the region.
    k = 2 * self.overlap + 1
    inside = -nn.max_pool(-region, (k, k), strides=(1, 1), padding="SAME")
    return region, inside

  def _inputs(self, images, filled):
    fill = image_ops.normalize_unit(jnp.asarray(MEAN_COLOUR))
    return jnp.where(filled > 0, fill, images)

  def loss(self, params, extra, batch, rng, step):
    del step
    k_mask, k_net = jax.random.split(rng)
    images = batch["image"]
    region, filled = self._masks(k_mask, images)
    (feats, pred), stats = joint.apply(self.net, params["net"], extra["batch_stats"], self._inputs(images, filled),
                                       train=True, rng=k_net)
    ring = region - filled                                         # visible, predicted: weighted overlap_weight x
    weight = (filled + self.overlap_weight * ring) * self.wtl2
    squared = jnp.square(pred - images)
    count = jnp.sum(region) * images.shape[-1]
    reconstruction = jnp.sum(weight * squared) / count            # MSECriterion over the region, weighted
    metrics = {"inpainting/reconstruction": jnp.sum(region * squared) / count}
    loss = reconstruction
    new_extra = {"batch_stats": stats}
    if self.discriminator is not None:
      top, size = self._region(images.shape[1])
      crop = lambda x: x[:, top:top + size, top:top + size]
      disc = lambda p, s, x: self.discriminator.apply({"params": p, "batch_stats": s}, x, True, mutable=["batch_stats"])
      real_logits, d_stats = disc(params["discriminator"], extra["discriminator_stats"], crop(images))
      fake_logits, d_stats = disc(params["discriminator"], d_stats["batch_stats"], crop(jax.lax.stop_gradient(pred)))
      bce = lambda logits, label: jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))
      d_loss = bce(real_logits, 1.0) + bce(fake_logits, 0.0)          # reaches the discriminator only
      # The generator's adversarial loss through a frozen discriminator (its statistics as after the fake batch).
      g_logits, _ = disc(jax.lax.stop_gradient(params["discriminator"]), extra["discriminator_stats"], crop(pred))
      adversarial = bce(g_logits, 1.0)
      loss = loss + (1 - self.wtl2) * adversarial + d_loss
      new_extra["discriminator_stats"] = d_stats["batch_stats"]
      metrics.update({"inpainting/discriminator": d_loss, "inpainting/adversarial": adversarial})
    # The online probe reads the masked images' features (no second pass over the whole images).
    probe, probe_metrics = joint.probe_loss(params["probe"], feats, batch.get("label"))
    metrics.update(probe_metrics, ssl_loss=loss)
    return loss + probe, (metrics, new_extra)

  def reconstruct(self, params, extra, batch, rng):
    """Pictures: the input, the masked input (the hidden part in the fill colour) and the prediction pasted into the
    region, uint8."""
    images = batch["image"]
    region, filled = self._masks(rng, images)
    masked = self._inputs(images, filled)
    (_, pred), _ = joint.apply(self.net, params["net"], extra["batch_stats"], masked, train=False)
    pasted = jnp.where(region > 0, pred, images)
    return image_ops.denormalize(images), image_ops.denormalize(masked), image_ops.denormalize(pasted)

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, pixels_per_token: int, mask: str = "center",
             fraction: float = 0.25, num_blocks: int = 4, overlap: int = 4, overlap_weight: float = 10.0,
             adversarial: bool = False, adversarial_weight: float = 0.001, discriminator_width: int = 64,
             online_probe: bool = True) -> "Inpainting":
    """Builds the context encoder.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (single-view square images, labels).
      pixels_per_token: the encoder's token stride (a ViT's patch size; a ResNet's downsampling), the side of the
        pixel block each token predicts (`heads.PixelHead`).
      mask: "center" (the paper's central square) or "random_block" (`pretext.inpainting_mask`).
      fraction: the region's share of the image (0.25: a square of half the side).
      num_blocks: squares of a "random_block" mask.
      overlap: the width of the region's border ring left visible and predicted (official: 4 of a 64 region).
      overlap_weight: the ring's weight in the reconstruction loss relative to the interior (official: 10).
      adversarial: add the paper's adversarial loss (needs mask="center").
      adversarial_weight: its share `1 - wtl2` of the generator's loss (paper: 0.001).
      discriminator_width: the discriminator's first width (official: 64).
      online_probe: train a linear probe on the stop-gradient pooled features when the data has labels.
    """
    h, w, _ = run.image_shape()
    if h != w:
      raise ValueError(f"context encoders here take square images; config.data.image gives {h}x{w}.")
    if mask not in ("center", "random_block"):
      raise ValueError(f"method.mask={mask!r}: use 'center' or 'random_block'.")
    if not 0 < fraction < 1 or overlap < 0 or overlap_weight < 0 or not 0 < adversarial_weight < 1:
      raise ValueError(f"inpainting needs 0 < fraction < 1 ({fraction}), overlap >= 0 ({overlap}), overlap_weight "
                       f">= 0 ({overlap_weight}) and 0 < adversarial_weight < 1 ({adversarial_weight}).")
    if adversarial and mask != "center":
      raise ValueError("method.adversarial judges the central region: it needs method.mask='center'.")
    net = joint.DenseNetwork(backbone.create(**model), heads.PixelHead(3, pixels_per_token))
    _, pred = jax.eval_shape(lambda: net.init_with_output(jax.random.key(0), jnp.zeros((1, h, w, 3)))[0])
    if pred.shape[1:3] != (h, w):
      raise ValueError(f"the network predicts {pred.shape[1]}x{pred.shape[2]} pixels of the {h}-pixel input: set "
                       f"method.pixels_per_token to the encoder's token stride ({h * pixels_per_token // pred.shape[1]}).")
    return cls(net=net, discriminator=Discriminator(discriminator_width) if adversarial else None, mask=mask,
               fraction=fraction, num_blocks=num_blocks, overlap=overlap, overlap_weight=overlap_weight,
               wtl2=1 - adversarial_weight if adversarial else 1.0,
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

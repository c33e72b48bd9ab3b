"""Colorization (Zhang, Isola, Efros 2016, "Colorful Image Colorization").

The network sees the lightness L of each training image (CIE Lab, the grey image given to the encoder as three equal
channels) and predicts, for every output pixel, a distribution over the quantised ab colour plane (`Q` in-gamut bins
of size 10, `pretext.ab_gamut_bins`; the paper's 313). The targets are the true ab values soft-encoded on their 5
nearest bins (Gaussian, sigma 5; `pretext.colorization_targets`) at every `target_stride`-th pixel (the paper
predicts at a quarter of the resolution); the loss is the multinomial cross-entropy, each pixel weighted by the class
rebalancing weight of its nearest bin (`pretext.rebalancing_weights`: the smoothed empirical bin distribution mixed
with the uniform one, lambda 0.5, so that rare, saturated colours count) and images without colour (no subsampled ab
value beyond 5) left out, as the official training net (`caffe_traininglayers.py`: `NNEncLayer` with 10 neighbours,
`PriorBoostLayer`, `NonGrayMaskLayer`, `ClassRebalanceMultLayer`). The dense prediction is a linear layer on
each token of the encoder's last feature map (`heads.PixelHead`: a ViT's patch tokens, a ResNet's last stage),
in place of the paper's fully convolutional VGG.

Decoding for pictures: the annealed mean (T = 0.38, `pretext.annealed_mean`) with the input's L. The representation
is the encoder's pooled features of the evaluation image as it is, in colour, so that the released encoder gives the
evaluated features (the contract's invariant); the paper evaluates its network on the lightness alone, which a user
gets by feeding the released encoder grey images (`grey_input`).

Deviations: the empirical bin distribution (the paper's, over ImageNet, computed once) is estimated while training,
an exponential moving average (`prior_momentum`) of the global batches' nearest-bin histograms kept in the method's
state, starting from the uniform distribution; the logged loss is the weighted one (the official layer weights only
the gradient, its reported loss is unweighted; the gradients are the same); the grey input is given to the encoder
normalised as an RGB image is, not as L - 50. Logged: `colorization/top1` (the nearest bin's accuracy),
`colorization/prior_entropy`. Report: `colorizations.png`, the test images, their L, and the colourisations.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import pretext
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads
from ssl_jax.ops import image as image_ops


def grey_input(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Normalised RGB images `[B, H, W, 3]` -> (the encoder's input: L / 100 as three equal channels, normalised as RGB
  images are; the images in [0, 1])."""
  unit = jnp.clip(image_ops.denormalize_unit(images), 0.0, 1.0)
  lightness = pretext.rgb_to_lab(unit)[..., :1] / 100.0
  return image_ops.normalize_unit(jnp.repeat(lightness, 3, axis=-1)), unit


@dataclasses.dataclass(frozen=True)
class Colorization(joint.ReleasesOnlineEncoder, contract.Method):
  """Colorization; `encoders` and `represent` are `net`'s encoder on the images as they are
  (`joint.ReleasesOnlineEncoder`)."""
  reconstructs = True
  pictures = ("colorizations", ("input", "L (the network's input)", "colourised"))

  net: joint.DenseNetwork
  bins: tuple                    # [Q, 2] ab centres as nested tuples (hashable)
  neighbours: int
  target_stride: int
  rebalance_lambda: float
  prior_momentum: float
  decode_temperature: float
  num_classes: int | None

  model_spec: tuple = ()

  def _bins(self):
    return jnp.asarray(self.bins, jnp.float32)

  def init(self, rng, batch):
    x, _ = grey_input(batch["image"])
    variables = self.net.init(rng, x, False)
    q = len(self.bins)
    extra = {"batch_stats": variables.get("batch_stats", {}), "prior": jnp.full((q,), 1.0 / q, jnp.float32)}
    probe = joint.init_probe(self.num_classes, self.net.encoder.num_features)
    return {"net": variables["params"], "probe": probe}, extra

  def loss(self, params, extra, batch, rng, step):
    del step
    x, unit = grey_input(batch["image"])
    _, targets = pretext.colorization_targets(unit, np.asarray(self.bins), neighbours=self.neighbours,
                                              stride=self.target_stride)                          # [B, h, w, Q]
    # NonGrayMaskLayer: an image none of whose (subsampled) ab values exceeds 5 in magnitude is left out.
    ab = pretext.rgb_to_lab(unit[:, ::self.target_stride, ::self.target_stride])[..., 1:]
    colourful = jnp.any(jnp.abs(ab) > 5.0, axis=(1, 2, 3)).astype(jnp.float32)               # [B]
    (feats, logits), stats = joint.apply(self.net, params["net"], extra["batch_stats"], x, train=True, rng=rng)
    nearest = jnp.argmax(targets, axis=-1)                                             # [B, h, w]
    q = targets.shape[-1]
    histogram = jnp.mean(jax.nn.one_hot(nearest, q), axis=(0, 1, 2))
    prior = self.prior_momentum * extra["prior"] + (1 - self.prior_momentum) * histogram
    weights = pretext.rebalancing_weights(jax.lax.stop_gradient(prior), self._bins(), self.rebalance_lambda)
    cross_entropy = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)    # [B, h, w]
    loss = jnp.mean(weights[nearest] * colourful[:, None, None] * cross_entropy)
    hits = (jnp.argmax(logits, axis=-1) == nearest).astype(jnp.float32)
    probe, probe_metrics = joint.probe_loss(params["probe"], feats, batch.get("label"))
    entropy = -jnp.sum(prior * jnp.log(jnp.maximum(prior, 1e-12)))
    metrics = dict(probe_metrics, ssl_loss=loss, **{"colorization/top1": jnp.mean(hits),
                                                    "colorization/prior_entropy": entropy})
    return loss + probe, (metrics, {"batch_stats": stats, "prior": prior})

  def reconstruct(self, params, extra, batch, rng):
    """Pictures: the input, its lightness, and the colourisation (the annealed mean of the predicted distributions,
    upsampled to the input's size, with the input's L), uint8."""
    del rng
    x, unit = grey_input(batch["image"])
    (_, logits), _ = joint.apply(self.net, params["net"], extra["batch_stats"], x, train=False)
    ab = pretext.annealed_mean(logits, self._bins(), self.decode_temperature)          # [B, h, w, 2]
    b, h, w, _ = unit.shape
    ab = jax.image.resize(ab, (b, h, w, 2), "bilinear")
    lab = pretext.rgb_to_lab(unit)
    colour = pretext.lab_to_rgb(jnp.concatenate([lab[..., :1], ab], axis=-1))
    grey = pretext.lab_to_rgb(jnp.concatenate([lab[..., :1], jnp.zeros_like(ab)], axis=-1))
    to_uint8 = lambda v: jnp.clip(jnp.round(v * 255.0), 0, 255).astype(jnp.uint8)
    return image_ops.denormalize(batch["image"]), to_uint8(grey), to_uint8(colour)

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, pixels_per_token: int, target_stride: int,
             bin_size: int = 10, neighbours: int = 10, rebalance_lambda: float = 0.5, prior_momentum: float = 0.99,
             decode_temperature: float = 0.38, online_probe: bool = True) -> "Colorization":
    """Builds colorization.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (single-view square colour images, labels).
      pixels_per_token: output pixels per token side (`heads.PixelHead`): the encoder's token stride (a ViT's
        patch size) divided by `target_stride`.
      target_stride: the targets' resolution, `1 / target_stride` of the input's (paper: 4).
      bin_size: the ab grid's cell (paper: 10).
      neighbours: the nearest bins of the soft encoding (the official training layer's 10; the paper says 5).
      rebalance_lambda: the uniform distribution's share in the rebalancing weights (paper: 0.5; 1 turns them off).
      prior_momentum: of the moving estimate of the bin distribution.
      decode_temperature: the annealed mean's (paper: 0.38), for pictures.
      online_probe: train a linear probe on the stop-gradient pooled features when the data has labels.
    """
    h, w, _ = run.image_shape()
    if h != w or h % target_stride:
      raise ValueError(f"colorization predicts a square grid at 1/{target_stride} of the input: config.data.image "
                       f"gives {h}x{w}; use a square size divisible by method.target_stride.")
    if not 0 <= rebalance_lambda <= 1 or not 0 <= prior_momentum < 1 or decode_temperature <= 0:
      raise ValueError(f"colorization needs rebalance_lambda in [0, 1] ({rebalance_lambda}), prior_momentum in "
                       f"[0, 1) ({prior_momentum}) and decode_temperature > 0 ({decode_temperature}).")
    bins = pretext.ab_gamut_bins(bin_size)
    net = joint.DenseNetwork(backbone.create(**model), heads.PixelHead(len(bins), pixels_per_token))
    _, logits = jax.eval_shape(lambda: net.init_with_output(jax.random.key(0), jnp.zeros((1, h, w, 3)))[0])
    if logits.shape[1] * target_stride != h:
      raise ValueError(f"the network predicts {logits.shape[1]}x{logits.shape[2]} pixels of the {h}-pixel input and "
                       f"the targets are at 1/{target_stride}: set method.pixels_per_token to the encoder's token "
                       f"stride ({h * pixels_per_token // logits.shape[1]}) divided by method.target_stride.")
    return cls(net=net, bins=tuple(map(tuple, bins.tolist())), neighbours=neighbours, target_stride=target_stride,
               rebalance_lambda=rebalance_lambda, prior_momentum=prior_momentum,
               decode_temperature=decode_temperature, num_classes=run.num_classes if online_probe else None,
               model_spec=contract.freeze(model))

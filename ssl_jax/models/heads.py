"""Projection, prediction and DINO heads for joint-embedding methods.

`MLP` covers the SimCLR, BYOL and MoCo v3 heads (linear layers with BatchNorm over the global batch and ReLU on the
hidden layers, and a configurable BatchNorm after the last one); `DINOHead` is DINO's 3-layer GELU MLP, bottleneck,
l2 normalisation and weight-normalised prototype layer; `SwAVHead` is SwAV's projection head and prototypes;
`JigsawHead` is the context-free network's classifier over the tiles of a jigsaw puzzle; `PixelHead` turns a
feature map into per-pixel outputs (colorization's logits, inpainting's pixels).
"""

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax.models import resnet


def _dense(features, use_bias, name, names=("embed", "mlp")):
  return nn.Dense(features, use_bias=use_bias, name=name, kernel_init=nn.with_logical_partitioning(
      nn.initializers.lecun_normal(), names))


class MLP(nn.Module):
  """`dims[0] -> ... -> dims[-1]` linear layers: `[B, D] -> [B, dims[-1]]` (float32).

  Attributes:
    dims: the output width of each layer.
    hidden_bn: BatchNorm (global batch) after each hidden linear layer, before the activation.
    last_bn: after the last layer: "" (nothing), "affine" (BatchNorm), "scale" (BatchNorm without the shift: SimCLR)
      or "plain" (BatchNorm without scale and shift: MoCo v3).
    use_bias: biases in the linear layers (MoCo v3 has none).
    activation: "relu" or "gelu".
  """
  dims: tuple[int, ...]
  hidden_bn: bool = True
  last_bn: str = ""
  use_bias: bool = True
  activation: str = "relu"

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = {"relu": nn.relu, "gelu": lambda v: nn.gelu(v, approximate=False)}[self.activation]
    x = x.astype(jnp.float32)
    for i, d in enumerate(self.dims[:-1]):
      x = _dense(d, self.use_bias and not self.hidden_bn, f"dense{i}")(x)
      if self.hidden_bn:
        x = resnet.batch_norm(train, f"bn{i}")(x)
      x = act(x)
    last = len(self.dims) - 1
    x = _dense(self.dims[-1], self.use_bias and not self.last_bn, f"dense{last}")(x)
    if self.last_bn:
      if self.last_bn not in ("affine", "scale", "plain"):
        raise ValueError(f"MLP.last_bn={self.last_bn!r}: use '', 'affine', 'scale' or 'plain'.")
      x = resnet.batch_norm(train, f"bn{last}", use_scale=self.last_bn != "plain",
                            use_bias=self.last_bn == "affine")(x)
    return x


class DINOHead(nn.Module):
  """DINO's head (Caron et al. 2021): `[B, D] -> [B, out_dim]` logits before the temperature.

  MLP `hidden_dim` x (`num_layers` - 1) with GELU -> `bottleneck_dim` -> l2-normalise -> weight-normalised linear
  layer to `out_dim` prototypes without bias. With `norm_last_layer` the weight-norm gain is fixed at 1 (the DINO
  default), so the logits are cosine similarities to the prototypes. `use_bn` adds BatchNorm (global batch) after
  each hidden layer, as DINO's `use_bn_in_head`.
  """
  out_dim: int = 65536
  hidden_dim: int = 2048
  bottleneck_dim: int = 256
  num_layers: int = 3
  norm_last_layer: bool = True
  use_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    """`x` `[..., D]` -> `[..., out_dim]`; `mask` (`[...]` bool, optional) limits the BatchNorm statistics to the
    rows it marks (DINOv2's padded buffer of masked patches)."""
    init = nn.initializers.truncated_normal(0.02)
    x = x.astype(jnp.float32)
    dims = (self.hidden_dim,) * (self.num_layers - 1) + (self.bottleneck_dim,)
    for i, d in enumerate(dims):
      x = nn.Dense(d, name=f"dense{i}", kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")))(x)
      if i < len(dims) - 1:
        if self.use_bn:
          x = resnet.batch_norm(train, f"bn{i}")(x, mask=None if mask is None else mask[..., None])
        x = nn.gelu(x, approximate=False)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    # DINO creates the prototype layer after its truncated-normal init pass, so it keeps PyTorch's default nn.Linear
    # init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Weight normalisation hides the scale from the forward pass but not
    # from Adam: the direction of a prototype moves by ~lr / scale a step (3.6 x faster at N(0, 0.02) with 64 inputs).
    proto_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    # Sharded like any kernel (input rows over fsdp, prototypes as a vocabulary): at 65536 prototypes the layer is
    # 64 MiB, which a replicated copy per device would add to FSDP's share.
    v = self.param("prototypes", nn.with_logical_partitioning(proto_init, ("embed", "vocab")),
                   (self.bottleneck_dim, self.out_dim))
    w = v / jnp.maximum(jnp.linalg.norm(v, axis=0, keepdims=True), 1e-12)
    if not self.norm_last_layer:
      w = w * self.param("prototype_gain", nn.initializers.ones, (self.out_dim,))
    return x @ w


def unit_columns(init):
  """An initializer: `init`'s matrix with each column scaled to unit l2 norm."""
  def initialize(key, shape, dtype=jnp.float32):
    w = init(key, shape, dtype)
    return w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), 1e-12)
  return initialize


class SwAVHead(nn.Module):
  """SwAV's head (Caron et al. 2020, `src/resnet50.py` `forward_head`): `[B, D] -> (z [B, dim], scores [B, K])`.

  Linear(hidden)-BN-ReLU-Linear(dim) (the official layers' biases: the first one is cancelled by the BatchNorm, so it
  is left out), `z` l2-normalised, and `scores = z @ C` against the prototypes `C` `[dim, K]` (the official
  `nn.Linear(dim, K, bias=False)`), initialised as PyTorch's Linear, U(+-1/sqrt(dim)), with unit-norm columns (the
  official loop normalises them before its first forward pass; the method keeps them there, `project_params`).
  """
  hidden_dim: int = 2048
  dim: int = 128
  num_prototypes: int = 3000
  hidden_bn: bool = True          # False: Linear-ReLU-Linear (the official README's remedy for an early collapse)

  @nn.compact
  def __call__(self, x, train: bool = False):
    z = MLP(dims=(self.hidden_dim, self.dim), hidden_bn=self.hidden_bn, last_bn="", use_bias=True, name="mlp")(x,
                                                                                                             train)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    torch_linear = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=0, out_axis=1)
    c = self.param("prototypes", nn.with_logical_partitioning(unit_columns(torch_linear), ("embed", "vocab")),
                   (self.dim, self.num_prototypes))
    return z, z @ c


class JigsawHead(nn.Module):
  """The jigsaw puzzle's classifier (Noroozi & Favaro 2016, the context-free network after its shared conv layers):
  tile features `[B, T, D]` -> permutation logits `[B, num_permutations]` (float32).

  fc6 on every tile (shared weights), ReLU, dropout; the T tiles' outputs concatenated in puzzle order; fc7, ReLU,
  dropout; fc8. Paper (AlexNet, T = 9): 1024, 4096, 1000 permutations, dropout 0.5.
  """
  tile_dim: int = 1024
  hidden_dim: int = 4096
  num_permutations: int = 1000
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    b, tiles, _ = x.shape
    drop = lambda v: nn.Dropout(self.dropout, deterministic=not train)(v)
    x = drop(nn.relu(_dense(self.tile_dim, True, "fc6")(x.astype(jnp.float32))))
    x = drop(nn.relu(_dense(self.hidden_dim, True, "fc7")(x.reshape(b, tiles * self.tile_dim))))
    return _dense(self.num_permutations, True, "fc8", names=("mlp", "vocab"))(x)


class PixelHead(nn.Module):
  """A linear layer from each token of a square feature map to `num_classes` values for each of the
  `pixels_per_token` x `pixels_per_token` output pixels it covers: tokens `[B, g * g, D]` (row by row) -> `[B, g r,
  g r, num_classes]` (float32), r = `pixels_per_token`. The dense prediction on a ViT's patch tokens or a ResNet's
  last feature map: colorization's per-pixel ab logits, inpainting's pixels (`num_classes=3`)."""
  num_classes: int
  pixels_per_token: int = 1

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    del train
    b, t, _ = tokens.shape
    g, r, c = int(round(t ** 0.5)), self.pixels_per_token, self.num_classes
    if g * g != t:
      raise ValueError(f"PixelHead needs a square feature map, got {t} tokens.")
    x = _dense(r * r * c, True, "dense", names=("embed", "vocab"))(tokens.astype(jnp.float32))
    return x.reshape(b, g, g, r, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, g * r, g * r, c)


class ClassifierHead(nn.Module):
  """A linear classifier `[B, D] -> [B, num_classes]` (float32), optionally after BatchNorm without affine parameters.

  Attributes:
    num_classes: C.
    batchnorm: BatchNorm(affine=False, eps=1e-6) over the global batch first (MAE's linear-probe head).
    init_std: N(0, init_std) kernel initialisation (MAE: 0.01 for the linear probe, 2e-5 for fine-tuning); zero bias.
  """
  num_classes: int
  batchnorm: bool = False
  init_std: float = 0.01

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(jnp.float32)
    if self.batchnorm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-6, use_scale=False, use_bias=False,
                       name="bn")(x)
    return nn.Dense(self.num_classes, name="fc", kernel_init=nn.with_logical_partitioning(
        nn.initializers.normal(self.init_std), ("embed", None)))(x)

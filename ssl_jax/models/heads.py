"""Projection, prediction and DINO heads for joint-embedding methods.

`MLP` covers the SimCLR, BYOL and MoCo v3 heads (linear layers with BatchNorm over the global batch and ReLU on the
hidden layers, and a configurable BatchNorm after the last one); `DINOHead` is DINO's 3-layer GELU MLP, bottleneck,
l2 normalisation and weight-normalised prototype layer.
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

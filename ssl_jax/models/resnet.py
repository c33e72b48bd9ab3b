"""ResNet (He et al. 2016) with BatchNorm over the global batch, for SimCLR, BYOL and the ResNet baselines.

torchvision's ResNet v1.5 (stride on the 3x3 convolution of a bottleneck), Kaiming-normal (fan-out) convolution
initialisation, BatchNorm with PyTorch's defaults (momentum 0.1, i.e. Flax `momentum=0.9`, eps 1e-5) and optionally
the last BatchNorm of each residual branch initialised to zero (`zero_init_residual`; SimCLR's TF code does this).

Global BatchNorm: under `jit` the batch statistics are `jnp.mean` over the whole (sharded) batch axis, which XLA
turns into a cross-device reduction, so the statistics are those of the global batch on any number of devices and
hosts — the "sync BN" that SimCLR and BYOL need — without `axis_name`. Running statistics live in the `batch_stats`
collection, which the methods keep in their extra state.

Convolution kernels `[kh, kw, C_in, C_out]` carry the logical axis names (None, None, `conv_in`, `conv_out`):
the default rules split output channels over `fsdp` (FSDP/ZeRO-3 of a ResNet) and keep input channels whole.
BatchNorm scales, shifts and running statistics (a few KiB per layer) stay replicated.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# depth -> (block, blocks per stage), as torchvision.
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

_conv_init = nn.with_logical_partitioning(nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                                         (None, None, "conv_in", "conv_out"))


def batch_norm(train: bool, name: str | None = None, zero_scale: bool = False, **kw) -> nn.BatchNorm:
  """PyTorch-default BatchNorm in float32: batch statistics when `train`, running averages otherwise."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=jnp.float32, name=name,
                      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones, **kw)


class BasicBlock(nn.Module):
  filters: int
  strides: int
  zero_init_residual: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=_conv_init)
    y = conv(self.filters, (3, 3), self.strides, padding=1, name="conv1")(x)
    y = nn.relu(batch_norm(train, "bn1")(y))
    y = conv(self.filters, (3, 3), padding=1, name="conv2")(y)
    y = batch_norm(train, "bn2", self.zero_init_residual)(y)
    if x.shape[-1] != self.filters or self.strides != 1:
      x = batch_norm(train, "downsample_bn")(conv(self.filters, (1, 1), self.strides, name="downsample_conv")(x))
    return nn.relu(x + y).astype(self.dtype)


class BottleneckBlock(nn.Module):
  filters: int
  strides: int
  zero_init_residual: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=_conv_init)
    y = nn.relu(batch_norm(train, "bn1")(conv(self.filters, (1, 1), name="conv1")(x)))
    y = nn.relu(batch_norm(train, "bn2")(conv(self.filters, (3, 3), self.strides, padding=1, name="conv2")(y)))
    y = batch_norm(train, "bn3", self.zero_init_residual)(conv(self.filters * 4, (1, 1), name="conv3")(y))
    if x.shape[-1] != self.filters * 4 or self.strides != 1:
      x = batch_norm(train, "downsample_bn")(conv(self.filters * 4, (1, 1), self.strides, name="downsample_conv")(x))
    return nn.relu(x + y).astype(self.dtype)


class ResNet(nn.Module):
  """A ResNet trunk: `[B, H, W, 3]` normalised images -> `{"pooled": [B, C]` globally average-pooled features
  (float32), `"tokens": [B, h * w, C]` the last feature map row by row (compute dtype)`}`.

  Attributes:
    depth: 18, 34, 50, 101 or 152 (torchvision's block layouts), unless `stages` is given.
    width: channels of the first stage (64; wider ResNets multiply it).
    stages: blocks per stage, overriding `depth`'s layout (tiny models), with `block` "basic" or "bottleneck".
    stem: "imagenet" (7x7/2 convolution and 3x3/2 max-pool) or "small" (one 3x3/1 convolution, no pooling: the
      CIFAR-style stem for images of a few dozen pixels).
    zero_init_residual: initialise the last BatchNorm scale of each residual branch to zero.
    dtype: compute dtype; BatchNorm statistics and the output are float32.
  """
  depth: int = 50
  width: int = 64
  stages: tuple[int, ...] | None = None
  block: str | None = None
  stem: str = "imagenet"
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @property
  def num_features(self) -> int:
    block, stages = self._layout()
    return self.width * 2 ** (len(stages) - 1) * (4 if block == "bottleneck" else 1)

  def _layout(self):
    if self.stages is not None:
      return self.block or "basic", tuple(self.stages)
    if self.depth not in DEPTHS:
      raise ValueError(f"ResNet depth {self.depth} is not one of {sorted(DEPTHS)}; or give `stages`.")
    return DEPTHS[self.depth]

  @nn.compact
  def __call__(self, x, train: bool = False, return_layers: bool = False):
    """`x` `[B, H, W, 3]` -> `{"pooled": float32 [B, D] (global mean), "tokens": [B, h * w, D] (the last feature
    map, row by row)}`, and with `return_layers` also `"layers"`: each stage's output as tokens, `[B, T_i, D_i]`."""
    block_name, stages = self._layout()
    block = {"basic": BasicBlock, "bottleneck": BottleneckBlock}[block_name]
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = nn.Conv(self.width, (7, 7), 2, padding=3, use_bias=False, dtype=self.dtype, kernel_init=_conv_init,
                  name="stem_conv")(x)
      x = nn.relu(batch_norm(train, "stem_bn")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    elif self.stem == "small":
      x = nn.Conv(self.width, (3, 3), 1, padding=1, use_bias=False, dtype=self.dtype, kernel_init=_conv_init,
                  name="stem_conv")(x)
      x = nn.relu(batch_norm(train, "stem_bn")(x))
    else:
      raise ValueError(f"unknown ResNet stem {self.stem!r}; use 'imagenet' or 'small'.")
    as_tokens = lambda y: y.reshape(y.shape[0], -1, y.shape[-1])
    layers = []
    for i, n in enumerate(stages):
      for j in range(n):
        x = block(self.width * 2 ** i, 2 if i > 0 and j == 0 else 1, self.zero_init_residual, self.dtype,
                  name=f"stage{i + 1}_block{j + 1}")(x, train)
      layers.append(as_tokens(x))
    out = {"pooled": jnp.mean(x.astype(jnp.float32), axis=(1, 2)), "tokens": as_tokens(x)}
    return dict(out, layers=tuple(layers)) if return_layers else out

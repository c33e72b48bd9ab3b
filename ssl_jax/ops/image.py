"""On-device image preprocessing shared by methods and evaluators (pure jax.numpy)."""

import jax
import jax.numpy as jnp

# ImageNet channel statistics in [0, 1] units, used by MAE, MoCo v3, DINO, SimCLR's linear eval and timm.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_unit(x: jax.Array, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """float `[..., H, W, C]` in [0, 1] -> float32 `(x - mean) / std`, per channel."""
  return (x.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def normalize(images: jax.Array, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """uint8 `[..., H, W, C]` (0..255) -> float32 `(x / 255 - mean) / std`, per channel."""
  return normalize_unit(images.astype(jnp.float32) / 255.0, mean, std)


def denormalize_unit(x: jax.Array, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """The inverse of `normalize_unit`: float `[..., H, W, C]` -> float32 in [0, 1] units (not clipped)."""
  return x.astype(jnp.float32) * jnp.asarray(std, jnp.float32) + jnp.asarray(mean, jnp.float32)


def denormalize(x: jax.Array, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """The inverse of `normalize`, rounded and clipped: float `[..., H, W, C]` -> uint8."""
  return jnp.clip(jnp.round(denormalize_unit(x, mean, std) * 255.0), 0, 255).astype(jnp.uint8)

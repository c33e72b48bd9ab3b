"""Pixel-reconstruction objectives (MAE)."""

import jax
import jax.numpy as jnp


def patch_normalize(target: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Normalises each patch by its own mean and (unbiased) variance.

  This is MAE's `norm_pix_loss` target: `(t - mean(t)) / sqrt(var(t) + eps)` over the last axis.

  Args:
    target: `[..., D]` pixel values of a patch (D = patch_size**2 * channels).
    eps: added to the variance.

  Returns:
    `[..., D]` normalised target, float32.

  Follows the official MAE code (He et al. 2022, `models_mae.py`), which uses `torch.var` and so the unbiased
  (ddof=1) variance.
  """
  target = target.astype(jnp.float32)
  mean = jnp.mean(target, axis=-1, keepdims=True)
  var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
  return (target - mean) * jax.lax.rsqrt(var + eps)


def mae_loss(pred: jax.Array, target: jax.Array, mask: jax.Array, norm_pix: bool = True,
             eps: float = 1e-6) -> jax.Array:
  """Mean squared error over the masked patches of a batch (Masked Autoencoders, He et al. 2022).

  `loss = sum_{b,t} mask[b,t] * mean_d (pred[b,t,d] - target'[b,t,d])**2 / sum_{b,t} mask[b,t]`, where target' is
  `patch_normalize(target)` when `norm_pix` is set and `target` otherwise. The mean is over all masked patches of the
  global batch, as in the paper (not a mean of per-example means).

  Args:
    pred: `[B, T, D]` predicted pixels for every patch.
    target: `[B, T, D]` true pixels per patch (see `ssl_jax.masking.patchify`).
    mask: `[B, T]`, 1 where the patch was masked (its loss counts), 0 where it was visible.
    norm_pix: use per-patch normalised targets (MAE's `norm_pix_loss`; the paper's default for its best results).
    eps: variance epsilon of the normalisation.

  Returns:
    scalar float32 loss.
  """
  if pred.shape != target.shape or pred.shape[:2] != mask.shape:
    raise ValueError(f"mae_loss: shapes pred {pred.shape}, target {target.shape}, mask {mask.shape} do not match "
                     "([B, T, D], [B, T, D], [B, T]).")
  if norm_pix:
    target = patch_normalize(target, eps)
  per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)), axis=-1)
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_patch * mask) / jnp.maximum(jnp.sum(mask), 1.0)

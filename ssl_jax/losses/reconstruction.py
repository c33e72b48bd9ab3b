"""Reconstruction and feature-regression objectives: MAE pixels; I-JEPA / data2vec latent targets."""

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

  Example:
    >>> [round(v, 3) for v in patch_normalize(jnp.array([0.0, 4.0])).tolist()]   # mean 2, unbiased var 8
    [-0.707, 0.707]
  """
  target = target.astype(jnp.float32)
  mean = jnp.mean(target, axis=-1, keepdims=True)
  var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
  return (target - mean) * jax.lax.rsqrt(var + eps)


def masked_mean(values: jax.Array, mask: jax.Array, axis=-1) -> jax.Array:
  """`sum(values * mask) / max(sum(mask), 1)` over `axis` (all axes with `axis=None`).

  Example:
    >>> masked_mean(jnp.array([[1.0, 5.0, 3.0]]), jnp.array([[1, 0, 1]])).tolist()
    [2.0]
  """
  mask = mask.astype(jnp.float32)
  return jnp.sum(values * mask, axis=axis) / jnp.maximum(jnp.sum(mask, axis=axis), 1.0)


def mae_loss(pred: jax.Array, target: jax.Array, mask: jax.Array, norm_pix: bool = True,
             eps: float = 1e-6) -> jax.Array:
  """Mean squared error over the masked patches (Masked Autoencoders, He et al. 2022).

  Per example: `mean over masked patches t of mean_d (pred[t, d] - target'[t, d])**2`, where target' is
  `patch_normalize(target)` when `norm_pix` is set and `target` otherwise. MAE's loss is
  `sum(per_patch * mask) / sum(mask)` over the batch; since its masking removes the same number of patches from every
  example, that equals the mean of these per-example values.

  Args:
    pred: `[B, T, D]` predicted pixels for every patch.
    target: `[B, T, D]` true pixels per patch (see `ssl_jax.masking.patchify`).
    mask: `[B, T]`, 1 where the patch was masked (its loss counts), 0 where it was visible.
    norm_pix: use per-patch normalised targets (MAE's `norm_pix_loss`; the paper's default for its best results).
    eps: variance epsilon of the normalisation.

  Returns:
    `[B]` per-example losses, float32.

  Example:
    >>> pred = jnp.array([[[1.0, 2.0], [100.0, 100.0]]])
    >>> target = jnp.array([[[0.0, 4.0], [0.0, 0.0]]])
    >>> mae_loss(pred, target, jnp.array([[1.0, 0.0]]), norm_pix=False).tolist()   # ((1-0)^2 + (2-4)^2) / 2
    [2.5]
  """
  if pred.shape != target.shape or pred.shape[:2] != mask.shape:
    raise ValueError(f"mae_loss: shapes pred {pred.shape}, target {target.shape}, mask {mask.shape} do not match "
                     "([B, T, D], [B, T, D], [B, T]).")
  if norm_pix:
    target = patch_normalize(target, eps)
  per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)), axis=-1)
  return masked_mean(per_patch, mask)


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """LayerNorm without affine parameters over the last axis, in float32 (`F.layer_norm(x, x.shape[-1:])`).

  Example:
    >>> [round(v, 3) for v in layer_norm(jnp.array([1.0, 3.0])).tolist()]
    [-1.0, 1.0]
  """
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(jnp.var(x, axis=-1, keepdims=True) + eps)


def regression_loss(pred: jax.Array, target: jax.Array, kind: str = "smooth_l1", beta: float = 1.0,
                    normalize_target: bool = False) -> jax.Array:
  """Feature regression for latent-prediction methods (I-JEPA, Assran et al. 2023; data2vec, Baevski et al. 2022).

  Per position, the mean over the feature axis of `smooth_l1(pred - target)` (Huber with threshold beta, as
  `F.smooth_l1_loss`: `0.5 x^2 / beta` if |x| < beta else `|x| - 0.5 beta`) or of `(pred - target)^2`. The target
  gets no gradient. I-JEPA: smooth L1 (beta 1) on layer-normalised target-encoder outputs; data2vec: see
  `data2vec_targets` (data2vec sums over D and divides by sqrt(D): multiply these values by sqrt(D)).

  Args:
    pred: `[..., D]` predictions.
    target: `[..., D]` targets.
    kind: "smooth_l1" or "l2".
    beta: smooth-L1 threshold; beta <= 0 gives L1, as in torch. (data2vec's `loss_beta = 0` means L2 in its code:
      pass kind="l2" for that.)
    normalize_target: apply `layer_norm` to the target first (I-JEPA).

  Returns:
    `pred.shape[:-1]` per-position losses, float32.

  Example:
    >>> regression_loss(jnp.array([[0.5, 3.0]]), jnp.zeros((1, 2)), beta=1.0).tolist()   # (0.125 + 2.5) / 2
    [1.3125]
  """
  target = jax.lax.stop_gradient(layer_norm(target) if normalize_target else target.astype(jnp.float32))
  diff = pred.astype(jnp.float32) - target
  if kind == "l2":
    return jnp.mean(jnp.square(diff), axis=-1)
  if kind == "smooth_l1":
    if beta <= 0:
      return jnp.mean(jnp.abs(diff), axis=-1)
    a = jnp.abs(diff)
    return jnp.mean(jnp.where(a < beta, 0.5 * jnp.square(diff) / beta, a - 0.5 * beta), axis=-1)
  raise ValueError(f"regression_loss: kind must be 'smooth_l1' or 'l2', got {kind!r}.")


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Normalises each channel over the time/token axis: `[B, T, D]`, statistics over T (`F.instance_norm`).

  Example:
    >>> [round(v, 3) for v in instance_norm(jnp.array([[[1.0], [3.0]]]))[0, :, 0].tolist()]
    [-1.0, 1.0]
  """
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=-2, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(jnp.var(x, axis=-2, keepdims=True) + eps)


def data2vec_targets(layer_outputs: jax.Array, top_k: int, layer_norm_kind: str | None = "layer",
                     final_norm_kind: str | None = "layer", eps: float = 1e-5) -> jax.Array:
  """data2vec's teacher targets: the average of the top K blocks' outputs, each normalised (Baevski et al. 2022).

  Args:
    layer_outputs: `[L, B, T, D]` the teacher's per-block outputs, L >= top_k. The official vision code takes the
      residual stream after each block (`layer_results="end"`, what `Transformer(return_layers=True)` gives); the
      speech and text code the FFN output before the block's last residual connection.
    top_k: K, data2vec's `average_top_k_layers` (vision: 6 of 12 blocks; speech and text: 8).
    layer_norm_kind: normalisation of each layer before averaging: "layer" (over D, without affine parameters;
      vision's `target_layer_norm_last`), "instance" (over T, per channel; speech), or None.
    final_norm_kind: normalisation of the average: "layer" (vision's `post_target_layer_norm`), "instance" or None.
    eps: the normalisations' epsilon (`F.layer_norm` and `F.instance_norm`: 1e-5).

  Returns:
    `[B, T, D]` targets, float32, no gradient.

  Example:
    >>> x = jnp.stack([jnp.ones((1, 2, 2)), 3 * jnp.ones((1, 2, 2))])
    >>> data2vec_targets(x, top_k=2, layer_norm_kind=None, final_norm_kind=None).tolist()
    [[[2.0, 2.0], [2.0, 2.0]]]
  """
  if not 0 < top_k <= layer_outputs.shape[0]:
    raise ValueError(f"data2vec_targets: top_k={top_k} but {layer_outputs.shape[0]} layers were given.")
  norms = {"instance": lambda x: instance_norm(x, eps), "layer": lambda x: layer_norm(x, eps),
           None: lambda x: x.astype(jnp.float32)}
  if layer_norm_kind not in norms or final_norm_kind not in norms:
    raise ValueError("data2vec_targets: normalisation must be 'instance', 'layer' or None.")
  layers = [norms[layer_norm_kind](layer_outputs[i]) for i in range(layer_outputs.shape[0] - top_k,
                                                                    layer_outputs.shape[0])]
  return jax.lax.stop_gradient(norms[final_norm_kind](sum(layers) / top_k))

"""Optimizers and learning-rate schedules as optax chains, from keyword arguments."""

import jax
import optax

OPTIMIZERS = ("adamw", "lars", "lamb", "sgd")
SCHEDULES = ("cosine", "constant")


def peak_learning_rate(base_lr: float, batch_size: int, lr_batch_base: int = 256) -> float:
  """The linear scaling rule (Goyal et al. 2017) used by MAE, MoCo v3, SimCLR: `base_lr * batch_size / base`."""
  return base_lr * batch_size / lr_batch_base


def lr_schedule(*, peak_lr: float, warmup_steps: int, total_steps: int, schedule: str = "cosine",
                min_lr: float = 0.0) -> optax.Schedule:
  """Linear warm-up from 0 to `peak_lr` over `warmup_steps`, then half-cycle cosine to `min_lr` at `total_steps`
  (MAE's `adjust_learning_rate`, per step rather than per fractional epoch) or constant."""
  if schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup_steps, max(total_steps, warmup_steps + 1),
                                              end_value=min_lr)
  if schedule == "constant":
    return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup_steps), optax.constant_schedule(peak_lr)],
                                [warmup_steps])
  raise ValueError(f"unknown lr schedule {schedule!r}; use one of {SCHEDULES}.")


def decay_mask(params, no_decay_names=("pos_embedding",)):
  """True for parameters that get weight decay: matrices and larger, except biases (`*bias`) and `no_decay_names`.

  Biases and LayerNorm/BatchNorm parameters are excluded, as in MAE, MoCo v3 and DINO. The [CLS] and mask tokens
  are decayed, as in the official MAE pretraining code (timm's `add_weight_decay` skips only 1-D tensors).
  """
  def keep(path, x):
    # The last dict key names the parameter (boxed parameters add an attribute key after it).
    name = next((k.key for k in reversed(path) if isinstance(k, jax.tree_util.DictKey)), None)
    return x.ndim > 1 and not name.endswith("bias") and name not in no_decay_names
  return jax.tree_util.tree_map_with_path(keep, params)


def make(*, name: str, learning_rate: optax.Schedule, weight_decay: float = 0.0, b1: float = 0.9,
         b2: float = 0.999, eps: float = 1e-8, momentum: float = 0.9, grad_clip: float | None = None,
         no_decay_names=("pos_embedding",)) -> optax.GradientTransformation:
  """An optax optimizer with decoupled weight decay masked by `decay_mask`, optionally after global-norm clipping.

  Args:
    name: "adamw" (Loshchilov & Hutter), "lars" (You et al.; no adaptation or decay on biases and norms),
      "lamb", or "sgd" (with momentum).
    learning_rate: a schedule (see `lr_schedule`).
    weight_decay, b1, b2, eps, momentum: the optimizer's hyperparameters.
    grad_clip: clip the global gradient norm to this value first (None: no clipping).
  """
  mask = lambda p: decay_mask(p, no_decay_names)
  if name == "adamw":
    tx = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
  elif name == "lars":
    tx = optax.lars(learning_rate, weight_decay=weight_decay, weight_decay_mask=mask, trust_ratio_mask=mask,
                    momentum=momentum)
  elif name == "lamb":
    tx = optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
  elif name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(weight_decay, mask), optax.sgd(learning_rate, momentum=momentum))
  else:
    raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}.")
  if grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
  return tx

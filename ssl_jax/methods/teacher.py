"""Momentum (EMA) teachers and the momentum schedules of BYOL, MoCo v3, DINO (cosine) and I-JEPA (linear), pure
jax.numpy."""

import jax
import jax.numpy as jnp


def cosine_increase(step: jax.Array, total_steps: int, base: float, final: float = 1.0) -> jax.Array:
  """`final - (final - base) * (cos(pi * step / total_steps) + 1) / 2`: `base` at step 0, `final` at the end.

  BYOL's target decay (Grill et al. 2020, eq. 2: tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2), MoCo v3's
  momentum (0.99 -> 1) and DINO's teacher momentum (0.996 -> 1) and weight decay (0.04 -> 0.4). Clipped at
  `total_steps`.
  """
  t = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
  return final - (final - base) * (jnp.cos(jnp.pi * t) + 1.0) / 2.0


def linear_increase(step: jax.Array, total_steps: int, base: float, final: float = 1.0) -> jax.Array:
  """`base + (final - base) * step / total_steps`, clipped at `total_steps`: I-JEPA's EMA momentum (0.996 -> 1, the
  official `momentum_scheduler` generator, whose first value, used after the first update, is `base`)."""
  t = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
  return base + (final - base) * t


def epoch_warmup(step: jax.Array, steps_per_epoch: int, warmup_epochs: int, start: float, end: float) -> jax.Array:
  """DINO's teacher-temperature schedule: `np.linspace(start, end, warmup_epochs)` indexed by the epoch
  (`step // steps_per_epoch`; constant within an epoch, `end` reached in the last warm-up epoch), then `end`.

  Example (0.04 -> 0.07 over 30 epochs): epoch 0 -> 0.04, epoch 1 -> 0.04103, epoch 29 and later -> 0.07.
  """
  if warmup_epochs <= 0:
    return jnp.asarray(end, jnp.float32)
  epoch = jnp.asarray(step, jnp.int32) // max(steps_per_epoch, 1)
  t = jnp.clip(epoch.astype(jnp.float32) / max(warmup_epochs - 1, 1), 0.0, 1.0)
  return jnp.where(epoch < warmup_epochs, start + (end - start) * t, end).astype(jnp.float32)


def ema_update(teacher, student, momentum: jax.Array):
  """`momentum * teacher + (1 - momentum) * student`, leaf by leaf (the teacher keeps its dtypes and sharding)."""
  return jax.tree.map(lambda t, s: (momentum * t + (1.0 - momentum) * s).astype(t.dtype), teacher, student)

"""Momentum (EMA) teachers and the cosine schedules of BYOL, MoCo v3 and DINO (pure jax.numpy)."""

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


def linear_warmup(step: jax.Array, warmup_steps: int, start: float, end: float) -> jax.Array:
  """`start` -> `end` linearly over `warmup_steps`, then `end` (DINO's teacher temperature 0.04 -> 0.07)."""
  if warmup_steps <= 0:
    return jnp.asarray(end, jnp.float32)
  t = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
  return start + (end - start) * t


def ema_update(teacher, student, momentum: jax.Array):
  """`momentum * teacher + (1 - momentum) * student`, leaf by leaf (the teacher keeps its dtypes and sharding)."""
  return jax.tree.map(lambda t, s: (momentum * t + (1.0 - momentum) * s).astype(t.dtype), teacher, student)

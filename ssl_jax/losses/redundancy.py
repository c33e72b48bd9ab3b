"""Objectives defined on the whole batch's feature statistics: Barlow Twins and VICReg.

Both return a scalar: they are functions of batch means and (cross-)covariances, not sums of per-example terms.
Under `jit` with a sharded batch the statistics are those of the global batch, as the papers' all-reduced versions.
"""

import jax
import jax.numpy as jnp


def _off_diagonal_sq_sum(m: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(m)) - jnp.sum(jnp.square(jnp.diagonal(m)))


def barlow_twins_terms(z1: jax.Array, z2: jax.Array, eps: float = 1e-5) -> tuple[jax.Array, jax.Array]:
  """The two terms of Barlow Twins' objective (see `barlow_twins_loss`): `(sum_i (1 - C_ii)^2, sum_{i != j} C_ij^2)`
  for `[B, D]` embeddings `z1`, `z2`."""
  def standardize(z):
    z = z.astype(jnp.float32)
    mean = jnp.mean(z, axis=0)
    return (z - mean) * jax.lax.rsqrt(jnp.mean(jnp.square(z - mean), axis=0) + eps)

  c = standardize(z1).T @ standardize(z2) / z1.shape[0]
  return jnp.sum(jnp.square(jnp.diagonal(c) - 1.0)), _off_diagonal_sq_sum(c)


def barlow_twins_loss(z1: jax.Array, z2: jax.Array, lambda_offdiag: float = 0.0051, eps: float = 1e-5) -> jax.Array:
  """Barlow Twins' redundancy reduction (Zbontar et al. 2021).

  Each view's embeddings are standardised over the batch (BatchNorm without affine: biased variance, `eps`); the
  cross-correlation `C = z1n.T @ z2n / B` is pushed to the identity:
  `sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2`.

  Args:
    z1, z2: `[B, D]` projector outputs of the two views.
    lambda_offdiag: weight of the redundancy term (paper: 5e-3; official code: 0.0051).
    eps: BatchNorm epsilon.

  Returns:
    scalar loss (a whole-batch objective).

  Example:
    >>> z = jnp.array([[1.0, 1.0], [-1.0, -1.0]])    # two perfectly correlated dimensions
    >>> round(float(barlow_twins_loss(z, z, lambda_offdiag=1.0)), 3)   # C = [[1, 1], [1, 1]] up to eps
    2.0
  """
  on_diag, off_diag = barlow_twins_terms(z1, z2, eps)
  return on_diag + lambda_offdiag * off_diag


def vicreg_loss(z1: jax.Array, z2: jax.Array, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0, eps: float = 1e-4) -> jax.Array:
  """VICReg: variance-invariance-covariance regularisation (Bardes, Ponce, LeCun 2022).

  `sim_coeff * mse(z1, z2) + std_coeff * (hinge(z1) + hinge(z2)) / 2 + cov_coeff * (cov(z1) + cov(z2))`, with
  `hinge(z) = mean_d relu(1 - sqrt(var_d(z) + eps))` (unbiased variance) and `cov(z)` the sum of squared
  off-diagonal entries of z's covariance (denominator B - 1) divided by D, as in the official code.

  Args:
    z1, z2: `[B, D]` expander outputs of the two views.
    sim_coeff, std_coeff, cov_coeff: lambda, mu, nu of the paper (25, 25, 1).
    eps: added to the variance.

  Returns:
    scalar loss (a whole-batch objective).

  Example:
    >>> z = jnp.array([[1.0, -1.0], [-1.0, 1.0]])   # var 2 per dim, perfectly anti-correlated dims
    >>> round(float(vicreg_loss(z, z)), 3)           # only the covariance term: 2 * (2 * 2^2) / 2
    8.0
  """
  invariance, variance, covariance = vicreg_terms(z1, z2, eps)
  return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance


def vicreg_terms(z1: jax.Array, z2: jax.Array, eps: float = 1e-4) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The three terms of VICReg's objective (see `vicreg_loss`) for `[B, D]` embeddings: the invariance
  `mse(z1, z2)`, the variance `(hinge(z1) + hinge(z2)) / 2` and the covariance `cov(z1) + cov(z2)`."""
  z1, z2 = z1.astype(jnp.float32), z2.astype(jnp.float32)
  b, d = z1.shape
  invariance = jnp.mean(jnp.square(z1 - z2))

  def variance_and_covariance(z):
    z = z - jnp.mean(z, axis=0)
    std = jnp.sqrt(jnp.sum(jnp.square(z), axis=0) / (b - 1) + eps)
    cov = z.T @ z / (b - 1)
    return jnp.mean(jax.nn.relu(1.0 - std)), _off_diagonal_sq_sum(cov) / d

  v1, c1 = variance_and_covariance(z1)
  v2, c2 = variance_and_covariance(z2)
  return invariance, (v1 + v2) / 2, c1 + c2

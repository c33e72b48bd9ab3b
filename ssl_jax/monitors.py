"""Collapse and representation monitors for joint-embedding methods (pure jax.numpy, global batch).

A collapsing run shows as a per-dimension standard deviation of the l2-normalised embeddings falling towards 0
(complete collapse; Chen & He 2021 compare it with 1/sqrt(D) for a healthy, spread-out embedding) or as an effective
rank falling towards 1 (dimensional collapse; RankMe, Garrido et al. 2023).
"""

import jax
import jax.numpy as jnp


def _l2_normalize(z):
  z = z.astype(jnp.float32)
  return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def embedding_std(z: jax.Array) -> jax.Array:
  """Mean over dimensions of the per-dimension std of the l2-normalised embeddings `z` `[N, D]` (SimSiam's monitor).

  About `1/sqrt(D)` for embeddings spread over the sphere, 0 when every example maps to the same point.
  """
  return jnp.mean(jnp.std(_l2_normalize(z), axis=0))


def effective_rank(z: jax.Array, eps: float = 1e-7) -> jax.Array:
  """RankMe (Garrido et al. 2023): `exp(entropy(sigma / ||sigma||_1))` of the singular values of `z` `[N, D]`.

  Between 1 (all embeddings on a line) and `min(N, D)`. The singular values come from the eigenvalues of the smaller
  Gram matrix (`z^T z` or `z z^T`), a matmul plus a small symmetric eigendecomposition, because the trainer computes
  this every step (an SVD of the `[N, D]` global batch would be much slower on accelerators). float32: an estimate
  that reads high where the spectrum decays far (the Gram matrix's rounding becomes small singular values); the
  end-of-run report computes RankMe from float64 singular values (`ssl_jax.evaluators.report.effective_rank`).
  """
  z = z.astype(jnp.float32)
  gram = z.T @ z if z.shape[0] >= z.shape[1] else z @ z.T
  s = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(gram), 0.0))
  p = s / (jnp.sum(s) + eps) + eps
  return jnp.exp(-jnp.sum(p * jnp.log(p)))


def alignment(z1: jax.Array, z2: jax.Array, alpha: float = 2.0) -> jax.Array:
  """Alignment (Wang & Isola 2020): `E ||n(z1) - n(z2)||^alpha` over positive pairs (rows of `[N, D]` arrays of two
  views of the same examples), n = l2 normalisation. 0 when the views map to the same point; lower is better."""
  d = jnp.linalg.norm(_l2_normalize(z1) - _l2_normalize(z2), axis=-1)
  return jnp.mean(d ** alpha)


def uniformity(z: jax.Array, t: float = 2.0) -> jax.Array:
  """Uniformity (Wang & Isola 2020): `log E_{i<j} exp(-t ||n(z_i) - n(z_j)||^2)` of `[N, D]`, N >= 2.

  0 for a fully collapsed embedding; lower (more negative) is more uniform on the sphere.
  """
  z = _l2_normalize(z)
  n = z.shape[0]
  sq = jnp.maximum(2.0 - 2.0 * (z @ z.T), 0.0)       # squared distances of unit vectors
  upper = jnp.triu(jnp.ones((n, n), bool), k=1)
  m = jnp.max(jnp.where(upper, -t * sq, -jnp.inf))
  return m + jnp.log(jnp.sum(jnp.where(upper, jnp.exp(-t * sq - m), 0.0)) / (n * (n - 1) / 2))


def entropy(logits: jax.Array) -> jax.Array:
  """Mean entropy (nats) of `softmax(logits)` over the rows of `[N, K]` (DINO's teacher entropy)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.mean(-jnp.sum(jnp.exp(logp) * logp, axis=-1))


def kl_divergence(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
  """Mean `KL(softmax(p) || softmax(q))` over rows (DINO: teacher p vs student q)."""
  logp = jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1)
  logq = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
  return jnp.mean(jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1))


def collapse_metrics(z: jax.Array, prefix: str = "monitor/") -> dict[str, jax.Array]:
  """`{prefix}embedding_std`, `{prefix}embedding_std_ref` (= 1/sqrt(D)) and `{prefix}rankme` of `z` `[N, D]`."""
  z = jax.lax.stop_gradient(z)
  return {f"{prefix}embedding_std": embedding_std(z),
          f"{prefix}embedding_std_ref": jnp.asarray(1.0 / z.shape[-1] ** 0.5, jnp.float32),
          f"{prefix}rankme": effective_rank(z)}

"""Self-distillation objectives: BYOL/SimSiam, DINO (+ centring, Sinkhorn-Knopp), iBOT patch loss, KoLeo."""

import jax
import jax.numpy as jnp

from ssl_jax.losses.contrastive import l2_normalize


def byol_loss(p: jax.Array, z: jax.Array) -> jax.Array:
  """BYOL's regression loss (Grill et al. 2020): `2 - 2 cos(p, z)`, with no gradient into the target z.

  Also SimSiam's loss up to an affine map (Chen & He 2021 minimise `-cos(p, stopgrad(z))`).

  Args:
    p: `[B, D]` online predictions.
    z: `[B, D]` target projections (target network, or the other branch in SimSiam); gradients are stopped here.

  Returns:
    `[B]` per-example losses in [0, 4]; BYOL symmetrises by adding the loss with the views swapped.

  Example:
    >>> p = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    >>> z = jnp.array([[2.0, 0.0], [0.0, 3.0]])
    >>> byol_loss(p, z).tolist()
    [0.0, 2.0]
  """
  return 2.0 - 2.0 * jnp.sum(l2_normalize(p) * jax.lax.stop_gradient(l2_normalize(z)), axis=-1)


def dino_loss(student_logits: jax.Array, teacher_logits: jax.Array, center: jax.Array, student_temp: float = 0.1,
              teacher_temp: float = 0.04) -> jax.Array:
  """DINO's cross-view self-distillation (Caron et al. 2021, "Emerging Properties in Self-Supervised ViTs").

  The teacher's distribution of each global view is centred and sharpened, `q = softmax((t - center) / teacher_temp)`,
  and gets no gradient; every student view v predicts it, `-sum_k q_k log softmax(s_v / student_temp)_k`, for every
  pair (teacher view i, student view v) with v != i. Teacher view i is the same crop as student view i.

  Args:
    student_logits: `[V_s, B, K]` head outputs for all crops (global crops first, then local crops).
    teacher_logits: `[V_t, B, K]` teacher head outputs for the V_t global crops (V_t <= V_s).
    center: `[K]` running mean of teacher logits (see `update_center`).
    student_temp: 0.1 in DINO.
    teacher_temp: 0.04 -> 0.07 warm-up in DINO (the caller schedules it).

  Returns:
    `[B]` per-image losses, each the mean over its `V_t * V_s - V_t` pairs (DINO averages the pair losses, as here).

  Example:
    >>> s = jnp.zeros((2, 1, 4)); t = jnp.zeros((2, 1, 4))
    >>> [round(float(v), 4) for v in dino_loss(s, t, jnp.zeros(4))]   # uniform vs uniform: log(4)
    [1.3863]
  """
  q = jax.nn.softmax((teacher_logits.astype(jnp.float32) - center) / teacher_temp, axis=-1)
  return dino_cross_entropy(student_logits, q, student_temp)


def dino_cross_entropy(student_logits: jax.Array, teacher_probs: jax.Array, student_temp: float = 0.1) -> jax.Array:
  """DINO's multi-crop cross-entropy from given teacher distributions (centred-softmax or Sinkhorn-Knopp ones).

  Args:
    student_logits: `[V_s, B, K]` head outputs for all crops (global crops first).
    teacher_probs: `[V_t, B, K]` teacher distributions of the global crops (no gradient flows into them).
    student_temp: 0.1 in DINO.

  Returns:
    `[B]` per-image mean over the `V_t * V_s - V_t` pairs of different crops of `-sum_k q_k log p_k`.

  Example:
    >>> q = jnp.full((2, 1, 4), 0.25)
    >>> [round(float(v), 4) for v in dino_cross_entropy(jnp.zeros((3, 1, 4)), q)]
    [1.3863]
  """
  vt, vs = teacher_probs.shape[0], student_logits.shape[0]
  if vt > vs:
    raise ValueError(f"dino_loss: {vt} teacher views but only {vs} student views.")
  q = jax.lax.stop_gradient(teacher_probs.astype(jnp.float32))
  log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
  ce = -jnp.einsum("ibk,vbk->ivb", q, log_p)                             # [V_t, V_s, B]
  same = (jnp.arange(vt)[:, None] == jnp.arange(vs)[None, :])[..., None]
  return jnp.sum(jnp.where(same, 0.0, ce), axis=(0, 1)) / (vt * vs - vt)


def update_center(center: jax.Array, teacher_logits: jax.Array, momentum: float = 0.9) -> jax.Array:
  """DINO's centre: `center * m + (1 - m) * mean of teacher logits over views and the GLOBAL batch`.

  Args:
    center: `[K]`.
    teacher_logits: `[..., K]` (e.g. `[V_t, B, K]`).
    momentum: m (DINO: 0.9).

  Returns:
    `[K]` new centre (no gradient).

  Example:
    >>> [round(v, 4) for v in update_center(jnp.zeros(2), jnp.array([[[1.0, 3.0]]]), momentum=0.9).tolist()]
    [0.1, 0.3]
  """
  batch_center = jnp.mean(teacher_logits.astype(jnp.float32).reshape(-1, teacher_logits.shape[-1]), axis=0)
  return jax.lax.stop_gradient(center * momentum + batch_center * (1.0 - momentum))


def sinkhorn_knopp(teacher_logits: jax.Array, temperature: float, num_iters: int = 3,
                   valid: jax.Array | None = None) -> jax.Array:
  """Sinkhorn-Knopp centring of teacher outputs (SwAV, Caron et al. 2020; DINOv2, Oquab et al. 2023).

  Finds the doubly-normalised `Q = diag(u) exp(logits / temperature) diag(v)` whose prototypes are used equally
  (column sums 1/K) and whose rows are distributions over the global batch, by `num_iters` alternating
  normalisations. Computed in the log domain: the same values as DINOv2's `exp`-then-divide loop, without its
  overflow or 0/0 at small temperatures.

  Args:
    teacher_logits: `[N, K]` over the global batch (all teacher views flattened into N).
    temperature: the teacher temperature.
    num_iters: normalisation rounds (DINOv2: 3).
    valid: optional `[N]` bool: only these rows are samples (DINOv2's iBOT Sinkhorn-Knopp runs over the masked
      patches of the batch, a static-shape buffer here); the others get zeros and take no part.

  Returns:
    `[N, K]` soft assignments, valid rows summing to 1, no gradient.

  Example:
    >>> q = sinkhorn_knopp(jnp.array([[5.0, 0.0], [4.0, 0.0]]), temperature=1.0, num_iters=50)
    >>> [round(float(v), 2) for v in q.sum(0)]    # both prototypes used equally
    [1.0, 1.0]
  """
  log_q = (teacher_logits.astype(jnp.float32) / temperature).T                  # [K, N]
  k, n = log_q.shape
  if valid is None:
    valid = jnp.ones((n,), bool)
  log_q = jnp.where(valid[None, :], log_q, -jnp.inf)
  n = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
  log_q = log_q - jax.nn.logsumexp(log_q)
  for _ in range(num_iters):
    log_q = log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - jnp.log(k)  # each prototype has mass 1/K
    column = jax.nn.logsumexp(log_q, axis=0, keepdims=True)
    log_q = jnp.where(valid[None, :], log_q - column, -jnp.inf) - jnp.log(n)   # each sample has mass 1/N
  return jax.lax.stop_gradient(jnp.exp(log_q + jnp.log(n)).T)


def ibot_patch_loss(student_logits: jax.Array, teacher_logits: jax.Array, mask: jax.Array, center: jax.Array,
                    student_temp: float = 0.1, teacher_temp: float = 0.04) -> jax.Array:
  """iBOT's masked-patch self-distillation (Zhou et al. 2022, "iBOT: Image BERT Pre-Training with Online Tokenizer").

  For every patch masked in the student's input, the student's patch head predicts the teacher's centred and
  sharpened distribution for the same patch of the unmasked view: `-sum_k q_k log softmax(s / student_temp)_k`.

  Args:
    student_logits: `[B, T, K]` student patch-head outputs (masked input).
    teacher_logits: `[B, T, K]` teacher patch-head outputs (unmasked input).
    mask: `[B, T]`, 1 where the student's patch was masked.
    center: `[K]` patch centre (iBOT keeps a separate one; or use `sinkhorn_knopp` probabilities instead).
    student_temp, teacher_temp: iBOT: 0.1 and 0.04 -> 0.07.

  Returns:
    `[B]` per-image losses: the mean over that image's masked patches (0 if none), as in iBOT's code.

  Example:
    >>> s = jnp.zeros((1, 2, 4)); t = jnp.zeros((1, 2, 4))
    >>> [round(float(v), 4) for v in ibot_patch_loss(s, t, jnp.array([[1.0, 0.0]]), jnp.zeros(4))]
    [1.3863]
  """
  q = jax.lax.stop_gradient(jax.nn.softmax((teacher_logits.astype(jnp.float32) - center) / teacher_temp, axis=-1))
  log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
  ce = -jnp.sum(q * log_p, axis=-1)
  mask = mask.astype(jnp.float32)
  return jnp.sum(ce * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def koleo_loss(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """KoLeo regulariser (Sablayrolles et al. 2019; DINOv2, Oquab et al. 2023): spreads features uniformly.

  `l_i = -log(||x_i - x_nn(i)|| + eps)` on L2-normalised features, nn(i) the nearest other example.

  Args:
    x: `[B, D]` features (DINOv2: the [CLS] outputs of the student's first global crop).
    eps: inside the log and the distance.

  Returns:
    `[B]` per-example values; DINOv2 minimises their mean (weight 0.1).

  Deviation: DINOv2 computes KoLeo within each GPU's local batch; here the nearest neighbour is searched in the
  whole array given (under `jit`, the global batch). Pass per-device slices to reproduce the local version.

  Example:
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> [round(float(v), 4) for v in koleo_loss(x)]    # every nearest neighbour at distance sqrt(2)
    [-0.3466, -0.3466, -0.3466]
  """
  x = l2_normalize(x)
  dots = x @ x.T
  dots = jnp.where(jnp.eye(x.shape[0], dtype=bool), -2.0, dots)
  nn_idx = jax.lax.stop_gradient(jnp.argmax(dots, axis=1))
  dist = jnp.sqrt(jnp.sum(jnp.square(x - x[nn_idx]), axis=-1) + eps * eps)
  return -jnp.log(dist + eps)

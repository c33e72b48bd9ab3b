"""Contrastive objectives over [B, B] similarities: SimCLR NT-Xent, MoCo v3 InfoNCE, CLIP, SigLIP.

Each has a memory-bounded path (`chunk_size`) that computes the same values a block of rows at a time, so the full
`[B, B]` logits matrix never exists at once; under `jit` with the batch sharded over devices every block is itself
sharded, and the result equals the 1-device result. CLIP and SigLIP also have a ring form (`clip_loss_ring`,
`siglip_loss_ring`) for use inside `jax.shard_map`: each device keeps its own image embeddings and passes the text
embeddings around the devices, so that it holds one `[b, b]` block of the similarity matrix at a time (b the
per-device batch) and never the other devices' embeddings all at once.
"""

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """`x / max(||x||, eps)` along `axis`, in float32 (the `F.normalize` of the reference implementations).

  Example:
    >>> [round(v, 4) for v in l2_normalize(jnp.array([3.0, 4.0])).tolist()]
    [0.6, 0.8]
  """
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def _row_blocks(fn, rows: jax.Array, chunk_size: int | None, *args):
  """Applies `fn(row_block, row_offset, *args) -> [C]` to blocks of `rows`, concatenating the results."""
  n = rows.shape[0]
  if chunk_size is None or chunk_size >= n:
    return fn(rows, 0, *args)
  if n % chunk_size:
    raise ValueError(f"chunk_size {chunk_size} must divide the number of rows {n}.")
  blocks = rows.reshape(n // chunk_size, chunk_size, *rows.shape[1:])
  offsets = jnp.arange(n // chunk_size) * chunk_size
  return jax.lax.map(lambda a: fn(a[0], a[1], *args), (blocks, offsets)).reshape(n)


def _cross_entropy_rows(queries, offset, keys, scale, positive_shift, exclude_self):
  """CE of each query row against all keys, the positive being key `row + positive_shift (mod N)`."""
  logits = scale * (queries @ keys.T)                                      # [C, N]
  c, n = logits.shape
  rows = offset + jnp.arange(c)
  if exclude_self:
    logits = jnp.where(rows[:, None] == jnp.arange(n)[None, :], -jnp.inf, logits)
  positive = jnp.take_along_axis(logits, ((rows + positive_shift) % n)[:, None], axis=1)[:, 0]
  return jax.nn.logsumexp(logits, axis=1) - positive


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float = 0.1, chunk_size: int | None = None) -> jax.Array:
  """SimCLR's normalised-temperature cross-entropy (Chen et al. 2020, "A Simple Framework for Contrastive Learning").

  The 2B embeddings are L2-normalised; view i's positive is the other view of the same image, and the other 2B - 2
  embeddings of the (global) batch are its negatives:
  `l_i = -log( exp(cos(z_i, z_j(i)) / t) / sum_{k != i} exp(cos(z_i, z_k) / t) )`.

  Args:
    z1: `[B, D]` projections of the first views.
    z2: `[B, D]` projections of the second views (row i is the same image as row i of z1).
    temperature: t (SimCLR: 0.1 for its batch-4096 ImageNet runs; 0.5 in the paper's CIFAR setting).
    chunk_size: compute `chunk_size` rows of the `[2B, 2B]` logits at a time (must divide 2B); None: all at once.

  Returns:
    `[2B]` per-view losses: rows 0..B-1 for the views of z1, B..2B-1 for z2. SimCLR minimises their mean.

  Example:
    >>> z = jnp.eye(4)
    >>> float(nt_xent(z, z, temperature=1.0).mean()) < float(nt_xent(z, z[::-1], temperature=1.0).mean())
    True
  """
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
  return _row_blocks(_cross_entropy_rows, z, chunk_size, z, 1.0 / temperature, z1.shape[0], True)


def info_nce(q: jax.Array, k: jax.Array, temperature: float = 0.2, scale_by_2tau: bool = True,
             chunk_size: int | None = None) -> jax.Array:
  """MoCo v3's in-batch InfoNCE (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised ViTs").

  Queries and keys are L2-normalised; query i's positive is key i and every other key of the global batch is a
  negative: `l_i = -log softmax_j(q_i . k_j / t)[i]`. The official code multiplies the loss by `2 t`
  (`scale_by_2tau`), which makes the gradient magnitude independent of t; MoCo v3 applies it symmetrically,
  `info_nce(q1, k2) + info_nce(q2, k1)`, with k the momentum encoder's output under `stop_gradient`.

  Args:
    q: `[B, D]` queries (predictor outputs of the base encoder).
    k: `[B, D]` keys (momentum encoder; the caller stops its gradient, as the paper does).
    temperature: t (MoCo v3: 0.2 for ViT, 1.0 for ResNet).
    scale_by_2tau: multiply by `2 t` as the official implementation does.
    chunk_size: rows of the `[B, B]` logits computed at a time (must divide B); None: all at once.

  Returns:
    `[B]` per-query losses.

  Example:
    >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> [round(float(v), 4) for v in info_nce(q, q, temperature=1.0, scale_by_2tau=False)]
    [0.3133, 0.3133]
  """
  losses = _row_blocks(_cross_entropy_rows, l2_normalize(q), chunk_size, l2_normalize(k), 1.0 / temperature, 0,
                       False)
  return losses * (2.0 * temperature) if scale_by_2tau else losses


def clip_loss(image_emb: jax.Array, text_emb: jax.Array, logit_scale: float | jax.Array,
              chunk_size: int | None = None) -> jax.Array:
  """CLIP's symmetric InfoNCE (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language").

  Embeddings are L2-normalised; `logits = logit_scale * img @ txt.T`; pair i's loss is the mean of the image->text
  cross-entropy of row i and the text->image cross-entropy of column i.

  Args:
    image_emb: `[B, D]`.
    text_emb: `[B, D]` (row i describes image i).
    logit_scale: the multiplier, i.e. `exp(t)` of CLIP's learned log-temperature t (initialised to 1 / 0.07).
    chunk_size: rows (and columns) of the logits computed at a time (must divide B); None: all at once.

  Returns:
    `[B]` per-pair losses; their mean is CLIP's loss.

  Example:
    >>> e = jnp.eye(3)
    >>> bool(clip_loss(e, e, 100.0).max() < 1e-6)
    True
  """
  img, txt = l2_normalize(image_emb), l2_normalize(text_emb)
  i2t = _row_blocks(_cross_entropy_rows, img, chunk_size, txt, logit_scale, 0, False)
  t2i = _row_blocks(_cross_entropy_rows, txt, chunk_size, img, logit_scale, 0, False)
  return 0.5 * (i2t + t2i)


def _sigmoid_rows(img, offset, txt, scale, bias):
  logits = scale * (img @ txt.T) + bias                                       # [C, B]
  rows = offset + jnp.arange(img.shape[0])
  labels = jnp.where(rows[:, None] == jnp.arange(txt.shape[0])[None, :], 1.0, -1.0)
  return -jnp.sum(jax.nn.log_sigmoid(labels * logits), axis=1)


def siglip_loss(image_emb: jax.Array, text_emb: jax.Array, logit_scale: float | jax.Array,
                logit_bias: float | jax.Array, chunk_size: int | None = None) -> jax.Array:
  """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training").

  Every (image, text) pair of the batch is an independent binary classification: positive on the diagonal,
  negative elsewhere: `l_i = -sum_j log sigmoid(z_ij * (scale * <img_i, txt_j> + bias))`, z_ij = +1 if i == j
  else -1, on L2-normalised embeddings. The paper's loss is `mean_i l_i`.

  Args:
    image_emb: `[B, D]`.
    text_emb: `[B, D]`.
    logit_scale: `exp(t')` (paper init t' = log 10).
    logit_bias: b (paper init -10).
    chunk_size: image rows computed at a time (must divide B); the paper's multi-device "chunked" implementation
      passes text blocks around a ring, which this reproduces block by block.

  Returns:
    `[B]` per-image losses (sums over all B texts).

  Example:
    >>> e = jnp.eye(2)
    >>> [round(float(v), 4) for v in siglip_loss(e, e, 10.0, -5.0)]   # 2 * -log(sigmoid(5)) each
    [0.0134, 0.0134]
  """
  img, txt = l2_normalize(image_emb), l2_normalize(text_emb)
  return _row_blocks(_sigmoid_rows, img, chunk_size, txt, logit_scale, logit_bias)


def clip_loss_ring(image_emb: jax.Array, text_emb: jax.Array, logit_scale: float | jax.Array, *, axis_name,
                   axis_size: int) -> jax.Array:
  """`clip_loss` of the global batch computed around a ring of devices, inside `jax.shard_map` over `axis_name`.

  Each device holds `b` rows of the global batch (`B = axis_size * b`, in device order). Its image->text term needs
  the log-sum-exp of its images' logits against every text of the batch: the text blocks travel around the ring and
  each device adds its images' logits against the visiting block to a running log-sum-exp. The text->image term needs
  each text's log-sum-exp against every image: a visiting block's running column log-sum-exp travels with it and is
  home, complete, after `axis_size` passes. Memory per device: one `[b, b]` logits block (the backward pass recomputes
  it), not `[b, B]`.

  Args:
    image_emb: this device's `[b, D]` image embeddings.
    text_emb: this device's `[b, D]` text embeddings (row i describes image i).
    logit_scale: as `clip_loss`.
    axis_name: the mesh axis (or tuple of axes) the batch is split over.
    axis_size: the number of devices on it.

  Returns:
    This device's `[b]` per-pair losses: the rows of `clip_loss` of the global batch that it holds.
  """
  img, txt = l2_normalize(image_emb), l2_normalize(text_emb)
  positive = logit_scale * jnp.sum(img * txt, axis=-1)

  @jax.checkpoint
  def block_sums(block):
    logits = logit_scale * (img @ block.T)                   # [b, b]: this device's images x the visiting texts
    return jax.nn.logsumexp(logits, axis=1), jax.nn.logsumexp(logits, axis=0)

  row_lse, col_lse = block_sums(txt)
  if axis_size > 1:
    ring = [(i, (i + 1) % axis_size) for i in range(axis_size)]

    def body(state, _):
      row_lse, block, col_lse = state
      block, col_lse = jax.lax.ppermute((block, col_lse), axis_name, ring)
      row, col = block_sums(block)
      return (jnp.logaddexp(row_lse, row), block, jnp.logaddexp(col_lse, col)), None
    (row_lse, _, col_lse), _ = jax.lax.scan(body, (row_lse, txt, col_lse), None, length=axis_size - 1)
    col_lse = jax.lax.ppermute(col_lse, axis_name, ring)      # the last pass brings each block's sums home
  return 0.5 * ((row_lse - positive) + (col_lse - positive))


def siglip_loss_ring(image_emb: jax.Array, text_emb: jax.Array, logit_scale: float | jax.Array,
                     logit_bias: float | jax.Array, *, axis_name, axis_size: int) -> jax.Array:
  """`siglip_loss` of the global batch computed around a ring of devices, inside `jax.shard_map` over `axis_name`:
  the SigLIP paper's chunked implementation (Zhai et al. 2023, Sec. 3.3). Each device holds `b` rows of the global
  batch; the text blocks travel around the ring, and each device adds its images' sigmoid losses against the
  visiting block (positives on the diagonal of its own block only) to their running sums. Memory per device: one
  `[b, b]` block (recomputed in the backward pass).

  Args:
    image_emb, text_emb: this device's `[b, D]` embeddings (row i describes image i).
    logit_scale, logit_bias: as `siglip_loss`.
    axis_name: the mesh axis (or tuple of axes) the batch is split over.
    axis_size: the number of devices on it.

  Returns:
    This device's `[b]` per-image losses: the rows of `siglip_loss` of the global batch that it holds.
  """
  img, txt = l2_normalize(image_emb), l2_normalize(text_emb)
  b = img.shape[0]

  def block_loss(block, own):
    logits = logit_scale * (img @ block.T) + logit_bias
    labels = jnp.where(own & (jnp.arange(b)[:, None] == jnp.arange(b)[None, :]), 1.0, -1.0)
    return -jnp.sum(jax.nn.log_sigmoid(labels * logits), axis=1)

  total = jax.checkpoint(block_loss, static_argnums=1)(txt, True)
  if axis_size == 1:
    return total
  ring = [(i, (i + 1) % axis_size) for i in range(axis_size)]

  def body(state, _):
    total, block = state
    block = jax.lax.ppermute(block, axis_name, ring)
    return (total + jax.checkpoint(block_loss, static_argnums=1)(block, False), block), None
  (total, _), _ = jax.lax.scan(body, (total, txt), None, length=axis_size - 1)
  return total

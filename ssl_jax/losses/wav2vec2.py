"""wav2vec 2.0's objectives (Baevski et al. 2020): the contrastive task over quantised targets and the codebook
diversity penalty."""

import jax
import jax.numpy as jnp

from ssl_jax.losses.contrastive import l2_normalize
from ssl_jax.losses.reconstruction import masked_mean


def sample_negative_positions(rng: jax.Array, mask: jax.Array, num_negatives: int) -> tuple[jax.Array, jax.Array]:
  """For every time step, `num_negatives` other masked steps of the same utterance, uniformly with replacement.

  As fairseq's `sample_negatives`: indices are drawn among the M masked steps of the utterance excluding the step
  itself (uniform over the other M - 1).

  Args:
    rng: PRNG key.
    mask: `[B, T]`, 1 at masked steps.
    num_negatives: K.

  Returns:
    (`[B, T, K]` int32 time indices of the distractors, `[B, T, K]` bool validity: False where the utterance has
    fewer than 2 masked steps). Values at unmasked steps are meaningless.

  Example:
    >>> pos, ok = sample_negative_positions(jax.random.key(0), jnp.array([[1, 0, 1]]), 2)
    >>> pos[0, 0].tolist(), pos[0, 2].tolist()      # the only other masked step
    ([2, 2], [0, 0])
  """
  mask = mask.astype(jnp.int32)
  b, t = mask.shape
  masked_first = jnp.argsort(1 - mask, axis=1, stable=True).astype(jnp.int32)     # masked steps, in time order
  count = jnp.sum(mask, axis=1)                                                   # M
  rank = jnp.cumsum(mask, axis=1) - 1                                             # index of step t among them
  u = jax.random.uniform(rng, (b, t, num_negatives))
  draw = jnp.floor(u * jnp.maximum(count - 1, 1)[:, None, None]).astype(jnp.int32)   # in [0, M - 2]
  draw = draw + (draw >= rank[:, :, None])                                        # skip the step itself
  positions = jnp.take_along_axis(masked_first, draw.reshape(b, -1), axis=1).reshape(b, t, num_negatives)
  valid = jnp.broadcast_to((count >= 2)[:, None, None], positions.shape)
  return positions, valid


def wav2vec2_contrastive_logits(context: jax.Array, quantized: jax.Array, mask: jax.Array, rng: jax.Array,
                                num_negatives: int = 100, temperature: float = 0.1) -> jax.Array:
  """wav2vec 2.0's contrastive logits: at each step, the cosine similarity of the context vector with its true
  quantised latent and with K distractors, over the temperature (fairseq's `compute_preds`).

  The K distractors Q_t are the quantised latents of other masked steps of the same utterance
  (`sample_negative_positions`). A distractor identical to the target (the same codewords) gets -inf, as in fairseq;
  "identical" is tested here as a squared distance below 1e-6 of the squared norms (computed from the [T, T]
  similarity matrix, so that the `[B, T, K, D]` distractor tensor is never built).

  Args:
    context: `[B, T, D]` transformer outputs (projected to the quantiser's dimension).
    quantized: `[B, T, D]` quantised latents of the unmasked features (the targets).
    mask: `[B, T]`, 1 at the masked steps (where the distractors come from; where the loss is computed).
    rng: PRNG key for sampling distractors.
    num_negatives: K (paper: 100).
    temperature: k (paper: 0.1).

  Returns:
    float32 `[B, T, 1 + K]`, the target first. Values at unmasked steps are meaningless.
  """
  c, q = l2_normalize(context), l2_normalize(quantized)
  cos = jnp.einsum("btd,bsd->bts", c, q)                                            # [B, T, T]
  positions, valid = sample_negative_positions(rng, mask, num_negatives)
  neg = jnp.take_along_axis(cos, positions, axis=2)                                 # [B, T, K]
  pos = jnp.diagonal(cos, axis1=1, axis2=2)                                         # [B, T]
  qf = quantized.astype(jnp.float32)
  sq = jnp.sum(qf * qf, axis=-1)
  d2 = sq[:, :, None] + sq[:, None, :] - 2 * jnp.einsum("btd,bsd->bts", qf, qf)
  same = jnp.take_along_axis(d2 <= 1e-6 * (sq[:, :, None] + sq[:, None, :]), positions, axis=2)
  neg = jnp.where(valid & ~same, neg, -jnp.inf)
  return jnp.concatenate([pos[..., None], neg], axis=-1).astype(jnp.float32) / temperature


def wav2vec2_contrastive_loss(context: jax.Array, quantized: jax.Array, mask: jax.Array, rng: jax.Array,
                              num_negatives: int = 100, temperature: float = 0.1) -> jax.Array:
  """wav2vec 2.0's contrastive task: at each masked step, pick the true quantised latent among K distractors.

  `l_t = -log exp(cos(c_t, q_t) / k) / sum_{q~ in {q_t} + Q_t} exp(cos(c_t, q~) / k)` over the logits of
  `wav2vec2_contrastive_logits` (same arguments).

  Returns:
    `[B]` per-utterance means over masked steps. fairseq sums over all masked steps of the batch and divides by
    their number: `sum(values * mask.sum(-1)) / mask.sum()`.

  Example:
    >>> c = jnp.eye(4)[None]; q = jnp.eye(4)[None]; m = jnp.ones((1, 4))
    >>> loss = wav2vec2_contrastive_loss(c, q, m, jax.random.key(0), num_negatives=3, temperature=1.0)
    >>> [round(float(v), 4) for v in loss]     # cos 1 for the target, 0 for each of 3 distractors
    [0.7437]
  """
  logits = wav2vec2_contrastive_logits(context, quantized, mask, rng, num_negatives, temperature)
  ce = jax.nn.logsumexp(logits, axis=-1) - logits[..., 0]
  return masked_mean(ce, mask)


def contrastive_accuracy(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """The fraction of masked steps whose target has the largest logit (fairseq's `correct / count`: a step whose
  logits are all equal counts as wrong). `logits` `[B, T, 1 + K]` (`wav2vec2_contrastive_logits`), `mask` `[B, T]`."""
  hit = (jnp.argmax(logits, axis=-1) == 0) & ~(jnp.argmin(logits, axis=-1) == 0)
  m = mask.astype(jnp.float32)
  return jnp.sum(hit * m) / jnp.maximum(jnp.sum(m), 1.0)


def code_perplexity(codes: jax.Array, num_vars: int, mask: jax.Array | None = None) -> jax.Array:
  """How many codewords are in use: `sum_g exp(H(histogram of group g's chosen codewords))` over the (masked) steps
  (fairseq's `code_perplexity`; 1 per group when one codeword is always chosen, V per group when all are used
  equally). `codes` `[..., G]` int, `mask` optional `[...]`."""
  g = codes.shape[-1]
  onehot = jax.nn.one_hot(codes.reshape(-1, g), num_vars, dtype=jnp.float32)       # [N, G, V]
  weights = jnp.ones(onehot.shape[0]) if mask is None else mask.reshape(-1).astype(jnp.float32)
  hist = jnp.sum(onehot * weights[:, None, None], axis=0) / jnp.maximum(jnp.sum(weights), 1.0)
  return jnp.sum(jnp.exp(-jnp.sum(hist * jnp.log(hist + 1e-7), axis=-1)))


def diversity_loss(codevector_logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """wav2vec 2.0's codebook diversity penalty: `(G V - sum_g exp(H(mean p_g))) / (G V)`.

  The softmax over each group's V codewords is averaged over the (masked) steps of the batch; the loss is 0 when
  every codeword is used equally, and approaches 1 - 1/V when one codeword per group is always used.

  Args:
    codevector_logits: `[..., G, V]` the quantiser's logits for each step (G groups of V codewords).
    mask: optional `[...]`, 1 at the steps to average over (wav2vec 2.0 quantises only the masked steps).

  Returns:
    scalar (a whole-batch objective).

  Example:
    >>> round(float(diversity_loss(jnp.zeros((5, 2, 4)))), 4)    # uniform use of all 8 codewords
    0.0
  """
  g, v = codevector_logits.shape[-2:]
  probs = jax.nn.softmax(codevector_logits.astype(jnp.float32).reshape(-1, g, v), axis=-1)
  weights = jnp.ones(probs.shape[0]) if mask is None else mask.reshape(-1).astype(jnp.float32)
  avg = jnp.sum(probs * weights[:, None, None], axis=0) / jnp.maximum(jnp.sum(weights), 1.0)
  perplexity = jnp.sum(jnp.exp(-jnp.sum(avg * jnp.log(avg + 1e-7), axis=-1)))
  return (g * v - perplexity) / (g * v)

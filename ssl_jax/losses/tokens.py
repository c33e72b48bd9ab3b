"""Cross-entropy over token vocabularies: masked prediction (BERT, BEiT) and next-token prediction (GPT)."""

import jax
import jax.numpy as jnp

from ssl_jax.losses.reconstruction import masked_mean


def token_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """`-log softmax(logits)[label]` per position, in float32: `[..., V]` logits, `[...]` int labels -> `[...]`."""
  logits = logits.astype(jnp.float32)
  picked = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - picked


def masked_token_loss(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Cross-entropy at the masked positions: BERT's masked-LM (Devlin et al. 2019), BEiT's masked image modelling
  over visual-token ids (Bao et al. 2022).

  Args:
    logits: `[B, T, V]` predictions at every position.
    labels: `[B, T]` int true token ids (any value where mask is 0).
    mask: `[B, T]`, 1 at the positions whose loss counts (the masked ones).

  Returns:
    `[B]` per-example means over masked positions (0 where none). BERT and BEiT average over all masked tokens of
    the batch instead: `sum(values * mask.sum(-1)) / mask.sum()`.

  Example:
    >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))
    >>> [round(float(v), 4) for v in masked_token_loss(logits, jnp.array([[0, 1]]), jnp.array([[0, 1]]))]
    [2.3026]
  """
  safe = jnp.where(mask > 0, labels, 0)
  return masked_mean(token_cross_entropy(logits, safe), mask)


def causal_lm_loss(logits: jax.Array, tokens: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Next-token cross-entropy (GPT, Radford et al. 2018): position t predicts token t + 1.

  Args:
    logits: `[B, T, V]` outputs at every position of `tokens`.
    tokens: `[B, T]` int input ids.
    mask: optional `[B, T]`, 1 for real tokens, 0 for padding; the loss of predicting token t + 1 counts when
      token t + 1 is real.

  Returns:
    `[B]` per-example means over the T - 1 (real) predictions. Language-model training usually averages over all
    predicted tokens of the batch: `sum(values * count) / sum(count)` with `count = mask[:, 1:].sum(-1)`.

  Example:
    >>> logits = jnp.zeros((1, 3, 4))     # uniform over 4 tokens: log(4) per prediction
    >>> [round(float(v), 4) for v in causal_lm_loss(logits, jnp.array([[1, 2, 3]]))]
    [1.3863]
  """
  ce = token_cross_entropy(logits[:, :-1], tokens[:, 1:])
  valid = jnp.ones_like(ce) if mask is None else mask[:, 1:]
  return masked_mean(ce, valid)

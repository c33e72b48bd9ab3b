"""The language-model evaluator: a method's own token prediction scored on held-out text.

On the held-out windows of the pretraining corpus (`context.batches("pretext")`, `config.eval.pretext_split`), the
method's `token_predictions` (GPT: every next token; BERT: the tokens masked by a fixed key per batch, so that every
model is asked the same questions) give, over all predicted tokens:

  eval/<name>_loss         mean cross-entropy in nats per token
  eval/<name>_perplexity   exp(loss)
  eval/<name>_accuracy     the fraction of predicted tokens that are the most probable one

The baseline in the raw-input column is the unigram model of the same tokenizer (`unigram_predictions`): every
position predicted by the training stream's token frequencies (add-one smoothed), its accuracy that of always
guessing the most frequent token. A model at random initialisation scores about ln(vocabulary).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np


def unigram_log_probs(counts: np.ndarray, *, excluded: tuple[int, ...] = ()) -> np.ndarray:
  """Log-probabilities `[V]` of the unigram model of token `counts` `[V]`, add-one smoothed, with the `excluded`
  ids (never predicted) given probability 0."""
  counts = np.asarray(counts, np.float64) + 1.0
  counts[list(excluded)] = 0.0
  with np.errstate(divide="ignore"):
    return np.log(counts / counts.sum()).astype(np.float32)


def unigram_predictions(predictions: dict[str, jax.Array], log_probs: jax.Array) -> dict[str, jax.Array]:
  """`predictions` (a method's `token_predictions`) with the model replaced by the unigram model `log_probs` `[V]`:
  the same targets and weights, each scored by its frequency, the most frequent token always guessed."""
  target = predictions["target"]
  return dict(predictions, log_prob=jnp.take(log_probs, target), hit=target == jnp.argmax(log_probs))


def language_model_scores(batches, predict) -> dict[str, float]:
  """Loss (nats per token), perplexity and accuracy of `predict(batch, key)` (a method's `token_predictions`) over
  every predicted token of `batches` (global evaluation batches with `valid`); batch i is scored with key
  `jax.random.key(i)`."""
  nll = hits = count = 0.0
  for i, batch in enumerate(batches):
    p = predict(batch, jax.random.key(i))
    weight = p["weight"] * batch["valid"][:, None].astype(jnp.float32)
    nll += -jnp.sum(jnp.where(weight > 0, p["log_prob"], 0.0) * weight)    # unscored positions may be -inf
    hits += jnp.sum(p["hit"] * weight)
    count += jnp.sum(weight)
  count = float(count)
  if count == 0:
    raise ValueError("the held-out split has no token to predict (config.eval.pretext_split is empty or shorter "
                     "than a window).")
  loss = float(nll) / count
  return {"loss": loss, "perplexity": float(np.exp(loss)), "accuracy": float(hits) / count}


def run(context, *, name: str, max_batches: int | None = None) -> dict[str, float]:
  """`eval/<name>_{loss,perplexity,accuracy}` of `context.token_predictions` on `context.batches("pretext")` (its
  first `max_batches` batches, or all)."""
  if context.token_predictions is None:    # `train.build` refuses such a config before anything is compiled
    raise ValueError(f"config.eval.evaluators.{name}: a 'language_model' evaluator scores a method's token "
                     "predictions; this method makes none (it is for gpt and bert).")
  scores = language_model_scores(itertools.islice(context.batches("pretext"), max_batches),
                                 context.token_predictions)
  return {f"eval/{name}_{k}": v for k, v in scores.items()}

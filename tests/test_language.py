"""The language models' own predictions (GPT's next tokens, BERT's masked tokens) and the `language_model` evaluator:
what is scored, the loss it equals, the unigram baseline computed by hand, and the trainer's validation loss."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import masking
from ssl_jax.evaluators import language
from test_contract import _batches
from test_contract import _build


def _setup(name: str):
  config, method, run = _build(name)
  method = dataclasses.replace(method, model=method.model.clone(dropout=0.0))    # the loss then equals the scores
  batch, _ = _batches(config, run)
  params, _ = jax.jit(lambda b: method.init(jax.random.key(0), b))(batch)
  return method, jax.device_get(params), batch


def _log_softmax_at(logits, targets):
  logits = np.asarray(logits, np.float64)
  top = logits.max(-1, keepdims=True)
  log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
  return np.take_along_axis(logits, targets[..., None], -1)[..., 0] - log_z


def test_gpt_scores_each_next_token_of_the_same_document_and_its_loss_is_their_mean():
  method, params, batch = _setup("gpt")
  scores = jax.jit(method.token_predictions)(params, {}, batch, jax.random.key(0))
  seg, tokens = batch["text_segment_ids"], batch["text"]
  np.testing.assert_array_equal(scores["target"], tokens[:, 1:])
  np.testing.assert_array_equal(scores["weight"], (seg[:, 1:] == seg[:, :-1]).astype(np.float32))
  assert 0 < scores["weight"].mean() < 1                          # the windows do hold document boundaries
  logits = method.logits(params, method.hidden(params, batch))[:, :-1]
  np.testing.assert_allclose(scores["log_prob"], _log_softmax_at(logits, tokens[:, 1:]), atol=1e-5)
  np.testing.assert_array_equal(scores["hit"], np.argmax(logits, -1) == tokens[:, 1:])
  loss, (m, _) = jax.jit(method.loss)(params, {}, batch, jax.random.key(5), jnp.int32(0))
  w = np.asarray(scores["weight"])
  np.testing.assert_allclose(float(loss), -np.sum(scores["log_prob"] * w) / w.sum(), rtol=1e-6)
  np.testing.assert_allclose(float(m["next_token_accuracy"]), np.sum(scores["hit"] * w) / w.sum(), rtol=1e-6)


def test_bert_scores_exactly_the_tokens_its_key_masks():
  method, params, batch = _setup("bert")
  key = jax.random.key(7)
  scores = jax.jit(method.token_predictions)(params, {}, batch, key)
  special = np.isin(batch["text"], method.special_token_ids) | (batch["text_segment_ids"] == 0)
  corrupted, chosen = masking.mlm_masking(key, jnp.asarray(batch["text"]), vocab_size=method.model.vocab_size,
                                          mask_token_id=method.mask_token_id, special_mask=jnp.asarray(special))
  np.testing.assert_array_equal(scores["weight"], chosen)
  np.testing.assert_array_equal(scores["target"], batch["text"])
  assert not np.any(np.asarray(chosen)[special])
  logits = method.logits(params, method.hidden(params, dict(batch, text=corrupted)))
  w = np.asarray(chosen) > 0
  np.testing.assert_allclose(np.asarray(scores["log_prob"])[w], _log_softmax_at(logits, batch["text"])[w], atol=1e-5)
  other = jax.jit(method.token_predictions)(params, {}, batch, jax.random.key(8))
  assert not np.array_equal(other["weight"], scores["weight"])            # another key, other masks
  # The loss draws its masks from the first half of its key, and is their mean cross-entropy.
  loss, _ = jax.jit(method.loss)(params, {}, batch, key, jnp.int32(0))
  mine = jax.jit(method.token_predictions)(params, {}, batch, jax.random.split(key)[0])
  mw = np.asarray(mine["weight"])
  np.testing.assert_allclose(float(loss), -np.sum(mine["log_prob"] * mw) / mw.sum(), rtol=1e-6)


def test_language_model_scores_pool_every_predicted_token_of_the_valid_examples():
  """Two batches, the second half padding; by hand: loss = mean of -log p over weighted tokens of valid rows."""
  log_p = np.log(np.array([[[0.5, 0.25], [0.1, 0.9]], [[0.2, 0.2], [0.3, 0.3]]], np.float32))   # [batch, B, L]
  weight = np.array([[[1, 1], [1, 0]], [[1, 0], [1, 1]]], np.float32)
  hit = np.array([[[1, 0], [0, 1]], [[1, 1], [0, 0]]], bool)
  valid = np.array([[1, 1], [1, 0]], np.int32)
  keys = []

  def predict(batch, key):
    keys.append(int(jax.random.key_data(key)[-1]))
    i = batch["i"]
    return {"target": np.zeros((2, 2), np.int32), "weight": weight[i], "log_prob": log_p[i], "hit": hit[i]}

  out = language.language_model_scores([{"i": 0, "valid": valid[0]}, {"i": 1, "valid": valid[1]}], predict)
  used = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)]                   # weighted, in a valid row
  expected = -np.mean([log_p[u] for u in used])
  assert out["loss"] == pytest.approx(expected, rel=1e-6)
  assert out["perplexity"] == pytest.approx(np.exp(expected), rel=1e-6)
  assert out["accuracy"] == pytest.approx(np.mean([hit[u] for u in used]))
  assert keys == [0, 1]                                                  # batch i is asked with key(i)
  with pytest.raises(ValueError, match="no token to predict"):
    language.language_model_scores([{"i": 0, "valid": np.zeros(2, np.int32)}], predict)


def test_unigram_baseline_is_the_add_one_frequency_and_guesses_the_most_frequent_allowed_token():
  counts = np.array([9, 3, 0, 5])                                        # id 0 is a special token: excluded
  log_probs = language.unigram_log_probs(counts, excluded=(0,))
  np.testing.assert_allclose(np.exp(log_probs), [0, 4 / 11, 1 / 11, 6 / 11], rtol=1e-6)
  p = {"target": jnp.array([[1, 3, 2]]), "weight": jnp.ones((1, 3)), "log_prob": jnp.zeros((1, 3)),
       "hit": jnp.zeros((1, 3), bool)}
  out = language.unigram_predictions(p, jnp.asarray(log_probs))
  np.testing.assert_allclose(out["log_prob"], np.log([[4 / 11, 6 / 11, 1 / 11]]), rtol=1e-6)
  np.testing.assert_array_equal(out["hit"], [[False, True, False]])
  np.testing.assert_array_equal(out["weight"], p["weight"])


def test_trainer_reports_validation_loss_with_the_unigram_baseline_of_the_training_stream(tmp_path):
  """A 2-step GPT run: its `validation` evaluator on held-out docstrings, the random-init column near ln(V), and the
  raw-input column equal to the unigram model of the training stream recomputed here from the windows."""
  from ssl_jax import train
  from ssl_jax.data import inputs
  from ssl_jax.methods import gpt
  from test_fault_matrix import shrunk
  c = shrunk("gpt")
  c.update(dict(total_steps=2, ckpt_every=2))
  c.debug.nonfinite_at_steps = ()
  c.eval.update(dict(init_baseline=True, raw_baseline=True))
  c.eval.evaluators = dict(validation=dict(type="language_model", max_batches=2))
  results = train.run(c, str(tmp_path / "run"))
  vocab = inputs.open_source(c.data, "train").vocab_size
  assert results["eval/validation_loss"] < results["eval/validation_loss_init"]
  assert abs(results["eval/validation_loss_init"] - np.log(vocab)) < 0.1
  windows = inputs.open_source(c.data, "validation")
  batch = {k: np.stack([windows[i][k] for i in range(2 * c.eval.batch_size)]) for k in ("text", "text_segment_ids")}
  targets, weight = (np.asarray(x) for x in gpt.next_tokens(batch))
  counts = np.bincount(inputs.open_source(c.data, "train").tokens, minlength=vocab) + 1.0
  log_p = np.log(counts / counts.sum())
  expected = -np.sum(log_p[targets] * weight) / weight.sum()
  assert results["eval/validation_loss_raw"] == pytest.approx(expected, rel=1e-5)
  assert results["eval/validation_accuracy_raw"] == pytest.approx(
      np.sum((targets == np.argmax(counts)) * weight) / weight.sum(), rel=1e-6)
  with pytest.raises(ValueError, match="language_model.*'simclr' makes none"):
    c2 = shrunk("simclr")
    c2.eval.pretext_split = "validation"
    c2.eval.evaluators = dict(validation=dict(type="language_model"))
    train.run(c2, str(tmp_path / "refused"))
  assert not (tmp_path / "refused").exists()

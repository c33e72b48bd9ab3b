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
  """The masked tokens of `mlm_masking` with the given key, each once, gathered (the output layer runs at ceil(0.15 T)
  + 1 positions per window, not T), scored as the full pass over every position scores them."""
  method, params, batch = _setup("bert")
  key = jax.random.key(7)
  scores = jax.tree.map(np.asarray, jax.jit(method.token_predictions)(params, {}, batch, key))
  tokens = batch["text"]
  special = np.isin(tokens, method.special_token_ids) | (batch["text_segment_ids"] == 0)
  corrupted, chosen = masking.mlm_masking(key, jnp.asarray(tokens), vocab_size=method.model.vocab_size,
                                          mask_token_id=method.mask_token_id, special_mask=jnp.asarray(special))
  chosen = np.asarray(chosen) > 0
  t = tokens.shape[1]
  assert scores["target"].shape == (tokens.shape[0], int(np.ceil(0.15 * t)) + 1) and not np.any(chosen & special)
  assert np.array_equal(scores["weight"].sum(1), chosen.sum(1))                 # every chosen token, once
  logits = method.logits(params, method.hidden(params, dict(batch, text=corrupted)))
  full = _log_softmax_at(logits, tokens)
  for row in range(tokens.shape[0]):
    picked = scores["weight"][row] > 0
    np.testing.assert_array_equal(scores["target"][row][picked], tokens[row][chosen[row]])
    np.testing.assert_allclose(scores["log_prob"][row][picked], full[row][chosen[row]], atol=1e-5)
  other = jax.jit(method.token_predictions)(params, {}, batch, jax.random.key(8))
  assert not np.array_equal(np.asarray(other["target"]), scores["target"])        # another key, other masks
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
  log_p[0, 1, 1] = log_p[1, 1, 1] = -np.inf          # a token the unigram model never predicts, where nothing is scored
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


def _train(name: str, workdir, **eval_options):
  """A 2-step run of `name`'s shrunk tiny config in `workdir` with the `validation` evaluator (2 batches), on one
  device as the fault matrix runs it."""
  from ssl_jax import train
  from test_fault_matrix import devices
  from test_fault_matrix import shrunk
  c = shrunk(name)
  c.update(dict(total_steps=2, ckpt_every=2))
  c.debug.nonfinite_at_steps = ()
  c.eval.update(eval_options)
  c.eval.evaluators = dict(validation=dict(type="language_model", max_batches=2))
  return c, train.run(c, str(workdir), devices=devices())


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("gpt") / "run"
  config, results = _train("gpt", workdir, init_baseline=True, raw_baseline=True)
  return config, results, workdir


def test_trainer_reports_validation_loss_with_the_unigram_baseline_of_the_training_stream(gpt_run, tmp_path):
  """A 2-step GPT run: its `validation` evaluator on held-out docstrings, the random-init column near ln(V), and the
  raw-input column equal to the unigram model of the training stream recomputed here from the windows."""
  from ssl_jax import train
  from ssl_jax.data import inputs
  from ssl_jax.methods import gpt
  from test_fault_matrix import shrunk
  c, results, workdir = gpt_run
  samples = (workdir / "report" / "samples.txt").read_text()          # the report's continuations of the prompts
  assert c.eval.sample_prompts and all(f"--- {p!r}\n{p}" in samples for p in c.eval.sample_prompts)
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
  c3 = shrunk("bert")
  c3.eval.sample_prompts = ("Return the",)
  with pytest.raises(ValueError, match="sample_prompts: 'bert' has no causal language model"):
    train.run(c3, str(tmp_path / "refused_too"))
  assert not (tmp_path / "refused_too").exists()


def test_a_workdir_trained_with_another_tokenizer_is_refused_naming_both(gpt_run):
  from ssl_jax import checkpoint
  from ssl_jax import train
  from ssl_jax.data import inputs
  from ssl_jax.data import text
  from test_fault_matrix import devices
  c, _, workdir = gpt_run
  saved = (workdir / "tokenizer.json").read_text()                # the run wrote the tokenizer it trained with
  assert text.tokenizer_digest(text.load_tokenizer(str(workdir / "tokenizer.json"))) == text.tokenizer_digest(
      inputs.tokenizer(c.data))
  before = sorted(p.name for p in workdir.rglob("*"))
  other = c.copy_and_resolve_references()
  other.data.text.tokenizer = "bpe:2048"                        # the same config but for the tokenizer
  with pytest.raises(checkpoint.ConfigMismatch, match=r"data.text.tokenizer_sha256.*tokenizer\.json \(sha256 "
                     r"[0-9a-f]{16}\.\.\.\), this run's data with config.data.text.tokenizer='bpe:2048'"):
    train.run(other, str(workdir), devices=devices())
  assert sorted(p.name for p in workdir.rglob("*")) == before and (workdir / "tokenizer.json").read_text() == saved


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_hugging_face_export_with_its_tokenizer_gives_our_logits_on_real_text(name, gpt_run, tmp_path):
  """`export --format=hf` of a text run: transformers loads the model and the tokenizer from the directory alone, and
  its logits on a real docstring equal ours within 1e-4."""
  torch = pytest.importorskip("torch", reason="the optional `export` extra: pip install -e '.[export]'")
  transformers = pytest.importorskip("transformers", reason="the optional `export` extra")
  from ssl_jax import export
  from ssl_jax import pretrained
  from ssl_jax.models import backbone
  from ssl_jax.models import text as text_model
  workdir = gpt_run[2] if name == "gpt" else tmp_path / "bert"
  if name == "bert":
    _train("bert", workdir)
  assert export.main([f"--workdir={workdir}", "--format=hf", f"--out={tmp_path / 'hf'}"]) == 0
  sentence = "Return the number of items in a container, counting each distinct element once."
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  ids = tokenizer(sentence, return_tensors="pt", return_token_type_ids=False)["input_ids"]
  net = {"gpt": transformers.GPT2LMHeadModel, "bert": transformers.BertForMaskedLM}[name].from_pretrained(
      str(tmp_path / "hf")).eval()
  with torch.no_grad():
    theirs = net(input_ids=ids).logits.numpy()
  source = pretrained.open_workdir(str(workdir))
  model = backbone.create(**source.spec)
  tokens = jnp.asarray(ids.numpy(), jnp.int32)
  ours = model.apply(source.variables(), model.apply(source.variables(), tokens)["tokens"],
                     method=text_model.TextTransformer.logits)
  assert ids.shape[1] > 10 and tokenizer.decode(ids[0]).strip().lower() == sentence.lower()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)
  assert export.main([f"--workdir={workdir}", "--format=timm", f"--out={tmp_path / 'x'}"]) == 2


def test_cached_decoding_equals_the_full_forward_pass_whatever_follows_the_prompt():
  """Greedy generation with the key/value cache picks, at every step, the argmax of the full (uncached) forward pass
  over the sequence so far; padding after the prompt, whatever it holds, changes nothing; the cached logits of
  every position equal the full pass's within float32 rounding (1e-5 of their scale)."""
  import flax.linen as nn
  from ssl_jax import sample
  from ssl_jax.models import text as text_model
  _, model = _text_gpt()
  # Every model call jitted: one compile each, not one per primitive.
  params = nn.unbox(jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 8), jnp.int32)))["params"]
  params = jax.tree.map(lambda x: x + jax.random.normal(jax.random.key(2), x.shape), params)   # far from uniform
  prompt = np.zeros((3, 12), np.int32)
  prompt[:, :5] = [[5, 6, 7, 8, 9], [1, 2, 3, 4, 5], [9, 9, 9, 9, 9]]
  new = np.asarray(sample.generate(model, params, prompt, np.int32(5), jax.random.key(0), steps=20))
  noisy = prompt.copy()
  noisy[:, 5:] = np.random.default_rng(0).integers(0, 97, (3, 7))
  np.testing.assert_array_equal(sample.generate(model, params, noisy, np.int32(5), jax.random.key(0), steps=20), new)
  seq = jnp.asarray(np.concatenate([prompt[:, :5], new], 1))
  logits = jax.jit(lambda ids: model.apply({"params": params}, model.apply({"params": params}, ids)["tokens"],
                                           method=text_model.TextTransformer.logits))
  full = np.asarray(logits(seq))
  np.testing.assert_array_equal(np.argmax(full[:, 4:-1], -1), new)
  # Teacher-forced through the cache: a 5-token prefill, then one token at a time, on a random sequence; each
  # position's logits equal the full pass's.
  decoder = model.clone(decode=True)
  seq = jax.random.randint(jax.random.key(3), (3, 16), 0, 97)
  full = np.asarray(logits(seq))
  cache = jax.jit(decoder.init)(jax.random.key(0), jnp.zeros((3, 16), jnp.int32))["cache"]
  apply = jax.jit(lambda cache, ids, positions: decoder.apply({"params": params, "cache": cache}, ids,
                                                              positions=positions, mutable=["cache"]))
  out, state = apply(cache, seq[:, :5], jnp.tile(jnp.arange(5), (3, 1)))
  steps = [out["tokens"]]
  for t in range(5, 16):
    out, state = apply(state["cache"], seq[:, t:t + 1], jnp.full((3, 1), t))
    steps.append(out["tokens"])
  cached = jax.jit(lambda tokens: decoder.apply({"params": params}, tokens, method=text_model.TextTransformer.logits))(
      jnp.concatenate(steps, 1))
  np.testing.assert_allclose(np.asarray(cached), full, rtol=1e-5, atol=1e-5 * np.abs(full).max())   # float32 sums


def _text_gpt():
  from ssl_jax.models import text as text_model
  spec = dict(vocab_size=97, max_length=40, width=32, depth=2, num_heads=4, mlp_dim=64, style="gpt2")
  return spec, text_model.TextTransformer(**spec)


def test_top_k_and_nucleus_filters_and_sampling_by_hand():
  from ssl_jax import sample
  logits = jnp.log(jnp.array([[0.05, 0.5, 0.15, 0.3]]))
  kept = lambda **kw: np.isfinite(np.asarray(sample.filter_logits(logits, **kw)))[0].tolist()
  assert kept(top_k=2) == [False, True, False, True]
  assert kept(top_p=0.7) == [False, True, False, True]                    # 0.5, then 0.3 (0.5 before it < 0.7)
  assert kept(top_p=0.5) == [False, True, False, False]                   # 0.3 has 0.5 before it: out
  assert kept(top_p=0.81) == [False, True, True, True] and kept() == [True] * 4
  assert kept(top_k=3, top_p=0.5) == [False, True, False, False]
  draw = jax.jit(jax.vmap(lambda k: sample.sample_token(k, logits, temperature=1.0, top_p=0.7)[0]))
  counts = np.bincount(np.asarray(draw(jax.random.split(jax.random.key(0), 4000))), minlength=4) / 4000
  np.testing.assert_allclose(counts, [0, 0.5 / 0.8, 0, 0.3 / 0.8], atol=0.03)   # renormalised over the nucleus
  assert int(sample.sample_token(jax.random.key(0), logits, temperature=0.0, top_k=2)[0]) == 1    # greedy


def test_sample_command_continues_prompts_from_a_gpt_workdir(gpt_run, capsys):
  from ssl_jax import sample
  _, _, workdir = gpt_run
  args = [f"--workdir={workdir}", "--prompt=Return the", "--prompt=Open a file", "--max_new_tokens=8"]
  assert sample.main(args + ["--temperature=0.9", "--top_k=20", "--num_samples=2", "--seed=3"]) == 0
  out = capsys.readouterr().out
  assert out.count("--- 'Return the'\nReturn the") == 2 and out.count("--- 'Open a file'\nOpen a file") == 2
  assert "32 tokens in " in out and "tokens/s" in out
  greedy = sample.Sampler.from_workdir(str(workdir)).complete(["Return the"], max_new_tokens=8, num_samples=2)[0]
  assert greedy[0][0] == greedy[0][1]                             # temperature 0: the same continuation
  assert sample.main([f"--workdir={workdir}", "--prompt="]) == 2
  assert "has no tokens" in capsys.readouterr().err
  assert sample.main([f"--workdir={workdir}", "--prompt=x", "--max_new_tokens=64"]) == 2

"""Text data (`ssl_jax.data.text`, `ssl_jax.data.prepare_text`): the embedded corpus, tokenizers, token streams, packed
windows with segment ids and positions, the Grain stream over them, and the preparation command's clear errors."""

import functools
import json

import numpy as np
import pytest

from ssl_jax.data import pipeline
from ssl_jax.data import prepare_text
from ssl_jax.data import text


def _docstrings():
  return text._corpus("stdlib_docstrings")         # read once per process, shared with the trainer's tests


@functools.cache
def _bpe():
  return text.train_tokenizer((d.text for d in _docstrings()), kind="bpe", vocab_size=2048)


def test_embedded_corpus_is_about_two_megabytes_of_labelled_library_prose():
  docs = _docstrings()
  size = text.digest(docs)
  assert 1.5e6 < size["bytes"] < 2.6e6 and size["documents"] > 4000
  assert size == text.digest(text.stdlib_docstrings())                   # deterministic: the same hash again
  assert not any(".test." in d.source or d.source.startswith(("test.", "idlelib", "tkinter")) for d in docs)
  labelled = [d for d in docs if d.label is not None]
  assert len(labelled) > 0.9 * len(docs) and all(d.source.split(".")[0] == d.label for d in labelled)
  assert any(d.source.startswith("pydoc_data.topics:") for d in docs)
  code = text.package_code()
  assert any(d.source == "ssl_jax/data/text.py" and "class TokenWindows" in d.text for d in code)


def test_definitions_come_in_the_order_of_a_full_walk():
  """`text._definitions` skips expressions; the documents' order (and so the corpus's hash) is `ast.walk`'s."""
  import ast
  source = (
      "def a():\n  class B:\n    def c(self): pass\n  return [lambda: 1 for _ in ()]\n"
      "if x:\n  def d(): pass\nelse:\n  async def e(): pass\n"
      "try:\n  def f(): pass\nexcept E:\n  def g():\n    def h(): pass\nfinally:\n  class I: pass\n"
      "with y:\n  def j(): pass\n"
      "match z:\n  case 1:\n    def k(): pass\n"
      "@deco(lambda: 0)\nclass L:\n  while w:\n    for v in u:\n      def m(): pass\n")
  tree = ast.parse(source)
  kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
  walked = [getattr(n, "name", "<module>") for n in ast.walk(tree) if isinstance(n, kinds)]
  assert [getattr(n, "name", "<module>") for n in text._definitions(tree)] == walked
  assert walked == ["<module>", "a", "L", "B", "d", "e", "f", "I", "j", "c", "g", "k", "h", "m"]   # by depth


def test_probe_split_holds_out_whole_modules_of_every_class():
  train, test, names = text.probe_split(_docstrings(), classes=8, test_every=4)
  assert len(names) == 8 and list(names) == sorted(names)
  assert not {d.source for d in train} & {d.source for d in test}
  assert {d.label for d in train} == {d.label for d in test} == set(names)
  assert len(test) > 0.15 * (len(train) + len(test))


def test_tokenizers_round_trip_and_know_their_end_of_text():
  bpe = _bpe()
  sample = [d.text for d in _docstrings()[:200]]
  for t in sample:                                          # byte-level BPE is lossless
    assert bpe.decode(bpe.encode(t).ids) == t
  assert bpe.get_vocab_size() == 2048 and text.end_of_text_id(bpe) == bpe.token_to_id("<|endoftext|>")
  wordpiece = text.train_tokenizer(sample, kind="wordpiece", vocab_size=1000)
  assert wordpiece.encode("Return THE Value").tokens[:2] == ["return", "the"]        # uncased, as BERT's
  assert text.end_of_text_id(wordpiece) == wordpiece.token_to_id("[SEP]")
  assert text.tokenizer_digest(bpe) != text.tokenizer_digest(wordpiece)
  assert text.special_tokens(wordpiece) == {"[SEP]": 0, "[PAD]": 1, "[UNK]": 2, "[CLS]": 3, "[MASK]": 4}
  pieces = wordpiece.encode("indistinguishably").tokens                 # a word cut into ## continuations
  assert len(pieces) > 1 and all(p.startswith("##") for p in pieces[1:])
  assert wordpiece.decode(wordpiece.encode("counting each element").ids) == "counting each element"
  with pytest.raises(ValueError, match="'bpe' .* or 'wordpiece'"):
    text.train_tokenizer(sample, kind="unigram", vocab_size=100)


def test_tokenizers_are_the_same_in_every_process():
  """A resumed run and every process of a multi-host run train the embedded corpus's tokenizer afresh: they must
  agree (the `tokenizers` WordPiece trainer numbers its `##` alphabet in a randomly seeded hash order; ours not)."""
  import subprocess
  import sys
  script = ("from ssl_jax.data import text\n"
            "docs = [d.text for d in text.stdlib_docstrings()[:1500]]\n"
            "for kind in ('bpe', 'wordpiece'):\n"
            "  print(text.tokenizer_digest(text.train_tokenizer(docs, kind=kind, vocab_size=1500)))\n")
  runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
          for _ in range(2)]
  docs = [d.text for d in _docstrings()[:1500]]
  here = [text.tokenizer_digest(text.train_tokenizer(docs, kind=k, vocab_size=1500)) for k in ("bpe", "wordpiece")]
  assert runs[0] == runs[1] == here


def test_token_stream_ends_every_document_with_end_of_text():
  bpe = _bpe()
  eot = text.end_of_text_id(bpe)
  texts = ["First document.", "", "A second, longer document about tokens."]
  tokens, starts = text.tokenize(texts, bpe)
  assert tokens.dtype == np.uint16 and starts[0] == 0 and starts[-1] == len(tokens) and len(starts) == 4
  for i, t in enumerate(texts):
    doc = tokens[starts[i]:starts[i + 1]]
    assert doc[-1] == eot and eot not in doc[:-1] and bpe.decode(doc[:-1].tolist()) == t


def test_windows_number_their_document_pieces_and_restart_positions():
  # Documents of 3, 6 and 4 tokens (ids 10.., 20.., 30..) in windows of 4: the stream is cut at 4 and 8.
  tokens = np.asarray([10, 11, 12, 20, 21, 22, 23, 24, 25, 30, 31, 32, 33], np.uint16)
  windows = text.TokenWindows(tokens, np.asarray([0, 3, 9, 13]), 4)
  assert len(windows) == 3                                              # the last partial window is dropped
  w = [windows[i] for i in range(3)]
  np.testing.assert_array_equal(w[0]["text"], [10, 11, 12, 20])
  np.testing.assert_array_equal(w[0]["text_segment_ids"], [1, 1, 1, 2])
  np.testing.assert_array_equal(w[0]["text_positions"], [0, 1, 2, 0])
  np.testing.assert_array_equal(w[1]["text_segment_ids"], [1, 1, 1, 1])    # the second document, continued
  np.testing.assert_array_equal(w[1]["text_positions"], [0, 1, 2, 3])
  np.testing.assert_array_equal(w[2]["text_segment_ids"], [1, 2, 2, 2])
  np.testing.assert_array_equal(w[2]["text_positions"], [0, 0, 1, 2])
  assert w[2]["text"].dtype == np.int32 and w[2]["index"] == 2
  with pytest.raises(ValueError, match="shorter than one window"):
    text.TokenWindows(tokens, np.asarray([0, 13]), 64)


def test_text_windows_stream_through_grain_resumably_and_alike_on_every_process_count():
  tokens, starts = text.tokenize([d.text for d in _docstrings()[:400]], _bpe())
  windows = text.TokenWindows(tokens, starts, 32)
  stream = lambda p=0, n=1: iter(pipeline.train_dataset(windows, seed=1, global_batch_size=8, transform=None,
                                                        process_index=p, process_count=n))
  it = stream()
  first = [next(it) for _ in range(3)]
  assert first[0]["text"].shape == (8, 32) and set(first[0]) == {"text", "text_segment_ids", "text_positions", "index"}
  state = it.get_state()
  after = [next(it) for _ in range(2)]
  resumed = stream()
  resumed.set_state(state)
  for a, b in zip(after, [next(resumed) for _ in range(2)]):
    np.testing.assert_array_equal(a["text"], b["text"])
  halves = [stream(p, 2) for p in range(2)]
  whole = stream()
  for _ in range(2):
    parts = [next(h) for h in halves]
    np.testing.assert_array_equal(np.concatenate([p["index"] for p in parts]), next(whole)["index"])


def test_prepare_text_writes_streams_and_refuses_bad_input(tmp_path):
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "a.txt").write_text("one line\n\nanother line\n")
  (tmp_path / "in" / "b.txt").write_bytes(b"\xff\xfe not utf-8")
  (tmp_path / "in" / "c.jsonl").write_text('{"text": "a json document"}\n{"body": "no text field"}\n')
  tok = tmp_path / "tok.json"
  _bpe().save(str(tok))
  out = tmp_path / "out"
  with pytest.raises(ValueError, match=r"b.txt is not UTF-8 text .* --bad_files=skip"):
    prepare_text.prepare(str(tmp_path / "in" / "*.txt"), str(tok), str(out), log=lambda *_: None)
  summary = prepare_text.prepare(str(tmp_path / "in" / "*.txt"), str(tok), str(out), per="line", bad_files="skip",
                                 validation_every=2, log=lambda *_: None)
  assert summary["left_out"] == dict(empty=1, bad_files=1) and summary["vocab_size"] == 2048
  tokens, starts, meta = text.load_stream(str(out / "train"))
  assert meta["tokenizer_sha256"] == text.tokenizer_digest(_bpe()) and meta["corpus"]["documents"] == len(starts) - 1
  assert _bpe().decode(np.asarray(tokens[:-1]).tolist()) in ("one line", "another line")
  with pytest.raises(FileExistsError, match="--overwrite"):
    prepare_text.prepare(str(tmp_path / "in" / "a.txt"), str(tok), str(out), log=lambda *_: None)
  with pytest.raises(ValueError, match=r"c.jsonl:2 is not a JSON object with a 'text' field"):
    prepare_text.prepare(str(tmp_path / "in" / "c.jsonl"), str(tok), str(tmp_path / "o2"), per="json",
                         log=lambda *_: None)
  args = ["--input=stdlib_docstrings", "--tokenizer=wordpiece:3000", f"--out={tmp_path / 'doc'}"]
  assert prepare_text.main(args) == 0
  probe = json.loads((tmp_path / "doc" / "probe.json").read_text())
  assert len(probe["classes"]) == 8 and len(probe["train"]["texts"]) == len(probe["train"]["labels"])


def _text_model(style, **kw):
  from ssl_jax.models import text as text_model
  spec = dict(vocab_size=97, max_length=40, width=32, depth=2, num_heads=4, mlp_dim=64, style=style,
              type_vocab_size=2 if style == "bert" else 0, **kw)
  return spec, text_model.TextTransformer(**spec)


def test_text_transformers_have_the_papers_parameter_counts():
  """GPT-2 small (124,439,808, as Hugging Face's GPT2LMHeadModel: tied output layer) and BERT-base with its masked-LM
  head (109,514,298, as BertForMaskedLM without the pooler)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from ssl_jax.models import text as text_model
  count = lambda m: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(jax.eval_shape(
      lambda: nn.unbox(m.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))))))
  size = dict(width=768, depth=12, num_heads=12, mlp_dim=3072)
  assert count(text_model.TextTransformer(vocab_size=50257, max_length=1024, style="gpt2", **size)) == 124_439_808
  assert count(text_model.TextTransformer(vocab_size=30522, max_length=512, style="bert", type_vocab_size=2,
                                          **size)) == 109_514_298


@pytest.mark.parametrize("style", ["gpt2", "bert"])
def test_packed_documents_do_not_see_each_other(style):
  """Two documents packed in one window (segment ids, positions restarting) give each the hidden states it has
  alone; GPT-2's token t does not depend on later tokens."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  _, model = _text_model(style)
  a, b = jax.random.randint(jax.random.key(0), (1, 9), 0, 97), jax.random.randint(jax.random.key(1), (1, 7), 0, 97)
  variables = nn.unbox(jax.jit(model.init)(jax.random.key(2), a))    # jitted: one compile each, not one per primitive
  apply = jax.jit(model.apply)
  packed = apply(variables, jnp.concatenate([a, b], 1), segment_ids=jnp.asarray([[1] * 9 + [2] * 7]),
                 positions=jnp.asarray([list(range(9)) + list(range(7))]))
  np.testing.assert_allclose(packed["tokens"][:, :9], apply(variables, a)["tokens"], atol=2e-5)
  np.testing.assert_allclose(packed["tokens"][:, 9:], apply(variables, b)["tokens"], atol=2e-5)
  np.testing.assert_allclose(packed["pooled"], apply(variables, a)["pooled"], atol=2e-5)   # segment 1
  if style == "gpt2":
    changed = a.at[:, 5:].set((a[:, 5:] + 1) % 97)
    np.testing.assert_allclose(apply(variables, changed)["tokens"][:, :5], apply(variables, a)["tokens"][:, :5],
                               atol=1e-6)


@pytest.mark.parametrize("style", ["gpt2", "bert"])
def test_text_transformers_equal_hugging_face(style):
  """Our GPT-2 / BERT and Hugging Face's GPT2LMHeadModel / BertForMaskedLM with the converted weights
  (`ssl_jax.convert`) give the same logits (within 1e-5, float32 CPU; measured 4e-7)."""
  torch = pytest.importorskip("torch", reason="the optional `export` extra: pip install -e '.[export]'")
  transformers = pytest.importorskip("transformers", reason="the optional `export` extra")
  import flax.linen as nn
  import jax
  from ssl_jax import convert
  spec, model = _text_model(style)
  tokens = jax.random.randint(jax.random.key(0), (2, 24), 0, 97)
  variables = nn.unbox(model.init(jax.random.key(1), tokens))
  # Perturb every parameter, so that LayerNorm scales and biases are not the identity and zero they start at.
  variables = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape), variables)
  ours = model.apply(variables, model.apply(variables, tokens)["tokens"], method=type(model).logits)
  sd, config = (convert.to_hf_gpt2 if style == "gpt2" else convert.to_hf_bert)(spec, variables)
  hf_config = {"gpt2": transformers.GPT2Config, "bert": transformers.BertConfig}[style](
      **{k: v for k, v in config.items() if k not in ("model_type", "architectures")})
  net = {"gpt2": transformers.GPT2LMHeadModel, "bert": transformers.BertForMaskedLM}[style](hf_config).eval()
  missing, unexpected = net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
  assert not missing and not unexpected
  with torch.no_grad():
    theirs = net(torch.from_numpy(np.asarray(tokens)).long()).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-5)


def test_text_parameters_shard_the_vocabulary_over_tensor_and_the_width_over_fsdp():
  import jax
  import jax.numpy as jnp
  from jax.sharding import PartitionSpec as P
  from ssl_jax import sharding
  _, model = _text_model("bert")
  mesh = sharding.make_mesh(dict(data=1, fsdp=4, tensor=2))
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
  spec = jax.tree.map(lambda s: s.spec, sharding.logical_shardings(boxed, mesh, sharding.DEFAULT_RULES))["params"]
  assert spec["token_embedding"] == P("tensor", "fsdp") and spec["mlm_bias"] == P("tensor")
  assert spec["encoder"]["block0"]["attn"]["qkv_kernel"] == P("fsdp", "tensor", None, None)
  assert spec["encoder"]["block0"]["mlp"]["fc1"]["kernel"] == P("fsdp", "tensor")


def test_prepare_text_reads_a_prepared_tfds_text_data_set_with_a_progress_bar(tmp_path):
  """`--input=tfds:<name>` reads a TFDS data set's records through `tfds.data_source` (here `tfds.testing.mock_data`'s
  imdb_reviews: random text), one document per record's field, and prints its progress and summary."""
  import tensorflow_datasets as tfds
  lines = []
  with tfds.testing.mock_data(num_examples=40):
    summary = prepare_text.prepare("tfds:imdb_reviews", "bpe:300", str(tmp_path / "imdb"), validation_every=4,
                                   log=lines.append)
    with pytest.raises(ValueError, match=r"no 'body' field \(they have \['label', 'text'\]\); set --field"):
      prepare_text.prepare("tfds:imdb_reviews", "bpe:300", str(tmp_path / "x"), field="body", log=lambda *_: None)
  assert summary["train"]["documents"] + summary["validation"]["documents"] == 40
  tokens, starts, meta = text.load_stream(str(tmp_path / "imdb" / "train"))
  assert len(starts) - 1 == summary["train"]["documents"] == 30 and meta["input"] == "tfds:imdb_reviews"
  bars = [l for l in lines if l.lstrip().startswith("tokenizing train [")]
  assert bars[-1].endswith("100% (30 / 30 documents)") and "[####################]" in bars[-1]
  with pytest.raises(FileNotFoundError, match="is not prepared here"):
    prepare_text.prepare("tfds:imdb_reviews", "bpe:300", str(tmp_path / "y"), data_dir=str(tmp_path / "none"),
                         log=lambda *_: None)


def test_a_run_on_prepared_data_probes_the_embedded_docstrings_with_its_own_tokenizer(tmp_path):
  """configs/gpt2_small.py's evaluation: data.name='prepared' with the docstring probe, which must be tokenized by the
  prepared corpus's tokenizer (a model's ids mean nothing under another), not by data.text.tokenizer's default."""
  from ssl_jax import config as config_lib
  from ssl_jax.data import inputs
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "a.txt").write_text("\n".join(d.text for d in _docstrings()[:300]))
  prepare_text.prepare(str(tmp_path / "in" / "a.txt"), "bpe:700", str(tmp_path / "out"), per="line",
                       validation_every=4, log=lambda *_: None)
  data = config_lib.text_data("prepared", length=32, data_dir=str(tmp_path / "out"))
  windows = inputs.open_source(data, "train")
  probe = inputs.open_source(data, "test", "stdlib_docstrings_probe")
  assert windows.vocab_size == probe.vocab_size == 700 and data.text.tokenizer == "bpe:8192"     # not the default
  tok = text.load_tokenizer(str(tmp_path / "out" / "tokenizer.json"))
  assert text.tokenizer_digest(inputs.tokenizer(data)) == text.tokenizer_digest(tok)
  first = probe[0]
  ids = first["text"][first["text_segment_ids"] > 0].tolist()
  assert tok.decode(ids) and ids == tok.encode(tok.decode(ids), add_special_tokens=False).ids[:len(ids)]

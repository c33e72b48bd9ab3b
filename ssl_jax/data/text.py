"""Text data: the embedded corpora, tokenizers (Hugging Face `tokenizers`), token streams and their packed windows.

A corpus is a list of `Document`s. `tokenize` turns it into one token stream, every document followed by the
end-of-text token, with the offsets where documents start; `TokenWindows` cuts that stream into fixed-length windows,
random access, so that Grain shuffles, slices and checkpoints them like images (global batch b holds the same windows
on 1 host or N, and a resumed iterator is exact). Each window carries, besides its tokens (`text`), the Grain-style
packing features `text_segment_ids` (1, 2, ... for the pieces of documents it holds, in order) and `text_positions`
(the position of each token within its piece, from 0), so that attention and losses never cross a document boundary
(`ssl_jax.models.attention`).

Why windows of a stream rather than Grain's packers (`grain.experimental.FirstFitPackIterDataset` and kin): those
pack whole examples into rows of an iterator, with padding, and their state is a packing buffer; windows of one
stream waste no token on padding, are random access (so resumption and any process count give the same batches by
construction), and cost one `np.searchsorted` per window. A document longer than a window continues in the next
window as a piece of its own (positions restart at 0), as GPT-2 and nanoGPT train.

The embedded corpora need no download and are extracted from the running Python: `stdlib_docstrings()` (every
docstring of 40 characters or more in the standard library's own modules, read with `ast` (nothing is imported), and
the `pydoc_data` topics: about 1.9 MB of English prose, which differs slightly between Python patch versions, so its
hash is recorded with any prepared data) and `package_code()` (the source files of ssl_jax, for GPT on code). Each
docstring carries the top-level package it belongs to, the label of the downstream probe (`probe_split`).
"""

import ast
import collections
import dataclasses
import functools
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterable, Sequence

import numpy as np

# Special tokens of the two tokenizer kinds (the first is the end-of-text / separator token).
SPECIAL_TOKENS = {"bpe": ("<|endoftext|>",), "wordpiece": ("[SEP]", "[PAD]", "[UNK]", "[CLS]", "[MASK]")}

# Standard-library folders whose files are tests, demos, bundled installers or GUI code, not library prose.
_SKIPPED_FOLDERS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "idlelib", "lib2to3", "tkinter",
                    "turtledemo", "ensurepip", "venv", "__pycache__", "__phello__"}


@dataclasses.dataclass(frozen=True)
class Document:
  """One document: its text, where it came from (a module's dotted path, or `pydoc_data.topics:<topic>`), and the
  label of the probe task (the top-level package of a docstring), if any."""
  text: str
  source: str
  label: str | None = None


def _stdlib_files() -> list[tuple[str, str]]:
  """(dotted module name, path) of the standard library's Python files, sorted, without tests and demos."""
  root = sysconfig.get_paths()["stdlib"]
  found = []
  for folder, subfolders, files in os.walk(root):
    parts = os.path.relpath(folder, root).split(os.sep)
    if any(p in _SKIPPED_FOLDERS or p.startswith("config-") for p in parts):
      subfolders[:] = []
      continue
    subfolders.sort()
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path, root)[:-3].replace(os.sep, ".").removesuffix(".__init__")
        found.append((module, path))
  return found


def _definitions(tree: ast.Module):
  """The module and its class and function definitions, in `ast.walk`'s order (breadth-first), without descending
  into expressions: no statement, so no definition, sits inside one (a third of the time of `ast.walk`)."""
  todo = collections.deque([tree])
  while todo:
    node = todo.popleft()
    todo.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, ast.expr))
    if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      yield node


def stdlib_docstrings(min_chars: int = 40, topics: bool = True) -> list[Document]:
  """The standard library's docstrings (modules, classes, functions; `inspect.cleandoc`-ed) of at least `min_chars`
  characters, in file order, labelled by top-level package; then, with `topics`, the `pydoc_data` help topics."""
  docs = []
  for module, path in _stdlib_files():
    try:
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, OSError):
      continue          # a file this Python cannot parse (none in CPython 3.11-3.13) is left out
    for node in _definitions(tree):
      text = ast.get_docstring(node, clean=True)
      if text and len(text) >= min_chars:
        docs.append(Document(text, module, module.split(".")[0]))
  if topics:
    from pydoc_data import topics as pydoc_topics
    docs += [Document(text, f"pydoc_data.topics:{name}") for name, text in sorted(pydoc_topics.topics.items())]
  return docs


def package_code() -> list[Document]:
  """The Python source files of ssl_jax itself, one document each (GPT on code)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  docs = []
  for folder, subfolders, files in os.walk(root):
    subfolders[:] = sorted(s for s in subfolders if s != "__pycache__")
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8") as f:
          docs.append(Document(f.read(), os.path.relpath(path, os.path.dirname(root))))
  return docs


def digest(documents: Sequence[Document]) -> dict:
  """Size and identity of a corpus: documents, characters, UTF-8 bytes and the SHA-256 of the texts."""
  h = hashlib.sha256()
  size = 0
  for d in documents:
    data = d.text.encode("utf-8")
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)
    size += len(data)
  return dict(documents=len(documents), characters=sum(len(d.text) for d in documents), bytes=size,
              sha256=h.hexdigest())


def split_validation(documents: Sequence[Document], every: int):
  """(train, validation): the documents of one `source` (module, file, topic) in `every`, in name order, to
  validation, so that a module's docstrings are all on one side."""
  if every <= 1:
    raise ValueError(f"one document source in `every` goes to validation: every must be at least 2, got {every} "
                     "(--validation_every).")
  sources = sorted({d.source for d in documents})
  held = {s for i, s in enumerate(sources) if i % every == every - 1}
  return [d for d in documents if d.source not in held], [d for d in documents if d.source in held]


def probe_split(documents: Sequence[Document], *, classes: int = 8, test_every: int = 4):
  """The downstream probe: which top-level package a docstring belongs to, held out by module.

  The `classes` packages with the most labelled docstrings among those spread over at least `test_every` modules
  are the classes; within each, its modules in name order go to the test split one in `test_every` (the others to
  train), so that no module has docstrings on both sides and the probe cannot recognise a module's own phrasing.

  Returns:
    (train documents, test documents, class names in label order); a document's class is
    `names.index(document.label)`.
  """
  modules: dict[str, set[str]] = {}
  counts: dict[str, int] = {}
  for d in documents:
    if d.label is not None:
      modules.setdefault(d.label, set()).add(d.source)
      counts[d.label] = counts.get(d.label, 0) + 1
  eligible = [p for p in counts if len(modules[p]) >= test_every]
  names = tuple(sorted(sorted(eligible, key=lambda p: (-counts[p], p))[:classes]))
  held_out = {m for p in names for i, m in enumerate(sorted(modules[p])) if i % test_every == test_every - 1}
  chosen = [d for d in documents if d.label in names]
  return ([d for d in chosen if d.source not in held_out], [d for d in chosen if d.source in held_out], names)


def train_tokenizer(texts: Iterable[str], *, kind: str, vocab_size: int):
  """A tokenizer trained on `texts` (seconds for a few MB):

  - "bpe": GPT-2's byte-level BPE (every byte in the initial alphabet, so no text is ever unknown; no prefix space),
    special token `<|endoftext|>`;
  - "wordpiece": BERT's uncased WordPiece (BERT normaliser: lower case, accents stripped; `##` continuations),
    special tokens `[SEP]`, `[PAD]`, `[UNK]`, `[CLS]`, `[MASK]` (`_train_wordpiece`).

  Both are deterministic: the same texts give the same tokenizer in every process.

  Returns a `tokenizers.Tokenizer` (save it with `.save(path)`; `load_tokenizer` reads it back).
  """
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
  if kind == "bpe":
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS["bpe"]),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  elif kind == "wordpiece":
    return _train_wordpiece(texts, vocab_size)
  else:
    raise ValueError(f"tokenizer kind {kind!r} is unknown; use 'bpe' (GPT-2) or 'wordpiece' (BERT).")
  tok.train_from_iterator(texts, trainer)
  return tok


def _train_wordpiece(texts: Iterable[str], vocab_size: int):
  """BERT's uncased WordPiece vocabulary, learnt as `tokenizers.trainers.WordPieceTrainer` learns it (BPE merges
  within words, a word's later pieces marked `##`), but the same in every process.

  The library's trainer numbers the `##` forms of the characters in the order of a randomly seeded hash map, which
  changes the ids and, through tie-breaking, the merges from one process to the next (so that resumed runs and the
  processes of a multi-host run would disagree on what an id means). Here every character after a word's first is
  written as a private-use character of its own before a plain character BPE learns the merges from a sorted
  alphabet, and the vocabulary is mapped back (`x` -> `##x`) into a `models.WordPiece`.
  """
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
  norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
  words = [[w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t))] for t in texts]
  chars = sorted({c for ws in words for w in ws for c in w})
  later = {c: chr(0xF0000 + i) for i, c in enumerate(chars)}         # Unicode's supplementary private-use plane
  back = {v: k for k, v in later.items()}
  bpe = Tokenizer(models.BPE())
  bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  specials = list(SPECIAL_TOKENS["wordpiece"])
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                initial_alphabet=chars + sorted(later.values()), show_progress=False)
  bpe.train_from_iterator((" ".join(w[0] + "".join(later[c] for c in w[1:]) for w in ws) for ws in words), trainer)
  vocab = {}
  for token, i in bpe.get_vocab().items():
    if token in specials:
      vocab[token] = i
    elif token[0] in back:
      vocab["##" + "".join(back[c] for c in token)] = i
    else:
      vocab[token[0] + "".join(back[c] for c in token[1:])] = i
  tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  tok.normalizer, tok.pre_tokenizer, tok.decoder = norm, pre, decoders.WordPiece()
  tok.add_special_tokens(specials)
  return tok


def load_tokenizer(path: str):
  """A `tokenizers.Tokenizer` from its `tokenizer.json` (ours, or any Hugging Face one)."""
  from tokenizers import Tokenizer
  if not os.path.exists(path):
    raise FileNotFoundError(f"tokenizer file {path} does not exist; train one with `python -m "
                            "ssl_jax.data.prepare_text --tokenizer=bpe:<vocab size>` or give a tokenizer.json.")
  return Tokenizer.from_file(path)


def tokenizer_digest(tokenizer) -> str:
  """The SHA-256 of a tokenizer's JSON: what a checkpoint records, to refuse data tokenized by another tokenizer."""
  return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()


def special_tokens(tokenizer) -> dict[str, int]:
  """The tokenizer's special tokens, `{text: id}` ("[MASK]": 4 in the WordPiece vocabularies `train_tokenizer` makes,
  103 in bert-base-uncased's)."""
  return {t.content: i for i, t in sorted(tokenizer.get_added_tokens_decoder().items()) if t.special}


def end_of_text_id(tokenizer) -> int:
  """The id of the tokenizer's end-of-text / separator token (`<|endoftext|>` or `[SEP]`)."""
  for name in ("<|endoftext|>", "[SEP]", "</s>"):
    i = tokenizer.token_to_id(name)
    if i is not None:
      return i
  raise ValueError("the tokenizer has none of the end-of-text tokens <|endoftext|>, [SEP], </s>; add one.")


def tokenize(texts: Sequence[str], tokenizer, *, batch: int = 1024, progress=None) -> tuple[np.ndarray, np.ndarray]:
  """One token stream of `texts`, each followed by the end-of-text token (`progress(documents done)` is called after
  each batch of `batch` texts, if given).

  Returns:
    (tokens: uint16 (a vocabulary under 65,536) or int32 `[N]`, starts: int64 `[len(texts) + 1]`, where document i is
    `tokens[starts[i]:starts[i + 1]]`, its end-of-text token last). An empty text is a document of one end-of-text
    token.
  """
  eot = end_of_text_id(tokenizer)
  pieces, lengths = [], []
  for i in range(0, len(texts), batch):
    for enc in tokenizer.encode_batch(list(texts[i:i + batch]), add_special_tokens=False):
      pieces.append(np.asarray(enc.ids + [eot], np.int64))
      lengths.append(len(enc.ids) + 1)
    if progress is not None:
      progress(min(i + batch, len(texts)))
  dtype = np.uint16 if tokenizer.get_vocab_size() <= 2 ** 16 else np.int32
  tokens = np.concatenate(pieces).astype(dtype) if pieces else np.zeros((0,), dtype)
  return tokens, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


class TokenWindows:
  """Fixed-length windows of a token stream, as a random-access source for Grain.

  Window i is `tokens[i * length:(i + 1) * length]` (the stream's last partial window is dropped), as
  `{"text": int32 [length], "text_segment_ids": int32 [length], "text_positions": int32 [length], "index": i}`:
  segment ids number the pieces of documents in the window 1, 2, ... (a document cut by the window's start is
  piece 1), positions count from 0 within each piece.
  """

  def __init__(self, tokens: np.ndarray, starts: np.ndarray, length: int):
    if length < 2:
      raise ValueError(f"a token window needs at least 2 tokens, got length={length}.")
    if len(tokens) < length:
      raise ValueError(f"the token stream ({len(tokens)} tokens) is shorter than one window of {length}; use a "
                       "shorter data.text.length or more text.")
    self.tokens, self.starts, self.length = tokens, np.asarray(starts, np.int64), length

  def __len__(self) -> int:
    return len(self.tokens) // self.length

  def __getitem__(self, i: int) -> dict:
    if not 0 <= i < len(self):
      raise IndexError(i)
    begin = i * self.length
    offsets = np.arange(begin, begin + self.length)
    doc = np.searchsorted(self.starts, offsets, side="right") - 1          # the document of each token
    segment = (doc - doc[0] + 1).astype(np.int32)
    piece_start = np.maximum(self.starts[doc], begin)
    return {"text": self.tokens[begin:begin + self.length].astype(np.int32), "text_segment_ids": segment,
            "text_positions": (offsets - piece_start).astype(np.int32), "index": np.int32(i)}


def save_stream(directory: str, tokens: np.ndarray, starts: np.ndarray, meta: dict) -> None:
  """Writes a token stream as `tokens.npy`, `starts.npy` and `meta.json` into `directory` (created)."""
  os.makedirs(directory, exist_ok=True)
  np.save(os.path.join(directory, "tokens.npy"), tokens)
  np.save(os.path.join(directory, "starts.npy"), starts)
  with open(os.path.join(directory, "meta.json"), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)


def load_stream(directory: str) -> tuple[np.ndarray, np.ndarray, dict]:
  """(tokens, starts, meta) of a stream `save_stream` wrote; the tokens memory-mapped."""
  path = os.path.join(directory, "tokens.npy")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no prepared token stream in {directory} (tokens.npy missing); prepare it with "
                            "`python -m ssl_jax.data.prepare_text`.")
  with open(os.path.join(directory, "meta.json")) as f:
    meta = json.load(f)
  return np.load(path, mmap_mode="r"), np.load(os.path.join(directory, "starts.npy")), meta


class TextExamples:
  """Labelled texts as fixed-length examples (the downstream probe's): each text's first `length` tokens, padded,
  `{"text", "text_segment_ids" (1 on tokens, 0 on padding), "text_positions", "label", "index"}`."""

  def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer, length: int, num_classes: int):
    self.length, self.num_classes, self.labels = length, num_classes, np.asarray(labels, np.int32)
    self.vocab_size = tokenizer.get_vocab_size()
    self.rows = [np.asarray(e.ids[:length], np.int32)
                 for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, i: int) -> dict:
    ids = self.rows[i]
    n = len(ids)
    pad = lambda x: np.pad(x, (0, self.length - n)).astype(np.int32)
    return {"text": pad(ids), "text_segment_ids": pad(np.ones(n, np.int32)), "text_positions": pad(np.arange(n)),
            "label": self.labels[i], "index": np.int32(i)}


@functools.cache
def _corpus(name: str) -> tuple[Document, ...]:
  """The documents of the embedded corpus `name`, read once per process (the standard library's: about 3 s)."""
  return tuple(stdlib_docstrings() if name == "stdlib_docstrings" else package_code())


@functools.cache
def _embedded(name: str, tokenizer: str) -> dict:
  """The embedded corpus `name`, its tokenizer (trained on its training documents, or loaded), token streams by
  split and, for the docstrings, the probe: prepared in memory once per process and tokenizer (a few seconds)."""
  docs = _corpus(name)
  train, validation = split_validation(docs, 20)
  kind, _, size = tokenizer.partition(":")
  if kind in SPECIAL_TOKENS and size.isdigit():
    tok = train_tokenizer((d.text for d in train), kind=kind, vocab_size=int(size))
  else:
    tok = load_tokenizer(tokenizer)
  out = {"tokenizer": tok, "train": tokenize([d.text for d in train], tok),
         "validation": tokenize([d.text for d in validation], tok)}
  if name == "stdlib_docstrings":
    probe_train, probe_test, names = probe_split(docs)
    out["probe"] = {"classes": names, **{s: ([d.text for d in ds], [names.index(d.label) for d in ds])
                                         for s, ds in (("train", probe_train), ("test", probe_test))}}
  return out


def open_text(name: str, split: str, *, length: int, tokenizer: str, data_dir: str | None = None):
  """A text source: training or validation windows (`TokenWindows`, with `vocab_size` and `tokenizer`) of a corpus,
  or the labelled examples of its probe (`TextExamples`, with `num_classes`).

  Args:
    name: "stdlib_docstrings" or "ssl_jax_code" (embedded, tokenized in memory with `tokenizer`), "prepared" (the
      `--out` of `prepare_text` in `data_dir`, with its own tokenizer.json), or either with the suffix "_probe"
      for the probe's examples.
    split: "train" / "validation" (windows) or "train" / "test" (probe), optionally sliced: "train[:64]".
    length: tokens per window or example.
    tokenizer: for embedded corpora, `bpe:<vocab>` / `wordpiece:<vocab>` or a tokenizer.json path (prepared data
      is always read with its own).
  """
  from ssl_jax.data import sources
  base, part = sources.split_slice(split)
  probe = name.endswith("_probe")
  corpus = name.removesuffix("_probe")
  if corpus == "prepared":
    if not data_dir:
      raise ValueError("data.name='prepared' needs config.data.data_dir: the --out of python -m "
                       "ssl_jax.data.prepare_text.")
    tok = load_tokenizer(os.path.join(data_dir, "tokenizer.json"))
    if probe:
      with open(os.path.join(data_dir, "probe.json")) as f:
        p = json.load(f)
      data = {"probe": {"classes": p["classes"], **{s: (p[s]["texts"], p[s]["labels"]) for s in ("train", "test")}}}
    else:
      tokens, starts, _ = load_stream(os.path.join(data_dir, base))
      data = {base: (tokens, starts)}
  elif corpus in ("stdlib_docstrings", "ssl_jax_code"):
    data = _embedded(corpus, tokenizer)
    tok = data["tokenizer"]
  else:
    raise ValueError(f"text data {name!r} is unknown; use 'stdlib_docstrings', 'ssl_jax_code' or 'prepared' (with "
                     "config.data.data_dir), with '_probe' for the probe's labelled examples.")
  if probe:
    if "probe" not in data:
      raise ValueError(f"{corpus!r} has no probe task (only the docstrings are labelled).")
    if base not in ("train", "test"):
      raise ValueError(f"the probe has splits 'train' and 'test', not {base!r}.")
    texts, labels = data["probe"][base]
    return TextExamples(texts[part], labels[part], tok, length, len(data["probe"]["classes"]))
  if base not in ("train", "validation") or base not in data:
    raise ValueError(f"text data {name!r} has splits 'train' and 'validation', not {base!r}.")
  tokens, starts = data[base]
  windows = TokenWindows(tokens, starts, length)
  if part != slice(None):
    raise ValueError(f"split {split!r}: token windows are not sliced; use 'train' or 'validation'.")
  windows.vocab_size, windows.tokenizer = tok.get_vocab_size(), tok
  return windows

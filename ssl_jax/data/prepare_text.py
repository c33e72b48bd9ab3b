"""Tokenizes a text corpus into the token streams the text pipeline reads (`ssl_jax.data.text`).

    python -m ssl_jax.data.prepare_text --input=stdlib_docstrings --tokenizer=bpe:8192 --out=data/docstrings_bpe
    python -m ssl_jax.data.prepare_text --input='corpus/*.txt' --per=file --tokenizer=wordpiece:30522 --out=data/mine
    python -m ssl_jax.data.prepare_text --input=books.jsonl --per=json --field=text \\
        --tokenizer=data/mine/tokenizer.json --out=data/books

`--input`: an embedded corpus (`stdlib_docstrings`: the standard library's docstrings and pydoc topics;
`ssl_jax_code`: this package's source), a prepared TFDS text data set (`tfds:c4/en`, `tfds:wikipedia/20230601.en`:
its `--tfds_split` read with `tfds.data_source` from `--data_dir`, one document per record's `--field`), or
comma-separated files and glob patterns (local or gs://), read as UTF-8, one document per file (`--per=file`), per
non-empty line (`line`) or per JSON line's `--field` (`json`). The documents are held in memory while they are
tokenized (corpora of a few GB; C4-sized ones want a sharded preparation, which is not written yet).
`--tokenizer`: `bpe:<vocab size>` or `wordpiece:<vocab size>` trains one on the training documents (GPT-2's
byte-level BPE, BERT's uncased WordPiece), or a `tokenizer.json` path is loaded; either way it is saved as
`<out>/tokenizer.json`.

Prints a progress bar while it tokenizes and a summary at the end. Writes `<out>/train/` and `<out>/validation/` (`tokens.npy`, `starts.npy`, `meta.json`: documents, tokens, bytes,
the corpus's SHA-256, the tokenizer's, the vocabulary size), and for the embedded docstrings the downstream probe's
`<out>/probe.json` (texts and labels of its train and test splits, held out by module). The validation documents are
one in `--validation_every` (by module for the embedded docstrings, so that no module is on both sides). Empty
documents are dropped and counted; a file that is not UTF-8 stops the run naming it (`--bad_files=stop`) or is
skipped and counted (`skip`). Nothing in `<out>` is replaced unless `--overwrite` is given.
"""

import glob
import json
import os
import sys
import time

from ssl_jax.data import text as text_lib

EMBEDDED = ("stdlib_docstrings", "ssl_jax_code")


def read_documents(inputs: str, *, per: str = "file", field: str = "text", bad_files: str = "stop",
                   tfds_split: str = "train", data_dir: str | None = None) -> tuple[list[text_lib.Document], dict]:
  """The documents of `inputs` (see the module docstring) and counts of what was left out."""
  from etils import epath
  if inputs in EMBEDDED:
    docs = text_lib.stdlib_docstrings() if inputs == "stdlib_docstrings" else text_lib.package_code()
    return docs, dict(empty=0, bad_files=0)
  if inputs.startswith("tfds:"):
    return _tfds_documents(inputs[len("tfds:"):], split=tfds_split, field=field, data_dir=data_dir,
                           bad_files=bad_files)
  if per not in ("file", "line", "json"):
    raise ValueError(f"--per={per!r}: use 'file', 'line' or 'json'.")
  paths = []
  for pattern in inputs.split(","):
    matched = sorted(str(p) for p in epath.Path(os.path.dirname(pattern) or ".").glob(os.path.basename(pattern))) \
        if glob.has_magic(pattern) else [pattern]
    if not matched:
      raise FileNotFoundError(f"--input pattern {pattern!r} matches no file.")
    paths += matched
  docs, counts = [], dict(empty=0, bad_files=0)
  for path in paths:
    try:
      data = epath.Path(path).read_bytes()
    except FileNotFoundError:
      raise FileNotFoundError(f"--input file {path} does not exist.") from None
    content = _decode(data, path, bad_files, counts)
    if content is None:
      continue
    if per == "file":
      texts = [content]
    elif per == "line":
      texts = content.splitlines()
    else:
      texts = []
      for n, line in enumerate(content.splitlines(), 1):
        if line.strip():
          try:
            texts.append(json.loads(line)[field])
          except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}:{n} is not a JSON object with a {field!r} field (--per=json "
                             f"--field={field}).") from None
    for i, t in enumerate(texts):
      if t.strip():
        docs.append(text_lib.Document(t, f"{path}:{i}" if per != "file" else path))
      else:
        counts["empty"] += 1
  return docs, counts


def _decode(data: bytes, where: str, bad_files: str, counts: dict) -> str | None:
  """`data` as UTF-8 text; else an error naming `where` (`bad_files="stop"`) or None, counted in `counts`."""
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    if bad_files == "stop":
      raise ValueError(f"{where} is not UTF-8 text ({e.reason} at byte {e.start}); convert it, or pass "
                       "--bad_files=skip to leave such inputs out (they are counted).") from None
    counts["bad_files"] += 1
    return None


def _tfds_documents(name: str, *, split: str, field: str, data_dir: str | None, bad_files: str):
  """The `field` of every record of a prepared TFDS data set's `split` (`tfds.data_source`: ArrayRecord, no
  TensorFlow), one document each."""
  import tensorflow_datasets as tfds
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # noqa: BLE001 -- TFDS raises several types for "not prepared here"
    raise FileNotFoundError(f"--input=tfds:{name} (split {split!r}, data_dir {data_dir}) is not prepared here ({e}); "
                            "prepare it with `tfds build` in ArrayRecord format, or give --data_dir.") from None
  docs, counts = [], dict(empty=0, bad_files=0)
  for i in range(len(source)):
    record = source[i]
    if field not in record:
      raise ValueError(f"tfds:{name} records have no {field!r} field (they have {sorted(record)}); set --field.")
    value = record[field]
    if isinstance(value, bytes):
      value = _decode(value, f"tfds:{name}[{split}] record {i}", bad_files, counts)
      if value is None:
        continue
    if str(value).strip():
      docs.append(text_lib.Document(str(value), f"tfds:{name}[{split}]:{i}"))
    else:
      counts["empty"] += 1
  return docs, counts


def _progress(label: str, total: int, log):
  """A progress bar for `log`: `update(done)` prints `label [#####-----] 50% (n / total documents)` at every 10%."""
  shown = [-1]

  def update(done: int) -> None:
    percent = done * 100 // max(total, 1)
    if percent // 10 > shown[0]:
      shown[0] = percent // 10
      log(f"  {label} [{'#' * (percent // 5)}{'-' * (20 - percent // 5)}] {percent:3d}% ({done:,} / {total:,} "
          "documents)")
  return update


def prepare(inputs: str, tokenizer: str, out: str, *, per: str = "file", field: str = "text",
            validation_every: int = 20, bad_files: str = "stop", overwrite: bool = False,
            tfds_split: str = "train", data_dir: str | None = None, log=print) -> dict:
  """Reads, tokenizes and writes a corpus (see the module docstring); returns the summary it prints."""
  if os.path.exists(os.path.join(out, "train", "tokens.npy")) and not overwrite:
    raise FileExistsError(f"{out} already holds a prepared corpus; pass --overwrite to replace it, or choose another "
                          "--out.")
  start = time.time()
  docs, counts = read_documents(inputs, per=per, field=field, bad_files=bad_files, tfds_split=tfds_split,
                                data_dir=data_dir)
  if not docs:
    raise ValueError(f"--input={inputs!r} holds no non-empty document.")
  train, validation = text_lib.split_validation(docs, validation_every)
  log(f"read {len(docs)} documents ({counts['empty']} empty ones and {counts['bad_files']} files that are not UTF-8 "
      f"left out): {len(train)} for training, {len(validation)} for validation")
  if ":" in tokenizer and tokenizer.split(":")[0] in text_lib.SPECIAL_TOKENS:
    kind, size = tokenizer.split(":")
    tok = text_lib.train_tokenizer((d.text for d in train), kind=kind, vocab_size=int(size))
    log(f"trained a {kind} tokenizer of {tok.get_vocab_size()} tokens on the training documents")
  else:
    tok = text_lib.load_tokenizer(tokenizer)
  os.makedirs(out, exist_ok=True)
  tok.save(os.path.join(out, "tokenizer.json"))
  summary = dict(input=inputs, tokenizer_sha256=text_lib.tokenizer_digest(tok), vocab_size=tok.get_vocab_size(),
                 left_out=counts)
  for split, split_docs in (("train", train), ("validation", validation)):
    tokens, starts = text_lib.tokenize([d.text for d in split_docs], tok,
                                       progress=_progress(f"tokenizing {split}", len(split_docs), log))
    meta = dict(summary, corpus=text_lib.digest(split_docs), tokens=int(len(tokens)), split=split)
    text_lib.save_stream(os.path.join(out, split), tokens, starts, meta)
    summary[split] = dict(documents=len(split_docs), tokens=int(len(tokens)), bytes=meta["corpus"]["bytes"],
                          sha256=meta["corpus"]["sha256"])
    log(f"{split}: {len(split_docs)} documents, {meta['corpus']['bytes']:,} bytes -> {len(tokens):,} tokens "
        f"({len(tokens) / max(meta['corpus']['bytes'], 1):.3f} per byte)")
  if inputs == "stdlib_docstrings":
    probe_train, probe_test, names = text_lib.probe_split(docs)
    with open(os.path.join(out, "probe.json"), "w") as f:
      json.dump(dict(classes=names, **{s: dict(texts=[d.text for d in ds], labels=[names.index(d.label) for d in ds])
                                       for s, ds in (("train", probe_train), ("test", probe_test))}), f)
    log(f"probe (top-level package, held out by module): {len(names)} classes, {len(probe_train)} train and "
        f"{len(probe_test)} test docstrings -> probe.json")
  log(f"wrote {out} in {time.time() - start:.1f} s")
  return summary


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(prog="python -m ssl_jax.data.prepare_text", description=__doc__.split("\n\n")[0])
  parser.add_argument("--input", required=True, help=f"{' or '.join(EMBEDDED)}, tfds:<name>, or files / globs, "
                      "comma-separated")
  parser.add_argument("--tokenizer", required=True, help="bpe:<vocab>, wordpiece:<vocab> or a tokenizer.json")
  parser.add_argument("--out", required=True, help="the output directory")
  parser.add_argument("--per", default="file", choices=("file", "line", "json"))
  parser.add_argument("--field", default="text", help="the JSON field holding the text (--per=json)")
  parser.add_argument("--validation_every", type=int, default=20)
  parser.add_argument("--bad_files", default="stop", choices=("stop", "skip"))
  parser.add_argument("--overwrite", action="store_true")
  parser.add_argument("--tfds_split", default="train", help="the split of a tfds:<name> input")
  parser.add_argument("--data_dir", default=None, help="the TFDS data_dir of a tfds:<name> input")
  args = parser.parse_args(argv)
  try:
    prepare(args.input, args.tokenizer, args.out, per=args.per, field=args.field,
            validation_every=args.validation_every, bad_files=args.bad_files, overwrite=args.overwrite,
            tfds_split=args.tfds_split, data_dir=args.data_dir)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

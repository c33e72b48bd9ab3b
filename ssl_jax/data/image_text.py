"""Image-caption pairs for the image-text methods (CLIP, SigLIP): the caption tokenizer, captions as token rows, and
a source of pairs whose captions are tokenized as they are read (in Grain's worker processes).

A pair source yields `{"image": uint8 [H, W, 3], "text": int32 [T], "text_segment_ids": int32 [T], "label",
"index"}`: the caption's token ids, optionally after a start-of-text token, closed by the end-of-text token (a
caption longer than `T` is cut so that the end-of-text token stays last), and padded with further end-of-text tokens
("sticky EOS", as big_vision pads SigLIP's captions and Hugging Face's CLIP tokenizer pads OpenAI's); segment id 1
on the caption's tokens and its closing end-of-text token, 0 on the padding.

The image sources with captions are in `ssl_jax.data.sources`: the embedded sets, whose captions are described
below, and webdataset tar shards (`sources.WebDatasetSource`: `{key}.jpg` + `{key}.txt` members, the layout
img2dataset writes), read by random access through an index of the shards built when opened.

Captions of the embedded image sets:
- `emoji` / `emoji_subgroups`: each emoji's Unicode name and its subgroup in words ("thumbs up sign: medium skin tone
  (hand fingers closed)", `sources.emoji_caption`): a name and a category, as alt text has them; the test split holds
  whole near-duplicate clusters, so no test caption is a training caption (the subgroups are shared: zero-shot
  classification among them asks the image tower to place unseen emoji).
- `digits`: a sentence about the digit from 8 templates ("a handwritten seven.", "the number 7, written by hand.",
  ...), the template chosen by the image's place in the data set: a weaker set (10 distinct meanings).
"""

import functools

import numpy as np

START = "<|startoftext|>"
END = "<|endoftext|>"


def train_tokenizer(captions, *, vocab_size: int):
  """A caption tokenizer trained on `captions`: CLIP's kind of byte-level BPE (lower-cased text; every byte in the
  initial alphabet, so nothing is unknown) with the special tokens `<|endoftext|>` (id 0) and `<|startoftext|>` (id
  1). Deterministic: the same captions give the same tokenizer in every process."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.normalizer = normalizers.Lowercase()
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END, START],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator([str(c) for c in captions], trainer)
  return tok


def open_tokenizer(spec: str, train_captions):
  """`bpe:<vocab>`: `train_tokenizer` on `train_captions` (a callable giving them); else a tokenizer.json path."""
  kind, _, size = spec.partition(":")
  if kind == "bpe" and size.isdigit():
    return train_tokenizer(train_captions(), vocab_size=int(size))
  if kind in ("bpe", "wordpiece"):
    raise ValueError(f"config.data.text.tokenizer={spec!r}: captions take 'bpe:<vocab size>' (trained on the training "
                     "captions) or a tokenizer.json path.")
  from ssl_jax.data import text
  return text.load_tokenizer(spec)


def start_id(tokenizer) -> int:
  """The id of the tokenizer's start-of-text token (`<|startoftext|>`, `<s>` or `[CLS]`)."""
  for name in (START, "<s>", "[CLS]"):
    i = tokenizer.token_to_id(name)
    if i is not None:
      return i
  raise ValueError(f"config.data.text.start_token: the caption tokenizer has none of the start tokens {START}, <s>, "
                   "[CLS]; set start_token=False or use a tokenizer that has one.")


def encode_captions(captions, tokenizer, *, length: int, start_token: bool) -> tuple[np.ndarray, np.ndarray]:
  """Captions as fixed-length token rows (module docstring): `(text int32 [N, length], text_segment_ids int32 [N,
  length])`. The end-of-text token is the tokenizer's `<|endoftext|>`, `</s>` or `[SEP]`, the start token its
  `<|startoftext|>`, `<s>` or `[CLS]`."""
  from ssl_jax.data import text
  end = text.end_of_text_id(tokenizer)                      # <|endoftext|> (CLIP's BPE), </s> (SentencePiece), [SEP]
  first = [start_id(tokenizer)] if start_token else []
  room = length - len(first) - 1
  if room < 1:
    raise ValueError(f"config.data.text.length={length} leaves no room for a caption's tokens; use at least "
                     f"{len(first) + 2}.")
  ids = np.full((len(captions), length), end, np.int32)
  segments = np.zeros((len(captions), length), np.int32)
  for row, enc in enumerate(tokenizer.encode_batch([str(c) for c in captions], add_special_tokens=False)):
    tokens = first + enc.ids[:room] + [end]
    ids[row, :len(tokens)] = tokens
    segments[row, :len(tokens)] = 1
  return ids, segments


class PairSource:
  """Image-caption pairs: an image source with a `captions` sequence (str per example), the captions tokenized on
  read (`encode_captions`). Keeps the image source's `num_classes` and `class_names`; `tokenizer` and `vocab_size`
  are the captions' (the trainer saves the tokenizer with the run)."""

  def __init__(self, images, tokenizer, *, length: int, start_token: bool):
    if getattr(images, "captions", None) is None:
      raise ValueError(f"{type(images).__name__} has no captions: image-text data needs a source of image-caption "
                       "pairs (the embedded 'emoji' or 'digits').")
    self.images, self.tokenizer, self.length, self.start_token = images, tokenizer, length, start_token
    self.num_classes = getattr(images, "num_classes", None)
    self.class_names = getattr(images, "class_names", None)
    self.vocab_size = tokenizer.get_vocab_size()

  @property
  def captions(self):
    return self.images.captions

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    if hasattr(self.images, "pair"):             # a source whose bad pairs are replaced together (webdataset)
      example, caption = self.images.pair(i)
    else:
      example, caption = self.images[i], self.images.captions[i]
    ids, segments = encode_captions([caption], self.tokenizer, length=self.length, start_token=self.start_token)
    return dict(example, text=ids[0], text_segment_ids=segments[0])


@functools.cache
def cached_tokenizer(spec: str, name: str, split: str, data_dir: str | None):
  """`open_tokenizer(spec, ...)` on the captions of the source `name` / `split` (`sources.make`), once per process."""
  from ssl_jax.data import sources
  return open_tokenizer(spec, lambda: sources.make(name, split, data_dir=data_dir).captions)

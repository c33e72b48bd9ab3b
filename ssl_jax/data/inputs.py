"""The data of a run as the rest of the code sees it, from `config.data`: the sources, the host streams, what they
yield per example (the input spec), the on-device stage that turns a batch into what the method receives, and the raw
representation that evaluators measure as a baseline. The trainer's init, the dry run and the benchmarks all build
from it; the trainer and the evaluators call it and know nothing of images, text or audio.

Per example the host pipeline (`ssl_jax.data.pipeline`) yields

  images, single-view (`config.data.image.views` empty):  {"image": uint8 [S, S, 3], "label": int32, "index": int32}
  images, multi-view:              {"views": {group: uint8 [count, size, size, 3], ...}, "label", "index"}
  text (`config.data.text`):       {"text": int32 [T], "text_segment_ids": int32 [T], "text_positions": int32 [T],
                                    "index"}  (windows of a token stream: `ssl_jax.data.text.TokenWindows`)
  image-text (both blocks):        {"image": uint8 [S, S, 3], "text": int32 [T], "text_segment_ids": int32 [T],
                                    "label", "index"}  (a caption per image: `ssl_jax.data.image_text`)
  audio (`config.data.audio`):     {"audio": float32 [S], "audio_length": int32, "label", "index"}  (a crop of an
                                    utterance or the whole one zero-padded: `ssl_jax.data.audio`)

with the view groups nested under one key (a group may have any name). The device stage, inside the jitted step,
normalises `image` with the ImageNet mean and std (`ssl_jax.ops.image.normalize`), and augments each view group
photometrically and normalises it (`ssl_jax.ops.augment.augment_views`): a method always receives normalised float32
images, `[B, S, S, 3]` or `[B, count, size, size, 3]` per group; token ids and waveforms pass unchanged (a waveform
is normalised per utterance on the host when `config.data.audio.normalize` says so). Evaluation batches (the centre
view of `image`, the probe's padded `text` examples, the centre `audio` crop, with `label` and `valid`) go through
`eval_stage`, the same normalisation; image-text evaluation batches keep their captions (retrieval reads them).
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.data import audio
from ssl_jax.data import image_text
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.data import text
from ssl_jax.data import transforms
from ssl_jax.ops import audio as audio_ops
from ssl_jax.ops import augment
from ssl_jax.ops import image as image_lib

# What the raw-input baseline of the evaluators is, per modality (`raw_representation`).
# For text the language-model evaluator's baseline is the unigram model (`ssl_jax.evaluators.language`).
RAW_INPUT = {"image": "raw pixels", "text": "bag of tokens (unigram)", "image_text": "raw pixels",
             "audio": "log-mel statistics"}


def modality(data) -> str:
  """"image", "text", "image_text" (both blocks: image-caption pairs) or "audio": the modality of `config.data`."""
  if "audio" in data:
    return "audio"
  if "text" in data:
    return "image_text" if "image" in data else "text"
  return "image"


def _tokenizer_spec(data) -> str:
  """The tokenizer of text `data`: prepared data's own `tokenizer.json`, else `data.text.tokenizer`."""
  if data.name == "prepared" and data.data_dir:
    return os.path.join(data.data_dir, "tokenizer.json")
  return data.text.tokenizer


def open_source(data, split: str, name: str | None = None):
  """The source `name` (default `data.name`) / `split`, with the location and options of `data` (`config.data`).
  Every text source of a run is tokenized by the training data's tokenizer (an embedded probe of a run on prepared
  data too)."""
  kind = modality(data)
  if kind == "audio":
    a = data.audio
    return audio.make(name or data.name, split, data_dir=data.data_dir, sample_rate=a.sample_rate,
                      min_length=a.min_length, bad_audio=a.bad_audio)
  if kind == "text":
    return text.open_text(name or data.name, split, length=data.text.length, tokenizer=_tokenizer_spec(data),
                          data_dir=data.data_dir)
  if kind == "image_text":
    return image_text.PairSource(_image_source(data, split, name), caption_tokenizer(data), length=data.text.length,
                                 start_token=data.text.start_token)
  return _image_source(data, split, name)


def _image_source(data, split: str, name: str | None = None):
  return sources.make(name or data.name, split, data_dir=data.data_dir, image_size=data.image.size,
                      num_examples=data.synthetic_examples, bad_images=data.image.bad_images)


def caption_tokenizer(data):
  """The caption tokenizer of image-text `data`: `data.text.tokenizer` (`bpe:<vocab>` trained on the captions of the
  training split, the same in every process; or a tokenizer.json path), made once per process."""
  return image_text.cached_tokenizer(data.text.tokenizer, data.name, data.train_split, data.data_dir)


def encode_captions(data, captions) -> dict:
  """Captions (e.g. a zero-shot evaluator's prompts) as the image-text data's batches hold them: `{"text": int32 [N,
  T], "text_segment_ids": int32 [N, T]}`."""
  ids, segments = image_text.encode_captions(captions, caption_tokenizer(data), length=data.text.length,
                                             start_token=data.text.start_token)
  return {"text": ids, "text_segment_ids": segments}


def view_groups(data) -> tuple[transforms.ViewGroup, ...]:
  """The host-side view groups of `data.image.views` (a `config.data` block), in name order."""
  return tuple(transforms.ViewGroup(name, g.count, g.size, tuple(g.scale), tuple(g.get("ratio", (3 / 4, 4 / 3))),
                                  g.get("flip", True)) for name, g in sorted(data.image.views.items()))


def example_spec(data) -> dict:
  """One example as the host pipeline yields it: `jax.ShapeDtypeStruct`s without a batch axis."""
  scalar = jax.ShapeDtypeStruct((), np.int32)
  if modality(data) == "audio":
    return {"audio": jax.ShapeDtypeStruct((data.audio.max_length,), np.float32), "audio_length": scalar,
            "label": scalar, "index": scalar}
  window = jax.ShapeDtypeStruct((data.text.length,), np.int32) if "text" in data else None
  if modality(data) == "text":
    return {"text": window, "text_segment_ids": window, "text_positions": window, "index": scalar}
  if modality(data) == "image_text":
    return {"image": jax.ShapeDtypeStruct((data.image.size, data.image.size, 3), np.uint8), "text": window,
            "text_segment_ids": window, "label": scalar, "index": scalar}
  groups = view_groups(data)
  if groups:
    images = {"views": {g.name: jax.ShapeDtypeStruct((g.count, g.size, g.size, 3), np.uint8) for g in groups}}
  else:
    images = {"image": jax.ShapeDtypeStruct((data.image.size, data.image.size, 3), np.uint8)}
  return dict(images, label=scalar, index=scalar)


def batch_spec(data, batch_size: int) -> dict:
  """`example_spec` with a leading batch axis of `batch_size`."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct((batch_size,) + s.shape, s.dtype), example_spec(data))


@dataclasses.dataclass(frozen=True)
class DeviceStage:
  """The on-device stage of training batches, `stage(batch, key) -> batch`: `image` normalised, after the
  photometric recipe `image_recipe` if there is one (`config.data.image.photometric`, key `fold_in(key, 0)`); each
  view group photometrically augmented and normalised, with a key of its own per group (`fold_in(key, i)`, groups in
  name order); other entries unchanged. `random` says whether it draws random numbers (the train step then splits a
  key off the step's key for it; a stage that does not gets none, so a single-view method's random numbers do not
  depend on it)."""
  recipes: tuple[tuple[str, tuple[augment.Photometric, ...]], ...] = ()
  image_recipe: augment.Photometric | None = None

  @property
  def random(self) -> bool:
    return bool(self.recipes) or self.image_recipe is not None

  def __call__(self, batch: dict, key: jax.Array | None = None) -> dict:
    if self.image_recipe is not None:
      image = augment.augment_views(batch["image"][:, None], jax.random.fold_in(key, 0), (self.image_recipe,))
      return dict(eval_stage({k: v for k, v in batch.items() if k != "image"}), image=image[:, 0])
    batch = eval_stage(batch)
    if not self.recipes:
      return batch
    views = {name: augment.augment_views(batch["views"][name], jax.random.fold_in(key, i), rs)
             for i, (name, rs) in enumerate(self.recipes)}
    return dict(batch, views=views)


def eval_stage(batch: dict) -> dict:
  """The on-device stage of evaluation batches: `image` (uint8) normalised to float32; other entries unchanged."""
  return dict(batch, image=image_lib.normalize(batch["image"])) if "image" in batch else batch


def device_stage(data) -> DeviceStage:
  """The `DeviceStage` of a `config.data` block."""
  recipes = []
  if modality(data) in ("text", "audio"):
    return DeviceStage()                # token ids and waveforms reach the method as they are
  for name, g in sorted(data.image.views.items()):
    names = (g.photometric,) if isinstance(g.photometric, str) else tuple(g.photometric)
    recipes.append((name, tuple(augment.recipe(names[i % len(names)]) for i in range(g.count))))
  single = data.image.get("photometric")            # absent from runs saved before it existed
  return DeviceStage(tuple(recipes), augment.recipe(single) if single and not recipes else None)


def method_inputs(data) -> dict:
  """One example as the method receives it (after `device_stage`): `jax.ShapeDtypeStruct`s without a batch axis."""
  out = jax.eval_shape(device_stage(data), batch_spec(data, 1), jax.random.key(0))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), out)


def train_stream(data, source, *, seed: int, global_batch_size: int):
  """The training stream of `data` (`config.data`) over `source`: crops and flips, or the view groups; text windows
  as they are; random crops of utterances (`pipeline.train_dataset`)."""
  if modality(data) == "audio":
    return pipeline.train_dataset(source, seed=seed, global_batch_size=global_batch_size,
                                  transform=audio.AudioCrop(data.audio.max_length, data.audio.normalize),
                                  num_workers=data.num_workers, prefetch=data.prefetch)
  if modality(data) == "text":
    return pipeline.train_dataset(source, seed=seed, global_batch_size=global_batch_size, transform=None,
                                  num_workers=data.num_workers, prefetch=data.prefetch)
  image = data.image
  transform = transforms.train_transform(
      image_size=image.size, crop_scale=image.crop_scale, crop_ratio=image.crop_ratio, flip=image.flip,
      rand_augment=image.rand_augment, views=view_groups(data))
  return pipeline.train_dataset(source, seed=seed, global_batch_size=global_batch_size, transform=transform,
                                num_workers=data.num_workers, prefetch=data.prefetch)


def eval_stream(data, source, *, global_batch_size: int, augment_seed: int | None = None):
  """One ordered pass over `source` in evaluation batches (`pipeline.eval_dataset`): `(IterDataset, batches)`.

  The evaluation view (`data.image.size`, the centre `eval_crop_pct` of the resized image), or with `augment_seed` a
  random training view of each image (the crop scale, ratio and flip of `data.image`), seeded: the report's two
  augmented views. Text examples have no augmented views: `augment_seed` gives the same examples; an utterance's
  is a random crop.
  """
  if modality(data) == "audio":
    a = data.audio
    transform = (audio.AudioEvalView(a.max_length, a.normalize) if augment_seed is None
                 else audio.AudioCrop(a.max_length, a.normalize))
    return pipeline.eval_dataset(source, global_batch_size=global_batch_size, transform=transform,
                                 seed=augment_seed or 0)
  if modality(data) == "text":
    return pipeline.eval_dataset(source, global_batch_size=global_batch_size, transform=None)
  image = data.image
  if augment_seed is None:
    transform = transforms.EvalView(image.size, image.eval_crop_pct)
  else:
    transform = transforms.TrainAugment(image.size, tuple(image.crop_scale), tuple(image.crop_ratio), image.flip)
  return pipeline.eval_dataset(source, global_batch_size=global_batch_size, transform=transform,
                               seed=augment_seed or 0)


def tokenizer_name(data) -> str:
  """Where the tokenizer of text `data` comes from, for messages: a file, or the vocabulary trained in memory."""
  spec = _tokenizer_spec(data)
  return spec if spec.endswith(".json") else f"config.data.text.tokenizer={spec!r} on {data.name!r}"


def tokenizer(data):
  """The `tokenizers.Tokenizer` of text or image-text `data` (`config.data`), None for other data."""
  if modality(data) == "image_text":
    return caption_tokenizer(data)
  if modality(data) != "text":
    return None
  return open_source(data, data.train_split).tokenizer


def token_counts(data, *, max_tokens: int = 2 ** 24) -> np.ndarray:
  """How often each token id occurs in the training stream of text `data` (`config.data`): int64 `[vocabulary]`,
  counted over the whole stream or, beyond `max_tokens`, over `max_tokens` tokens in 64 evenly spaced runs (the
  unigram baseline of the language-model evaluator)."""
  source = open_source(data, data.train_split)
  tokens = source.tokens
  if len(tokens) > max_tokens:
    run = max_tokens // 64
    tokens = np.concatenate([tokens[s:s + run] for s in np.linspace(0, len(tokens) - run, 64).astype(np.int64)])
  return np.bincount(np.asarray(tokens, np.int64), minlength=source.vocab_size)


def raw_representation(batch: dict, *, vocab_size: int | None = None, sample_rate: int | None = None) -> dict:
  """The raw input as a representation, for the evaluators' baseline column: `{"image": float32 [B, H * W * 3]}`, the
  normalised pixels of the evaluation view (`eval_stage`'s output), flattened; `{"text": float32 [B, V]}`, the
  bag of tokens (each token id's frequency among the example's tokens, padding left out); or `{"audio": float32 [B,
  80]}`, the mean and standard deviation of 40 log mel bands over the utterance (`ssl_jax.ops.audio`). Image-text
  batches: the image's pixels."""
  if "audio" in batch:
    return {"audio": audio_ops.log_mel_statistics(batch["audio"], batch["audio_length"], sample_rate=sample_rate)}
  if "text" in batch and "image" not in batch:
    tokens, real = batch["text"], (batch["text_segment_ids"] > 0).astype(jnp.float32)
    counts = jax.vmap(lambda t, w: jnp.zeros((vocab_size,), jnp.float32).at[t].add(w))(tokens, real)
    return {"text": counts / jnp.maximum(counts.sum(-1, keepdims=True), 1.0)}
  images = batch["image"]
  return {"image": jnp.reshape(images, (images.shape[0], -1)).astype(jnp.float32)}

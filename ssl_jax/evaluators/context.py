"""What every evaluator is given: `Context`, the representation under evaluation and the labelled evaluation data.

An evaluator is a function `run(context, *, name, **arguments) -> {metric: value}` (`ssl_jax.evaluators.EVALUATORS`).
The trainer builds one context per column of its evaluation table (the trained state, the same model at random
initialisation, the raw input) and hands it to every configured evaluator; the features of a split are computed once
per context and shared by all of them (kNN, linear probes and few-shot read the same pass). An evaluator needs no
config, no data pipeline and no knowledge of the modality: batches come from `context.batches`, features from
`context.features`, and a new evaluator (zero-shot, retrieval) is a function and an `EVALUATORS` entry.
"""

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import sharding

# Labelled evaluation splits: "train" (the kNN bank, the probes' training set) and "test"; `batches` also gives
# "pretext", the held-out split of the pretraining data (unlabelled: `config.eval.pretext_split`).
SPLITS = ("train", "test")
PRETEXT = "pretext"


@dataclasses.dataclass
class Context:
  """The representation under evaluation and the data to evaluate it on.

  Attributes:
    represent: a global evaluation batch -> `{feature: float32 [B, D]}` (jitted; the device stage already inside).
    batches: `batches(split, augment_seed=None)` -> global evaluation batches of `split` (one of `SPLITS`), each
      with "label" and "valid" (0 on padding) besides the inputs, or of `PRETEXT` (no "label"); with `augment_seed` a random training view of each
      example instead of the evaluation view, seeded (the report's two views).
    mesh: the device mesh (kNN shards its bank over it).
    num_classes: classes of the labels.
    feature_names: the names of the run's features, which decide the metric names (`per_feature`); default: those
      `represent` gives. The random-init and raw-input contexts take the trained run's, so their columns line up.
    class_names: the labels' names, where the data set has them.
    predict: a global batch -> `[B, C]` logits of a method that classifies, else None.
    reconstruct: `(batch, key) -> (input, masked, reconstructed)` uint8 pictures of a method that reconstructs, else None.
    pictures: the name of `reconstruct`'s picture and its columns' titles (`Method.pictures`).
    token_predictions: `(batch, key)` -> the method's `token_predictions` of a "pretext" batch (the raw-input
      context: the unigram model's), for a method that predicts tokens, else None.
    embed: a global batch -> `{"image": [B, E], "text": [B, E]}`, the normalised joint embeddings of a method that
      embeds image-caption pairs (CLIP, SigLIP; `Method.embed`), else None.
    embed_texts: texts (str) -> their normalised joint embeddings `[N, E]` (zero-shot prompts), with `embed`.
    picture: `picture(key, array)` saves a uint8 `[H, W, 3]` picture of the report (PNG and TensorBoard), or None.
    title: a caption for pictures (the method and step).
  """
  represent: Callable[[dict], dict[str, jax.Array]]
  batches: Callable[..., Iterable[dict]]
  mesh: jax.sharding.Mesh | None
  num_classes: int | None
  feature_names: tuple[str, ...] | None = None
  class_names: tuple[str, ...] | None = None
  predict: Callable[[dict], jax.Array] | None = None
  reconstruct: Callable[..., Any] | None = None
  pictures: tuple[str, tuple[str, ...]] = ("reconstructions", ("input", "masked", "reconstruction"))
  token_predictions: Callable[..., dict] | None = None
  embed: Callable[[dict], dict] | None = None
  embed_texts: Callable[[list[str]], np.ndarray] | None = None
  picture: Callable[[str, np.ndarray], None] | None = None
  title: str = ""
  _cache: dict = dataclasses.field(default_factory=dict, repr=False)

  def features(self, split: str, augment_seed: int | None = None) -> tuple[dict[str, jax.Array], jax.Array]:
    """`({feature: [N', D]}, labels [N'])` of a whole split (N' padded to whole batches; label -1 on padding),
    computed on the first call and cached per (split, augment_seed)."""
    if split not in SPLITS:
      raise ValueError(f"evaluation split {split!r} is unknown; use one of {SPLITS}.")
    key = (split, augment_seed)
    if key not in self._cache:
      feats, labels = [], []
      for batch in self.batches(split, augment_seed=augment_seed):
        out = self.represent(batch)
        feats.append({name: out[name] for name in self.names(out)})
        labels.append(jnp.where(batch["valid"] > 0, batch["label"], -1))
      self._cache[key] = ({name: jnp.concatenate([f[name] for f in feats]) for name in feats[0]},
                          jnp.concatenate(labels))
    return self._cache[key]

  def embeddings(self, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`({"image": [N, E], "text": [N, E], "caption": int32 [N, T]}, labels [N])`: the joint embeddings of a whole
    split's image-caption pairs and the captions' token ids, padding left out (host arrays), computed on the first
    call and cached."""
    if split not in SPLITS:
      raise ValueError(f"evaluation split {split!r} is unknown; use one of {SPLITS}.")
    key = ("embeddings", split)
    if key not in self._cache:
      parts = []
      for batch in self.batches(split):
        out = self.embed(batch)
        valid = sharding.to_host(batch["valid"]) > 0
        parts.append(({"image": sharding.to_host(out["image"])[valid], "text": sharding.to_host(out["text"])[valid],
                       "caption": sharding.to_host(batch["text"])[valid]}, sharding.to_host(batch["label"])[valid]))
      self._cache[key] = ({k: np.concatenate([p[k] for p, _ in parts]) for k in parts[0][0]},
                          np.concatenate([y for _, y in parts]))
    return self._cache[key]

  def names(self, features: dict) -> tuple[str, ...]:
    """The features of `features` that this context evaluates: `feature_names` where set (those present)."""
    if self.feature_names is None:
      return tuple(features)
    return tuple(name for name in self.feature_names if name in features)

  def per_feature(self, evaluate: Callable[..., dict[str, float]]) -> dict[str, float]:
    """`evaluate((train_features, train_labels), (test_features, test_labels))` on each feature, as one dict: a run
    with one feature keeps the metric names (`eval/knn_top1`); with several, each is `eval/<feature>/knn_top1`."""
    (train, train_labels), (test, test_labels) = self.features("train"), self.features("test")
    return name_per_feature({name: evaluate((train[name], train_labels), (test[name], test_labels)) for name in train},
                            several=len(self.feature_names or train) > 1)


def name_per_feature(results_of_feature: dict[str, dict[str, float]], *, several: bool) -> dict[str, float]:
  """Per-feature results as one dict: unchanged names for a run with one feature; `eval/<feature>/<metric>` (and
  `report/<feature>/...` alike) for a run with several."""
  if not several:
    return {k: v for results in results_of_feature.values() for k, v in results.items()}
  return {k.replace("/", f"/{name}/", 1): v for name, results in results_of_feature.items() for k, v in results.items()}

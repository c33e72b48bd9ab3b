"""What the language-model methods share (GPT, BERT): the text transformer built from `config.model`, its
initialisation, the pooled representation and the released encoder."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods import contract
from ssl_jax.models import backbone
from ssl_jax.models import text


def text_model(model: dict, run: contract.RunInfo, style: str) -> tuple[text.TextTransformer, dict]:
  """The `TextTransformer` of `config.model` (`arch` "text"; the vocabulary the data's unless `vocab_size` is set,
  the positions the window's unless `max_length` is) and its frozen spec for `backbone.create`."""
  if "text" not in run.inputs:
    raise ValueError(f"a {style} model reads text; the data yields {sorted(run.inputs)} (use "
                     "config_lib.text_data(...)).")
  length = run.inputs["text"].shape[0]
  spec = {k: v for k, v in dict(model).items() if v is not None}
  if spec.pop("arch", "text") != "text":
    raise ValueError(f"a {style} model is config.model.arch='text', not {model.get('arch')!r}.")
  vocab = spec.get("vocab_size") or run.vocab_size
  if vocab is None:
    raise ValueError("set config.model.vocab_size: the data does not say its vocabulary.")
  if run.vocab_size is not None and vocab < run.vocab_size:
    raise ValueError(f"config.model.vocab_size={vocab} is smaller than the tokenizer's {run.vocab_size} tokens.")
  if spec.get("style", style) != style:
    raise ValueError(f"config.model.style={spec['style']!r}, but this method trains a {style!r} model.")
  spec = dict(spec, arch="text", style=style, vocab_size=vocab, max_length=spec.get("max_length") or length)
  if length > spec["max_length"]:
    raise ValueError(f"config.data.text.length={length} exceeds config.model.max_length={spec['max_length']}.")
  return backbone.create(**spec), contract.freeze(spec)


def score_tokens(logits: jax.Array, targets: jax.Array, weight: jax.Array) -> dict[str, jax.Array]:
  """Per-position scores of predicting `targets` `[B, L]` from `logits` `[B, L, V]` where `weight` `[B, L]` is 1:
  the `token_predictions` of the contract (`target`, `weight`, `log_prob`, `hit`)."""
  weight = weight.astype(jnp.float32)
  return {"target": targets, "weight": weight, "log_prob": -losses.token_cross_entropy(logits, targets),
          "hit": jnp.argmax(logits, -1) == targets}


def mean_scores(scores: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
  """(mean cross-entropy, accuracy) over every predicted token of a batch's `score_tokens`."""
  count = jnp.maximum(scores["weight"].sum(), 1.0)
  return (-jnp.sum(scores["log_prob"] * scores["weight"]) / count,
          jnp.sum(scores["hit"] * scores["weight"]) / count)


@dataclasses.dataclass(frozen=True)
class LanguageMethod(contract.Method):
  """Init, representation, release and reloading of a `TextTransformer` trained on windows of text; subclasses add
  the loss and their `token_predictions`. The representation is the mean of the final hidden states over the first
  segment of each example."""
  model: text.TextTransformer
  model_spec: tuple
  predicts_tokens = True
  accepts_pretrained_encoder = True      # `config.init_from` a run of the same model: BERT's 512-token phase

  def init(self, rng, batch):
    params = self.model.init(rng, batch["text"], positions=batch["text_positions"],
                             segment_ids=batch["text_segment_ids"])["params"]
    return params, {}

  def hidden(self, params, batch, rng=None):
    """Final hidden states `[B, T, D]` of the batch (with dropout when `rng` is given)."""
    out = self.model.apply({"params": params}, batch["text"], positions=batch["text_positions"],
                           segment_ids=batch["text_segment_ids"], train=rng is not None,
                           rngs=None if rng is None else {"dropout": rng})
    return out["tokens"]

  def logits(self, params, hidden):
    return self.model.apply({"params": params}, hidden, method=text.TextTransformer.logits)

  def represent(self, params, extra, batch):
    del extra
    return {"text": backbone.encode(self.model, {"params": params}, batch)["pooled"]}

  def encoders(self, params, extra):
    del extra
    return {"text": (dict(self.model_spec), {"params": nn.unbox(params)})}

  def load_encoders(self, params, extra, variables):
    """The whole language model (with its output layer) from `{"text": variables}`; the parameters are the same."""
    del params
    return variables["text"]["params"], extra

"""The contract between the trainer and a method, and what the trainer tells every method about the run.

A method is a frozen dataclass (hashable: the jitted step closes over it) that subclasses `Method`, built by its
classmethod `create(*, model, run, **hyperparameters)` with keywords only. Its functions are pure: `params` is the
pytree the optimizer trains, `extra` the state it does not (momentum teachers, centres, BatchNorm statistics).
`Method` declares every hook the trainer, the evaluators, `init_from` and export call, with a default wherever a
method may leave one out, so nothing is discovered with `hasattr`: a hook a method does not have says so in its
error, and a capability the trainer must know before calling (a classifier's predictions, MAE's reconstructions,
starting from a pretrained encoder) is a class attribute.

Feature and tower names are modality names: an image encoder's features and its released encoder are both under
`"image"`; a two-tower method (CLIP) returns `"image"` and `"text"`.
"""

import abc
import dataclasses
from typing import Any, ClassVar

import jax


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """Facts of the run a method may need for its schedules and inputs.

  Attributes:
    inputs: one training example as the method receives it (`ssl_jax.data.inputs.method_inputs`): a tree of
      `jax.ShapeDtypeStruct`s without the batch axis, e.g. `{"image": float32 (H, W, 3), "label", "index"}` or
      `{"views": {group: float32 (count, size, size, 3)}, "label", "index"}`.
    total_steps: optimizer steps of the whole run (for momentum and temperature schedules).
    steps_per_epoch: optimizer steps per epoch (for epoch-based schedule hyperparameters of the papers).
    num_classes: labels of the training split, when it has them (for an online linear probe); None otherwise.
    vocab_size: the token ids of text data (its tokenizer's vocabulary); None for other data.
    special_tokens: the tokenizer's special tokens, `{text: id}` (e.g. "[MASK]"), where the data was read; None
      otherwise (a dry run of data not on this machine).
    batch_size: the global batch each `loss` call sees (`config.batch_size / config.grad_accum_steps`), where known
      (None: a method built to read a saved run's encoders).
  """
  inputs: dict
  total_steps: int = 1
  steps_per_epoch: int = 1
  num_classes: int | None = None
  vocab_size: int | None = None
  special_tokens: dict | None = None
  batch_size: int | None = None

  def image_shape(self) -> tuple[int, ...]:
    """The shape of a single-view example's `image`."""
    if "image" not in self.inputs:
      raise ValueError(f"this method needs single-view images (config.data.image.views empty); the data yields "
                       f"{sorted(self.inputs)}.")
    return tuple(self.inputs["image"].shape)

  def view_count(self, name: str) -> int:
    """The number of views in view group `name` of `config.data.image.views`."""
    groups = self.inputs.get("views", {})
    if name not in groups:
      raise ValueError(f"this method needs the view group {name!r} in config.data.image.views; the config has "
                       f"{sorted(groups) or 'none'}.")
    return groups[name].shape[0]


Params = Any       # a pytree of arrays (logically boxed as `init` returns it)
Extra = Any        # a pytree of arrays, or {}
Batch = dict       # modality-named arrays with a leading global batch axis (see ssl_jax.methods)


class Method(abc.ABC):
  """What every method implements. Required: `init`, `loss`, `represent`, `encoders`; the rest has defaults.

  Class attributes (capabilities the trainer reads before it calls the matching hook):
    accepts_pretrained_encoder: `config.init_from` may start this method from a pretrained encoder; the trainer
      then calls `load_encoders`.
    predicts: `predict` gives class logits; the trainer reports top-1 / top-5 accuracy from them.
    reconstructs: `reconstruct` draws the method's inputs and outputs for the end-of-run report, as the picture
      `pictures[0]` with the columns titled `pictures[1]` (MAE's reconstructions; I-JEPA's context and targets).
    predicts_tokens: `token_predictions` scores the method's own token prediction (a language model's next or masked
      tokens) on held-out data; the `language_model` evaluator reports loss, perplexity and accuracy from it.
    embeds_pairs: `embed` maps images and texts into one joint space (CLIP, SigLIP); the zero-shot and retrieval
      evaluators compare its embeddings.
    reads_runs: the hyperparameters whose values are workdirs of other runs the method reads (BEiT's
      `tokenizer_workdir`: a trained tokenizer). Where one is set, the trainer opens that run's newest checkpoint
      before anything is written, passes `create` the run's method as `runs={hyperparameter: method}`, and at a fresh
      start hands the run's `(params, extra)` to `load_runs`; the method keeps what it needs in its own state, so a
      resumed run reads only its own checkpoint.
  """
  accepts_pretrained_encoder: ClassVar[bool] = False
  reads_runs: ClassVar[tuple[str, ...]] = ()
  predicts: ClassVar[bool] = False
  reconstructs: ClassVar[bool] = False
  pictures: ClassVar[tuple[str, tuple[str, ...]]] = ("reconstructions", ("input", "masked", "reconstruction"))
  predicts_tokens: ClassVar[bool] = False
  embeds_pairs: ClassVar[bool] = False

  @classmethod
  @abc.abstractmethod
  def create(cls, *, model: dict, run: RunInfo, **hyperparameters) -> "Method":
    """The method for encoder keywords `model` (`config.model`), the run's facts and `config.method`'s fields."""

  @abc.abstractmethod
  def init(self, rng: jax.Array, batch: Batch) -> tuple[Params, Extra]:
    """Initial `(params, extra)` from an example batch (its shapes only matter); params may be logically boxed."""

  @abc.abstractmethod
  def loss(self, params: Params, extra: Extra, batch: Batch, rng: jax.Array,
           step: jax.Array) -> tuple[jax.Array, tuple[dict, Extra]]:
    """`(scalar loss, (metrics, new extra))` on the global batch; pure, differentiated with respect to `params`."""

  def after_update(self, params: Params, extra: Extra, step: jax.Array) -> Extra:
    """`extra` after the optimizer updated `params` at `step` (e.g. an EMA teacher); by default unchanged."""
    del params, step
    return extra

  def project_params(self, params: Params) -> Params:
    """`params` as the optimizer left them, projected back onto the set the method keeps them in (SwAV's prototypes
    at unit norm, which its official loop restores before every forward pass); by default unchanged. Applied after
    every update; `init` returns parameters already in the set."""
    return params

  @abc.abstractmethod
  def represent(self, params: Params, extra: Extra, batch: Batch) -> dict[str, jax.Array]:
    """Evaluation features `{feature name: float32 [B, D]}` of an evaluation batch (no augmentation, no dropout)."""

  @abc.abstractmethod
  def encoders(self, params: Params, extra: Extra) -> dict[str, tuple[dict, Any]]:
    """The encoders the method releases, `{tower: (model spec, variables)}`: `ssl_jax.models.backbone.create(**spec)`
    applied to `variables` gives the tower's features (for `init_from`, probing, fine-tuning and export)."""

  @property
  def frozen_until(self) -> tuple[tuple[str, int], ...]:
    """`(parameter path regex, n)` pairs the optimizer leaves out of its first n updates (`ssl_jax.optim.make`)."""
    return ()

  @property
  def zero_lr_until(self) -> tuple[tuple[str, int], ...]:
    """`(parameter path regex, n)` pairs whose learning rate is 0 for the first n updates while their optimizer
    state accumulates (`ssl_jax.optim.zero_lr_until`; DINOv2's last layer)."""
    return ()

  def load_encoders(self, params: Params, extra: Extra, variables: dict[str, Any]) -> tuple[Params, Extra]:
    """`(params, extra)` with the towers of `variables` (`{tower: variables}`, structured as `encoders` gives them)
    put in place. Needed when `accepts_pretrained_encoder`."""
    raise NotImplementedError(f"{type(self).__name__} cannot start from a pretrained encoder.")

  def load_runs(self, params: Params, extra: Extra, states: dict[str, tuple[Any, Any]]) -> tuple[Params, Extra]:
    """`(params, extra)` with what the method takes from other runs put in place: `states` maps each set
    hyperparameter of `reads_runs` to that run's `(params, extra)`. Needed when `reads_runs`."""
    raise NotImplementedError(f"{type(self).__name__} reads no other run.")

  def predict(self, params: Params, extra: Extra, batch: Batch) -> jax.Array:
    """Class logits `[B, C]` of an evaluation batch. Needed when `predicts`."""
    raise NotImplementedError(f"{type(self).__name__} does not predict classes.")

  def reconstruct(self, params: Params, extra: Extra, batch: Batch,
                  rng: jax.Array) -> tuple[jax.Array, ...]:
    """Pictures of the method at work on an evaluation batch, one uint8 `[B, H, W, 3]` array per column titled in
    `pictures` (by default: input, input as the model sees it, output), drawn as rows of the report. Needed when
    `reconstructs`."""
    raise NotImplementedError(f"{type(self).__name__} does not reconstruct its input.")

  def token_predictions(self, params: Params, extra: Extra, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
    """The method's token predictions on an evaluation batch, without dropout: `{"target": int32 [B, L] (the token
    to predict), "weight": float32 [B, L] (1 where a token is predicted, else 0), "log_prob": float32 [B, L] (the
    log-probability of the target), "hit": bool [B, L] (the most probable token is the target)}`; `rng` draws what
    the pretext task draws (BERT's masks), the same key giving the same task to every model. Needed when
    `predicts_tokens`."""
    raise NotImplementedError(f"{type(self).__name__} does not predict tokens.")

  def embed(self, params: Params, extra: Extra, batch: Batch) -> dict[str, jax.Array]:
    """L2-normalised embeddings in the joint image-text space of what an evaluation batch holds: `{"image": float32
    [B, E]}` for its `image`, `{"text": float32 [B, E]}` for its `text` (with `text_segment_ids`), both for a
    batch of pairs. Needed when `embeds_pairs`."""
    raise NotImplementedError(f"{type(self).__name__} has no joint image-text embedding.")

  def health_warnings(self, metrics: dict) -> tuple[str, ...]:
    """Warnings about the run's health from the metrics of a log step (host floats, as `loss` returned them), printed
    by the trainer with the step (wav2vec 2.0's codebook collapse); by default none."""
    del metrics
    return ()

  @property
  def unpredicted_token_ids(self) -> tuple[int, ...]:
    """Token ids that `token_predictions` never has as a target (BERT's special tokens), which the unigram baseline
    leaves out."""
    return ()


def freeze(spec: dict) -> tuple:
  """A hashable form of a keyword dict (lists become tuples), for frozen method dataclasses; `dict(...)` undoes it."""
  fix = lambda v: tuple(fix(x) for x in v) if isinstance(v, (list, tuple)) else v
  return tuple(sorted((k, fix(v)) for k, v in spec.items()))

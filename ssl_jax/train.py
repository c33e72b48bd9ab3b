"""The one trainer, for every method: config -> mesh -> data -> method -> shapes -> shardings -> step -> resume ->
loop -> evaluate. It knows nothing of any method beyond the contract in `ssl_jax.methods`."""

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from jax.experimental import multihost_utils

from ssl_jax import checkpoint
from ssl_jax import config as config_lib
from ssl_jax import evaluators
from ssl_jax import methods
from ssl_jax import metrics
from ssl_jax import optim
from ssl_jax.runtime import preemption
from ssl_jax import pretrained
from ssl_jax import sharding
from ssl_jax.data import inputs
from ssl_jax.data import pipeline
from ssl_jax.data import text as text_lib
from ssl_jax.evaluators import report as report_lib
from ssl_jax.methods import contract
from ssl_jax.runtime import workdir as workdir_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # number of optimizer updates applied
  params: dict
  opt_state: optax.OptState
  extra: dict              # method state that is not trained by the optimizer (teachers, centres, queues)
  rng: jax.Array           # raw key data; step s uses fold_in(rng, s)
  health: dict             # non-finite bookkeeping: skipped, streak, worst_streak, first_bad (-1: none yet)


def _initial_health():
  zero = jnp.zeros((), jnp.int32)
  return dict(skipped=zero, streak=zero, worst_streak=zero, first_bad=zero - 1)


def split_micro_batches(batch: dict, k: int) -> dict:
  """`[B, ...]` leaves -> `[k, B/k, ...]`: micro-batch `i` takes examples `i, i + k, i + 2k, ...`.

  With the batch split over devices in contiguous blocks, every device keeps its own examples in every micro-batch
  (each micro-batch stays spread over all devices); nothing moves between devices. Needs `B/k` divisible by the
  number of batch shards.
  """
  return jax.tree.map(lambda x: jnp.moveaxis(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 1, 0), batch)


def loss_and_grads(method, params, extra, batch: dict, rng, step, micro_batches: int = 1):
  """`(loss, (metrics, extra)), grads` of `method.loss` on `batch`, in `micro_batches` sequential pieces.

  With `micro_batches = k > 1` the gradients, loss and metrics are the means over the k micro-batches (a
  `lax.scan`, so only one micro-batch's activations are alive at a time), which is the large batch's gradient for a
  loss that is a mean over independent examples; micro-batch `i` draws its random numbers from `fold_in(rng, i)`.
  The method state (`extra`) is threaded through the micro-batches in order. What this means for methods whose loss
  couples the examples of a batch — contrastive negatives, BatchNorm statistics, DINO's centre, a MoCo queue — is
  in docs/scale-out.md ("Gradient accumulation"): each micro-batch is then a batch of its own.
  """
  grad_fn = jax.value_and_grad(method.loss, has_aux=True)
  if micro_batches == 1:
    return grad_fn(params, extra, batch, rng, step)

  def accumulate(carry, xs):
    i, micro = xs
    grads, extra, loss, metrics_sum = carry
    (l, (m, extra)), g = grad_fn(params, extra, micro, jax.random.fold_in(rng, i), step)
    add = lambda a, b: a + (b / micro_batches).astype(a.dtype)
    return (jax.tree.map(add, grads, g), extra, add(loss, l), jax.tree.map(add, metrics_sum, m)), None

  micro = split_micro_batches(batch, micro_batches)
  first = jax.tree.map(lambda x: x[0], micro)
  (_, (metrics_shape, _)), _ = jax.eval_shape(grad_fn, params, extra, first, rng, step)
  zeros = lambda tree, dtype=None: jax.tree.map(lambda x: jnp.zeros(x.shape, dtype or x.dtype), tree)
  # Metrics are averaged in float32 (a count becomes its mean over the micro-batches).
  init = (zeros(params), extra, jnp.zeros((), jnp.float32), zeros(metrics_shape, jnp.float32))
  (grads, extra, loss, step_metrics), _ = jax.lax.scan(accumulate, init, (jnp.arange(micro_batches), micro))
  return (loss, (step_metrics, extra)), grads


def train_step(method, tx, schedule, stage: inputs.DeviceStage, nonfinite_policy: str,
               poison_steps: tuple[int, ...], micro_batches: int, state: TrainState, batch: dict):
  """One optimizer update on a global batch. Pure; jitted with the state donated.

  `stage` (the input spec's device stage, `ssl_jax.data.inputs`) first turns the batch into what the method
  receives, with a key of its own split from the step's key when it draws random numbers.
  The gradient is computed in `micro_batches` pieces (see `loss_and_grads`).

  An update whose loss or gradients are not finite is not applied (parameters, optimizer and method state stay as
  they were; the step counter and data advance). The gradients are tested through their global norm, which the step
  logs anyway: a NaN or inf anywhere makes it non-finite, and so does a norm beyond float32's range (a gradient no
  update survives either). One reduction instead of an `isfinite` pass per parameter: on the CPU that is 500 fewer
  kernels for XLA to compile in MAE ViT-B's step (benchmarks/README.md). With `nonfinite_policy == "stop"` no update is
  applied after the first such step, so the run can stop at the next host check without ever holding a non-finite
  state.
  `poison_steps` puts a NaN into one element of one gradient at those (1-based) steps: a fault-injection hook for
  tests.
  """
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  if stage.random:
    stage_rng, rng = jax.random.split(rng)
    batch = stage(batch, stage_rng)
  else:
    batch = stage(batch)
  (loss, (step_metrics, extra)), grads = loss_and_grads(method, state.params, state.extra, batch, rng, state.step,
                                                        micro_batches)
  number = state.step + 1
  if poison_steps:                     # one NaN, in one element of one gradient: the check must find it
    poisoned = jnp.isin(number, jnp.asarray(poison_steps))
    leaves, treedef = jax.tree.flatten(grads)
    corner = (0,) * leaves[-1].ndim
    leaves[-1] = leaves[-1].at[corner].set(jnp.where(poisoned, jnp.nan, leaves[-1][corner]))
    grads = jax.tree.unflatten(treedef, leaves)
  h = state.health
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  apply = finite & (h["first_bad"] < 0) if nonfinite_policy == "stop" else finite

  def update():
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = method.project_params(optax.apply_updates(state.params, updates))
    return params, opt_state, method.after_update(params, extra, state.step)

  # The update is computed inside the taken branch, so it is written straight into the step's (donated) output
  # buffers; selecting between precomputed new and old states made XLA copy the whole state every step.
  params, opt_state, extra = jax.lax.cond(apply, update, lambda: (state.params, state.opt_state, state.extra))
  streak = jnp.where(finite, 0, h["streak"] + 1)
  health = dict(skipped=h["skipped"] + (~apply).astype(jnp.int32), streak=streak,
                worst_streak=jnp.maximum(h["worst_streak"], streak),
                first_bad=jnp.where((h["first_bad"] < 0) & ~finite, number, h["first_bad"]))
  step_metrics = dict(step_metrics, loss=loss, grad_norm=grad_norm, lr=schedule(state.step),
                      skipped_steps=health["skipped"])
  return state.replace(step=number, params=params, opt_state=opt_state, extra=extra, health=health), step_metrics


def _initial_state(method, tx, seed: int, run: contract.RunInfo) -> TrainState:
  """The step-0 state, with logically boxed parameters (unboxed by the caller once shardings are known)."""
  init_rng, train_rng = jax.random.split(jax.random.key(seed))
  batch = jax.tree.map(lambda s: jnp.zeros((1,) + s.shape, s.dtype), run.inputs)   # what the method receives
  params, extra = method.init(init_rng, batch)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), extra=extra,
                    rng=jax.random.key_data(train_rng), health=_initial_health())


@dataclasses.dataclass(frozen=True)
class Program:
  """Everything compiled for one config on one mesh."""
  method: Any
  durations: config_lib.Durations
  init: Callable[[], TrainState]                    # jitted; the step-0 state, sharded
  step: Callable[[TrainState, dict], tuple]        # jitted, state donated: (state, batch) -> (state, metrics)
  represent: Callable                               # jitted: (params, extra, eval batch) -> {feature: [B, D]}
  represent_raw: Callable                           # jitted: eval batch -> {modality: [B, D]}, the raw input
  abstract_state: TrainState                        # ShapeDtypeStructs with shardings: the restore target
  mesh: jax.sharding.Mesh
  predict: Callable | None = None                   # jitted: (params, extra, eval batch) -> [B, C] logits
  reconstruct: Callable | None = None               # jitted: (params, extra, eval batch, key) -> uint8 pictures
  token_predictions: Callable | None = None         # jitted: (params, extra, pretext batch, key) -> per-token scores
  embed: Callable | None = None                     # jitted: (params, extra, eval batch) -> joint embeddings
  source: pretrained.Source | pretrained.FileSource | None = None   # config.init_from
  runs: dict | None = None                          # the other runs the method reads, by hyperparameter (`reads_runs`)


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, num_train_examples: int,
          num_classes: int | None = None, vocab_size: int | None = None,
          special_tokens: dict | None = None) -> Program:
  """The method, optimizer, and jitted initialiser, train step and feature extractor of `config` on `mesh` (text:
  `vocab_size` and `special_tokens` of the tokenizer, `contract.RunInfo`)."""
  durations = config_lib.resolve_durations(config, num_train_examples)
  run = contract.RunInfo(inputs=inputs.method_inputs(config.data), total_steps=durations.total,
                         steps_per_epoch=durations.steps_per_epoch, num_classes=num_classes, vocab_size=vocab_size,
                         special_tokens=special_tokens,
                         batch_size=config.batch_size // max(config.grad_accum_steps, 1))
  model, source = config.model.to_dict(), None
  if config.init_from:
    if not methods.get(config.method.name).accepts_pretrained_encoder:
      raise ValueError(f"config.init_from: method {config.method.name!r} cannot start from a pretrained encoder; use "
                       "method 'classify' (configs/finetune_*.py, configs/linear_probe.py, configs/knn.py).")
    source = pretrained.open_source(config.init_from, model)
    model = dict(source.spec, **{k: v for k, v in model.items() if v is not None})
  runs = pretrained.open_runs(config.method)          # before anything is written: a missing run stops here
  method = pretrained.create_method(config.method.name,
                                    {k: v for k, v in config.method.to_dict().items() if k != "name"}, runs,
                                    model=model, run=run)
  scored = [n for n, spec in config.eval.evaluators.items() if spec["type"] == "language_model"]
  if scored and not method.predicts_tokens:
    raise ValueError(f"config.eval.evaluators.{scored[0]}: a 'language_model' evaluator scores a method's token "
                     f"predictions, and {config.method.name!r} makes none; remove it (it is for gpt and bert).")
  o = config.optim
  base_lr = 0.0 if o.base_lr is None else o.base_lr    # unset only in an evaluation-only run (total_steps=0)
  scaled = lambda lr: optim.peak_learning_rate(lr, config.batch_size, o.lr_batch_base, o.lr_scaling)
  schedule = optim.lr_schedule(peak_lr=scaled(base_lr), warmup_steps=durations.warmup, total_steps=durations.total,
                               schedule=o.schedule, min_lr=o.min_lr, init_lr=scaled(o.warmup_base_lr),
                               decay_steps=durations.lr_decay, decay_factor=o.decay_factor)
  tx = optim.make(name=o.name, learning_rate=schedule,
                  weight_decay=optim.weight_decay_schedule(o.weight_decay, o.weight_decay_end, durations.total),
                  b1=o.b1, b2=o.b2, eps=o.eps, momentum=o.momentum, nesterov=o.nesterov,
                  lr_in_momentum=o.lr_in_momentum,
                  grad_clip=o.grad_clip, grad_clip_mode=o.grad_clip_mode, no_decay_names=tuple(o.no_decay),
                  decay_biases_and_norms=o.decay_biases_and_norms, frozen=tuple(o.frozen),
                  frozen_until=method.frozen_until, zero_lr_until_steps=method.zero_lr_until, probe_lr=o.probe_lr,
                  layer_decay=o.layer_decay, lr_multipliers=tuple(tuple(m) for m in o.lr_multipliers),
                  constant_lr=tuple(o.constant_lr), peak_lr=scaled(base_lr))

  # Shapes -> shardings -> a jitted initialiser that creates every array directly in its shard.
  init = functools.partial(_initial_state, method, tx, config.seed, run)
  boxed = jax.eval_shape(init)
  state_sharding = sharding.logical_shardings(boxed, mesh, config.sharding_rules)
  abstract_state = checkpoint.abstract_like(nn.unbox(boxed), state_sharding)
  if config.eval.sample_prompts:
    tower = method.encoders(abstract_state.params, abstract_state.extra).get("text")
    if tower is None or tower[0].get("style") != "gpt2":
      raise ValueError(f"config.eval.sample_prompts: {config.method.name!r} has no causal language model to sample "
                       "from; leave it empty (it is for gpt).")
  if config.sharding_tolerance is not None:
    sharding.check_sufficiently_sharded(abstract_state.params, mesh, config.sharding_tolerance)
  batch_sharding = sharding.batch_sharding(mesh)
  return Program(
      method=method, durations=durations, mesh=mesh,
      init=jax.jit(lambda: nn.unbox(init()), out_shardings=state_sharding),
      step=jax.jit(functools.partial(train_step, method, tx, schedule, inputs.device_stage(config.data),
                                     config.nonfinite_policy,
                                     tuple(config.debug.nonfinite_at_steps), config.grad_accum_steps),
                   in_shardings=(state_sharding, batch_sharding),
                   out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0),
      represent=jax.jit(lambda params, extra, batch: method.represent(params, extra, inputs.eval_stage(batch)),
                        out_shardings=batch_sharding),
      represent_raw=jax.jit(lambda batch: inputs.raw_representation(
          inputs.eval_stage(batch), vocab_size=vocab_size,
          sample_rate=config.data.audio.sample_rate if "audio" in config.data else None), out_shardings=batch_sharding),
      predict=jax.jit(lambda params, extra, batch: method.predict(params, extra, inputs.eval_stage(batch)),
                      out_shardings=batch_sharding) if method.predicts else None,
      reconstruct=jax.jit(lambda params, extra, batch, key: method.reconstruct(params, extra,
                                                                              inputs.eval_stage(batch), key))
      if method.reconstructs else None,
      token_predictions=jax.jit(lambda params, extra, batch, key: method.token_predictions(
          params, extra, inputs.eval_stage(batch), key), out_shardings=batch_sharding)
      if method.predicts_tokens else None,
      embed=jax.jit(lambda params, extra, batch: method.embed(params, extra, inputs.eval_stage(batch)),
                    out_shardings=batch_sharding) if method.embeds_pairs else None,
      abstract_state=abstract_state, source=source, runs=runs)


# The program of this process's last run that started training, and what it was built from (`_program_key`): a later
# run of the same experiment in this process (a notebook cell run again, a resumed run, a test's faults) traces and
# compiles nothing again.
_last_program: list = [None, None]


def _program_key(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *build_args) -> tuple | None:
  """What `build(config, mesh, *build_args)` depends on, to compare with `_last_program`'s; None where the program
  must be built anew: a run that starts from a pretrained encoder (`init_from`) reads it from disk, and it may have
  changed since. (A method that reads other runs, `Method.reads_runs`, is never remembered.)

  The evaluation settings besides the evaluators and the sampling prompts (splits, batch size, baselines, report)
  are left out: the jitted functions take the evaluation batches' shapes as they come."""
  if config.init_from:
    return None
  settings = config.to_dict()
  settings["eval"] = {k: settings["eval"][k] for k in ("evaluators", "sample_prompts")}
  return json.dumps(settings, sort_keys=True, default=repr), mesh, build_args


def check_batch_split(config, mesh: jax.sharding.Mesh) -> None:
  """Raises ValueError unless the train and eval batches (and each micro-batch) split evenly over the batch shards."""
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  for key in ("batch_size", "eval.batch_size"):
    value = config[key] if key == "batch_size" else config.eval.batch_size
    if value % shards:
      raise ValueError(f"config.{key}={value} is not divisible by the {shards} batch shards of the mesh "
                       f"{dict(mesh.shape)}; use a multiple of {shards}.")
  if config.batch_size % (shards * config.grad_accum_steps):
    raise ValueError(f"config.batch_size={config.batch_size} in config.grad_accum_steps={config.grad_accum_steps} "
                     f"micro-batches does not split evenly over the {shards} batch shards of the mesh; use a batch "
                     f"size that is a multiple of {shards * config.grad_accum_steps}.")


def load_pretrained(program: Program, state: TrainState) -> TrainState:
  """`state` with its encoder replaced by `program.source`'s (config.init_from), placed in the state's shardings."""
  tower = program.source.tower
  _, target = program.method.encoders(state.params, state.extra)[tower]
  merged, report = pretrained.merge(target, program.source.variables())
  place = lambda value, like: like if isinstance(value, jax.Array) else jax.make_array_from_callback(
      like.shape, like.sharding, lambda index: value[index])
  merged = jax.tree.map(place, merged, target)
  params, extra = program.method.load_encoders(state.params, state.extra, {tower: merged})
  metrics.say(f"init_from {program.source.label}: {report.summary()}")
  return state.replace(params=params, extra=extra)


def load_runs(program: Program, state: TrainState) -> TrainState:
  """`state` with what its method takes from the other runs it reads (`program.runs`, `Method.load_runs`), placed in
  the state's shardings."""
  states = {name: source.state() for name, source in program.runs.items()}
  params, extra = program.method.load_runs(state.params, state.extra, states)
  place = lambda value, like: like if value is like else jax.make_array_from_callback(
      like.shape, like.sharding, lambda index: np.asarray(value, like.dtype)[index])
  params = jax.tree.map(place, params, state.params)
  extra = jax.tree.map(place, extra, state.extra)
  for name, source in program.runs.items():
    metrics.say(f"method.{name}: read {source.label}")
  return state.replace(params=params, extra=extra)


def eval_batches(program: Program, config, eval_sources: dict):
  """`batches(split, augment_seed=None)` of an `evaluators.Context`: the global evaluation batches of
  `eval_sources[split]` (`inputs.eval_stream`)."""
  batch_sharding = sharding.batch_sharding(program.mesh)

  def batches(split: str, augment_seed: int | None = None):
    ds, _ = inputs.eval_stream(config.data, eval_sources[split], global_batch_size=config.eval.batch_size,
                               augment_seed=augment_seed)
    for local in ds:
      yield pipeline.to_global(local, batch_sharding)
  return batches


def _embed_texts(program: Program, state, config, texts: list[str]) -> np.ndarray:
  """The joint embeddings `[N, E]` of `texts` (tokenized as the run's captions), in evaluation batches."""
  tokens = inputs.encode_captions(config.data, texts)
  size, n = config.eval.batch_size, len(texts)
  padded = {k: np.concatenate([v, np.repeat(v[-1:], -n % size, axis=0)]) for k, v in tokens.items()}
  batch_sharding = sharding.batch_sharding(program.mesh)
  out = []
  for start in range(0, len(padded["text"]), size):
    batch = {k: jax.make_array_from_callback((size,) + v.shape[1:], batch_sharding,
                                             lambda index, v=v[start:start + size]: v[index])
             for k, v in padded.items()}
    out.append(sharding.to_host(program.embed(state.params, state.extra, batch)["text"]))
  return np.concatenate(out)[:n]


def _model_inputs(batch: dict) -> dict:
  """An evaluation batch without its labels: what `represent` / `predict` / `reconstruct` may read."""
  return {k: v for k, v in batch.items() if k not in ("label", "valid")}


def eval_context(program: Program, state: TrainState, config, eval_sources: dict, *, raw: bool = False,
                 feature_names: tuple[str, ...] | None = None, picture=None) -> evaluators.Context:
  """The `evaluators.Context` of `state`'s representation (or with `raw` of the raw input: its token predictions
  those of the unigram model of the training data) on `eval_sources`."""
  p, e = state.params, state.extra
  method = program.method
  trained = not raw and program.durations.total > 0         # an untrained head predicts nothing
  token_predictions = None
  if method.predicts_tokens:
    token_predictions = lambda b, key: program.token_predictions(p, e, _model_inputs(b), key)
    if raw:
      log_probs = evaluators.language.unigram_log_probs(
          inputs.token_counts(config.data), excluded=method.unpredicted_token_ids)
      token_predictions = lambda b, key, model=token_predictions: evaluators.language.unigram_predictions(
          model(b, key), jnp.asarray(log_probs))
  return evaluators.Context(
      represent=(lambda b: program.represent_raw(_model_inputs(b))) if raw else (
          lambda b: program.represent(p, e, _model_inputs(b))),
      batches=eval_batches(program, config, eval_sources), mesh=program.mesh,
      num_classes=getattr(eval_sources["train"], "num_classes", None), feature_names=feature_names,
      class_names=getattr(eval_sources["train"], "class_names", None),
      predict=(lambda b: program.predict(p, e, _model_inputs(b))) if trained and method.predicts else None,
      reconstruct=(lambda b, key: program.reconstruct(p, e, _model_inputs(b), key)) if (
          not raw and method.reconstructs) else None,
      pictures=method.pictures, token_predictions=token_predictions, picture=picture,
      embed=(lambda b: program.embed(p, e, _model_inputs(b))) if not raw and method.embeds_pairs else None,
      embed_texts=functools.partial(_embed_texts, program, state, config) if not raw and method.embeds_pairs
      else None,
      title=f"{config.method.name}, step {int(state.step)}")


def evaluate(program: Program, state: TrainState, eval_sources: dict, config, *, workdir: str | None = None,
             writer=None) -> dict[str, float]:
  """The evaluators of `config.eval.evaluators` on `state`'s representation; with `workdir` (the end of the run)
  also, as `config.eval` asks, the random-init column (`_init`), the raw-input column (`_raw`) and the report."""
  context = eval_context(program, state, config, eval_sources, picture=None if workdir is None else
                         functools.partial(_save_picture, workdir, writer, int(state.step)))
  specs = config.eval.evaluators.to_dict()
  results = evaluators.run(specs, context)
  if workdir is None:
    return results
  names = context.names(context.features("train")[0])
  if config.eval.init_baseline:
    results.update(evaluators.run(specs, eval_context(program, program.init(), config, eval_sources,
                                                      feature_names=names), suffix="_init"))
  if config.eval.raw_baseline:
    results.update(evaluators.run(specs, eval_context(program, state, config, eval_sources, raw=True,
                                                      feature_names=names), suffix="_raw"))
  if config.eval.report:
    results.update(report_lib.run(context, points=config.eval.report_points))
  if config.eval.sample_prompts:
    _write_samples(program, state, config, workdir)
  return results


def _write_samples(program: Program, state: TrainState, config, workdir: str) -> None:
  """Continues `config.eval.sample_prompts` with the trained language model (gathered from every process, then
  sampled on process 0's first device); prints the texts and writes them to `workdir/report/samples.txt`."""
  from ssl_jax import sample
  from ssl_jax.models import backbone
  spec, variables = program.method.encoders(state.params, state.extra)["text"]
  params = jax.tree.map(sharding.to_host, variables["params"])     # a collective: every process takes part
  if jax.process_index() != 0:
    return
  sampler = sample.Sampler.of(backbone.create(**spec), params, inputs.tokenizer(config.data))
  outputs, timing = sampler.complete(list(config.eval.sample_prompts), max_new_tokens=config.eval.sample_tokens,
                                     temperature=0.8, top_k=40)
  texts = "\n\n".join(f"--- {prompt!r}\n{out[0]}" for prompt, out in zip(config.eval.sample_prompts, outputs))
  path = epath.Path(workdir) / "report" / "samples.txt"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(texts + "\n")
  metrics.say(f"samples (temperature 0.8, top-k 40; {timing['tokens_per_s']:.0f} tokens/s):\n{texts}")


def _save_picture(workdir: str, writer, step: int, key: str, picture) -> None:
  """Writes a report picture to `workdir/report/<key>.png` and to TensorBoard as `report/<key>`."""
  report_lib.save_png(picture, epath.Path(workdir) / "report" / f"{key}.png")
  writer.image(f"report/{key}", picture, step)


def open_sources(config):
  """The training source and the evaluators' sources by split of `config`: `{"train": ..., "test": ...}`, and
  "pretext" (the held-out split of the training data) where `config.eval.pretext_split` is set."""
  e = config.eval
  sources = {"train": inputs.open_source(config.data, e.train_split, e.data_name),
             "test": inputs.open_source(config.data, e.test_split, e.data_name)}
  if e.pretext_split:
    sources["pretext"] = inputs.open_source(config.data, e.pretext_split)
  return inputs.open_source(config.data, config.data.train_split), sources


def _report(step, results, config, workdir):
  """Prints the final evaluation (pretrained next to random init and the raw input where measured) and the report's
  numbers."""
  columns = [("", "pretrained"), ("_init", "random init"), ("_raw", inputs.RAW_INPUT[inputs.modality(config.data)])]
  columns = [(suffix, label) for suffix, label in columns if not suffix or any(k.endswith(suffix) for k in results)]
  header = " (" + " / ".join(label for _, label in columns) + ")" if len(columns) > 1 else ""
  lines = [f"\nevaluation at step {step}{header}:"]
  number = lambda v: f"{v:8.4f}" if abs(v) < 100 else f"{v:8.1f}"     # perplexities run into the thousands
  for key in sorted(k for k in results if k.startswith("eval/") and not k.endswith(("_init", "_raw"))):
    values = "".join(" " + (number(results[key + s]) if key + s in results else " " * 8) for s, _ in columns)
    lines.append(f"  {key.split('/', 1)[1]:30s}{values}".rstrip())
  report = sorted(k for k in results if k.startswith("report/"))
  if report:
    pictures = os.path.join(workdir, "report")
    if pictures.startswith(os.getcwd() + os.sep):   # as the user typed a workdir below the current directory
      pictures = os.path.relpath(pictures)
    lines.append(f"representation report (pictures in {pictures}):")
    # Four decimals; two for values of 10 and more (an effective rank): four significant digits, as the others, where
    # a sixth would follow the last bits of the features, which differ between CPUs' kernels.
    lines += [f"  {key.split('/', 1)[1]:32s} {results[key]:.{4 if abs(results[key]) < 10 else 2}f}" for key in report]
  metrics.say("\n".join(lines))


class NonFiniteError(RuntimeError):
  """The run met non-finite losses or gradients beyond what its `nonfinite_policy` allows."""


def _check_health(state: TrainState, config) -> None:
  """Raises NonFiniteError per `config.nonfinite_policy` (a host sync: called at log and checkpoint steps only)."""
  h = jax.device_get(state.health)
  if config.nonfinite_policy == "stop" and h["first_bad"] >= 0:
    raise NonFiniteError(f"non-finite loss or gradients at step {h['first_bad']} (nonfinite_policy='stop'); no "
                         "update was applied from that step on and nothing after it was checkpointed.")
  if h["worst_streak"] >= config.max_nonfinite_streak:
    raise NonFiniteError(f"{h['worst_streak']} consecutive steps with non-finite loss or gradients (the first at "
                         f"step {h['first_bad']}); config.max_nonfinite_streak={config.max_nonfinite_streak}.")


def _create_workdir(workdir: str) -> None:
  """Creates the workdir, or fails clearly if it cannot be written."""
  try:
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    probe = epath.Path(workdir) / f".write_probe_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise PermissionError(f"workdir {workdir} cannot be written ({e}); choose another --workdir.") from e


def _restore(ckpt: checkpoint.Checkpointer, program: Program, train_iter, saved_config: dict, workdir: str,
             tokenizer_name: str = ""):
  """The newest intact checkpoint's state (the data iterator set to its position), or None; clear errors for a
  workdir of another experiment (naming both tokenizers where they differ: `tokenizer_name` is this run's) or another
  parameter layout."""
  try:
    return ckpt.restore_latest(program.abstract_state, train_iter, saved_config)
  except checkpoint.ConfigMismatch as e:
    why = ""
    if checkpoint.TOKENIZER_KEY in e.args[0]:
      saved = ckpt.saved_config(ckpt.latest_step())["data"]["text"]["tokenizer_sha256"]
      why = (f"; its checkpoints were trained with the tokenizer {workdir}/tokenizer.json (sha256 {saved[:16]}...), "
             f"this run's data with {tokenizer_name} (sha256 {saved_config['data']['text']['tokenizer_sha256'][:16]}"
             "...): the same token ids would mean other tokens")
    raise checkpoint.ConfigMismatch(
        f"{workdir} holds a run with a different config ({', '.join(e.args[0])}){why}; nothing was changed there. "
        "Use a new --workdir, or pass --restart to archive that run and start afresh.") from None
  except checkpoint.StateMismatch as e:
    step, diffs = e.args
    raise checkpoint.StateMismatch(
        f"checkpoint step {step} in {workdir} holds other arrays than this code builds ({'; '.join(diffs)}): it was "
        "written by a version of ssl_jax with another parameter or optimizer-state layout. Nothing was "
        "changed there. Resume it with the version that wrote it, or pass --restart to archive that run and start "
        "afresh (or use a new --workdir).") from None


def _save_tokenizer(workdir: str, tokenizer) -> None:
  """Writes the run's tokenizer to `workdir/tokenizer.json` (atomically; for sampling and export), unless it is there."""
  path = epath.Path(workdir) / "tokenizer.json"
  data = tokenizer.to_str()
  if not path.exists() or path.read_text() != data:
    partial = path.with_name(".tokenizer.json.partial")
    partial.write_text(data)
    partial.rename(path)


def _take_lease(workdir: str, config) -> workdir_lib.Lease | None:
  """Process 0 takes the workdir's lease (`ssl_jax.runtime.workdir`); every process raises `workdir_lib.Busy` if it
  cannot."""
  lease, refusal = None, ""
  if jax.process_index() == 0:
    try:
      lease = workdir_lib.Lease.acquire(workdir, heartbeat_s=config.lease.heartbeat_s, expire_s=config.lease.expire_s,
                                        log=metrics.say)
    except workdir_lib.Busy as e:
      refusal = str(e)
  if jax.process_count() > 1:
    taken = multihost_utils.broadcast_one_to_all(np.int32(lease is not None or refusal == ""))
    if not taken and jax.process_index() > 0:
      refusal = f"process 0 could not take the lease of workdir {workdir} (its output says which run holds it)."
  if refusal:
    raise workdir_lib.Busy(refusal)
  return lease


def run(config: ml_collections.ConfigDict, workdir: str, *, devices=None, stop_at: int | None = None,
        restart: bool = False) -> dict[str, float] | None:
  """Trains `config` in `workdir` (resuming from its latest intact checkpoint if any); returns the final evaluation.

  A later call in the same process for the same experiment (the config equal but for its evaluation settings, e.g. a
  notebook cell run again, or a resume after a `Preempted`) reuses the previous call's traced and compiled program
  (`_program_key`), unless the run starts from a pretrained encoder (`init_from`) or reads other runs.

  Args:
    config: an experiment config (see `ssl_jax.config.base_config`).
    workdir: local path or gs:// URL; holds checkpoints/, metrics.jsonl and tensorboard/.
    devices: the devices of the mesh (default: all).
    stop_at: leave after checkpointing this step, as a preempted job would (returns None); a later call resumes.
    restart: move a previous run in `workdir` to `workdir/archive/<time>/` and start afresh (instead of resuming,
      or refusing a workdir whose run has another config).

  Raises:
    preemption.Preempted: after a SIGTERM (or a multi-host preemption notice), once the checkpoint is committed.
    preemption.Interrupted: after a Ctrl-C (SIGINT), once the checkpoint is committed.
    workdir_lib.Busy: another live run holds `workdir` (nothing was written); `workdir_lib.Lost`: this run's lease
      expired and another run took the workdir over.
    metrics.MetricsWriteError: metrics.jsonl or the TensorBoard events could not be written (disk full...).
    checkpoint.ConfigMismatch: `workdir` holds a run of another experiment.
    checkpoint.StateMismatch: `workdir`'s checkpoint has another parameter layout (another ssl_jax version).
    NonFiniteError: see `config.nonfinite_policy`.
  """
  # Config and mesh: every check that can fail does so before anything is compiled or written.
  workdir = workdir_lib.absolute(workdir)   # Orbax needs absolute paths
  config_lib.validate(config)
  mesh = sharding.make_mesh(config.mesh.to_dict(), devices, config.mesh_preset)
  check_batch_split(config, mesh)
  train_source, eval_sources = open_sources(config)
  tokenizer = getattr(train_source, "tokenizer", None)
  build_args = (len(train_source), getattr(train_source, "num_classes", None),
                getattr(train_source, "vocab_size", None),
                None if tokenizer is None else text_lib.special_tokens(tokenizer))
  program_key = _program_key(config, mesh, *build_args)     # the previous run's program if built from the same
  program = _last_program[1] if program_key is not None and _last_program[0] == program_key else build(
      config, mesh, *build_args)
  dur = program.durations
  if program.source is not None:            # the pretrained encoder must fit before the workdir is touched
    _, target = program.method.encoders(program.abstract_state.params, program.abstract_state.extra)[
        program.source.tower]
    pretrained.check_fit(target, program.source.shapes())
  train_iter = iter(inputs.train_stream(config.data, train_source, seed=config.seed,
                                       global_batch_size=config.batch_size))
  _create_workdir(workdir)
  lease = _take_lease(workdir, config)     # before anything is written; a second run on this workdir stops here
  ckpt = writer = ids_log = watcher = None
  failed = False
  try:
    if restart and "://" not in workdir:
      moved = checkpoint.archive_run(workdir)
      if moved:
        metrics.say(f"restart: moved the previous run in {workdir} to {moved}")
    ckpt = checkpoint.Checkpointer(epath.Path(workdir) / "checkpoints", keep=config.keep_ckpts,
                                   timeout_s=config.ckpt_timeout_s)
    saved_config = config.to_dict()
    if tokenizer is not None:              # the run's identity includes what its token ids mean
      saved_config["data"]["text"]["tokenizer_sha256"] = text_lib.tokenizer_digest(tokenizer)
    state = _restore(ckpt, program, train_iter, saved_config, workdir,
                     tokenizer_name=inputs.tokenizer_name(config.data) if tokenizer is not None else "")
    if tokenizer is not None and jax.process_index() == 0:
      _save_tokenizer(workdir, tokenizer)
    if state is None:
      state = program.init()
      if program.source is not None:
        state = load_pretrained(program, state)
      if program.runs:
        state = load_runs(program, state)
    else:
      metrics.say(f"resuming from step {int(state.step)} in {workdir}")
    _last_program[:] = [program_key, program] if program_key is not None and not program.runs else [None, None]
    start = int(state.step)
    writer = metrics.Writer(workdir, resume_step=start)
    ids_log = metrics.ExampleLog(workdir, resume_step=start) if config.debug.log_example_ids else None
    progress = metrics.Progress(dur.total, config.batch_size, start)
    batch_sharding = sharding.batch_sharding(mesh)
    watcher = preemption.Watcher()
    if dur.total:
      metrics.say(f"training {config.method.name} for {dur.total} steps ({dur.steps_per_epoch} per epoch) on "
                  f"{mesh.size} devices, mesh {dict(mesh.shape)}")
    else:
      metrics.say(f"evaluating {program.source.label} (total_steps=0: no training) on {mesh.size} devices")

    every = lambda n, s: n > 0 and s % n == 0
    bad_examples = 0
    with jax.set_mesh(mesh), nn.logical_axis_rules(config.sharding_rules):
      for step in range(start + 1, dur.total + 1):
        # Between log steps nothing waits for the devices: config.debug.transfer_guard="disallow" proves it.
        with jax.transfer_guard(config.debug.transfer_guard):
          local = next(train_iter)
          bad_examples += int(np.sum(local.pop("bad", 0)))    # examples the source could not read, replaced
          if ids_log is not None:
            ids_log.write(step, local["index"])
          state, step_metrics = program.step(state, pipeline.to_global(local, batch_sharding))
          if step == start + 1:   # one sync, so that examples/s does not count compilation
            jax.block_until_ready(step_metrics)
            metrics.say(f"compiled and ran step {step} in {progress.restart(step):.1f}s")
          preempted = watcher(step)
        if every(dur.log_every, step) or step == dur.total:
          step_metrics = jax.device_get(step_metrics)
          _check_health(state, config)
          for warning in program.method.health_warnings(step_metrics):
            metrics.say(f"warning at step {step}: {warning}")
          writer.write(step, dict(step_metrics, bad_examples=bad_examples, **progress(step, step_metrics)))
        if every(dur.eval_every, step) and step != dur.total:
          writer.write(step, evaluate(program, state, eval_sources, config))
        writer.flush()             # the step's one line, before its checkpoint can commit
        if every(dur.ckpt_every, step) or step in (dur.total, stop_at) or preempted:
          _check_health(state, config)
          if lease is not None:
            lease.check()
          ckpt.save(step, state, train_iter, saved_config)
        if preempted:
          ckpt.wait()
          raise (preemption.Interrupted if watcher.interrupted else preemption.Preempted)(step)
        if step == stop_at:
          break
      ckpt.wait()
      watcher.close()              # from here on Ctrl-C raises KeyboardInterrupt: the last step is committed
      if stop_at is not None and start < stop_at < dur.total:
        return None

      done = [r for r in writer.records() if r["step"] == dur.total and any(k.startswith("eval/") for k in r)]
      if done:
        results = {k: v for r in done for k, v in r.items() if k.startswith(("eval/", "report/"))}
      else:
        results = evaluate(program, state, eval_sources, config, workdir=workdir, writer=writer)
        writer.write(dur.total, results)
        writer.flush()
  except BaseException:
    failed = True
    raise
  finally:
    if watcher is not None:
      watcher.close()
    errors = []
    try:
      for closing in (writer, ids_log, ckpt):   # each closed whatever the others do; the checkpointer waits for
        try:                                    # the last asynchronous save, whose error surfaces here
          if closing is not None:
            closing.close()
        except (checkpoint.CheckpointWriteError, metrics.MetricsWriteError) as e:
          errors.append(e)
    finally:
      if lease is not None:
        lease.release()
    first = errors.pop(0) if errors and not failed else None
    for e in errors:
      metrics.say(f"also: {e}")   # keep the first error; report the other write failures beside it
    if first is not None:
      raise first
  _report(dur.total, results, config, workdir)
  return results

"""Downstream evaluation of frozen features, in JAX on (sharded) global arrays.

Public functions on arrays, usable without a config (each returns top-1 accuracy in [0, 1]):

  knn_accuracy(train_features, train_labels, test_features, test_labels, k=20, temperature=0.07)
  linear_probe_accuracy(train_features, train_labels, test_features, test_labels)     # L-BFGS logistic regression
  lars_probe_accuracy(...)                                                             # MAE protocol, cached feats
  fewshot_accuracy(..., shots=5)                                                       # big_vision least squares
  language_model_scores(batches, predict)          # loss, perplexity, accuracy of a method's token predictions

The trainer runs the evaluators named in `config.eval.evaluators`, each `{type: <EVALUATORS key>, **arguments}`:

  config.eval.evaluators = dict(knn=dict(type="knn", k=20, temperature=0.07),
                                linear=dict(type="linear_lbfgs", l2=1e-4, steps=500),
                                fewshot=dict(type="fewshot", shots=(1, 5, 10, 25)))

and logs `eval/<name>_top1` (few-shot: `eval/<name>_<k>shot_top1`); a language model adds
`lm=dict(type="language_model")`, its loss, perplexity and accuracy on held-out text (`ssl_jax.evaluators.language`); an
image-text method `zero_shot=dict(type="zero_shot", templates=("a photo of a {}.",))` (`eval/zero_shot_top1`) and
`retrieval=dict(type="retrieval")` (`eval/retrieval_image_to_text_r@5`, ...; `ssl_jax.evaluators.image_text`). Each
evaluator is `run(context, *, name, **arguments)` over a `Context` (`ssl_jax.evaluators.context`): the representation,
the evaluation batches by split, and the features of a split computed once and shared by every evaluator.
"""

import inspect

import jax
import jax.numpy as jnp

from ssl_jax.evaluators.context import Context
from ssl_jax.evaluators import image_text
from ssl_jax.evaluators import language
from ssl_jax.evaluators.fewshot import fewshot_accuracy
from ssl_jax.evaluators.knn import knn_accuracy
from ssl_jax.evaluators.linear import lars_probe_accuracy
from ssl_jax.evaluators.language import language_model_scores
from ssl_jax.evaluators.linear import linear_probe_accuracy

__all__ = ["knn_accuracy", "linear_probe_accuracy", "lars_probe_accuracy", "fewshot_accuracy",
           "language_model_scores", "classification_accuracy", "Context", "EVALUATORS", "check", "run"]


def _knn(context: Context, *, name: str, **kw) -> dict[str, float]:
  return context.per_feature(lambda train, test: {
      f"eval/{name}_top1": knn_accuracy(*train, *test, num_classes=context.num_classes, mesh=context.mesh, **kw)})


def _linear_lbfgs(context: Context, *, name: str, **kw) -> dict[str, float]:
  return context.per_feature(lambda train, test: {
      f"eval/{name}_top1": linear_probe_accuracy(*train, *test, num_classes=context.num_classes, **kw)})


def _linear_lars(context: Context, *, name: str, **kw) -> dict[str, float]:
  return context.per_feature(lambda train, test: {
      f"eval/{name}_top1": lars_probe_accuracy(*train, *test, num_classes=context.num_classes, **kw)})


def _fewshot(context: Context, *, name: str, shots=(1, 5, 10, 25), **kw) -> dict[str, float]:
  return context.per_feature(lambda train, test: {
      f"eval/{name}_{k}shot_top1": fewshot_accuracy(*train, *test, shots=k, num_classes=context.num_classes, **kw)
      for k in shots})


# type -> (runner `run(context, *, name, **arguments)`, the function whose keyword arguments the config may set)
EVALUATORS = {
    "knn": (_knn, knn_accuracy),
    "linear_lbfgs": (_linear_lbfgs, linear_probe_accuracy),
    "linear_lars": (_linear_lars, lars_probe_accuracy),
    "fewshot": (_fewshot, fewshot_accuracy),
    "language_model": (language.run, language.run),
    "zero_shot": (image_text.run_zero_shot, image_text.run_zero_shot),
    "retrieval": (image_text.run_retrieval, image_text.run_retrieval),
}
_NOT_SETTABLE = {"train_features", "train_labels", "test_features", "test_labels", "num_classes", "mesh", "name",
                 "context", "kw"}


def check(name: str, spec: dict) -> None:
  """Raises ValueError, naming `config.eval.evaluators.<name>` and the fix, for an unknown type or argument."""
  where = f"config.eval.evaluators.{name}"
  if "type" not in spec or spec["type"] not in EVALUATORS:
    raise ValueError(f"{where}.type={spec.get('type')!r}; use one of {sorted(EVALUATORS)}.")
  runner, fn = EVALUATORS[spec["type"]]
  allowed = (set(inspect.signature(fn).parameters) | set(inspect.signature(runner).parameters)) - _NOT_SETTABLE
  unknown = sorted(set(spec) - allowed - {"type"})
  if unknown:
    raise ValueError(f"{where} has unknown arguments {unknown}; a {spec['type']!r} evaluator takes "
                     f"{sorted(allowed)}.")


def classification_accuracy(context: Context) -> dict[str, float]:
  """Top-1 and top-5 accuracy of a classifying method's own predictions (`context.predict`) on the test split."""
  hits1 = hits5 = count = 0
  for batch in context.batches("test"):
    logits = context.predict(batch)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    valid = batch["valid"] > 0
    hits1 += jnp.sum((top5[:, 0] == batch["label"]) & valid)
    hits5 += jnp.sum(jnp.any(top5 == batch["label"][:, None], axis=-1) & valid)
    count += jnp.sum(valid)
  return {"eval/top1": float(hits1 / count), "eval/top5": float(hits5 / count)}


def run(evaluators: dict, context: Context, *, suffix: str = "") -> dict[str, float]:
  """Runs every evaluator of `evaluators` (name -> `{type, **arguments}`, as `config.eval.evaluators`) on `context`,
  then the classification accuracy of a method that predicts (`context.predict`).

  Returns `{metric name + suffix: value}`.
  """
  out = {}
  for name, spec in evaluators.items():
    spec = dict(spec)
    runner = EVALUATORS[spec.pop("type")][0]
    out.update(runner(context, name=name, **spec))
  if context.predict is not None:
    out.update(classification_accuracy(context))
  return {k + suffix: v for k, v in out.items()}

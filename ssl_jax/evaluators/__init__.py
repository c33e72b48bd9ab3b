"""Downstream evaluation of frozen features, in JAX on (sharded) global arrays.

Public functions on arrays, usable without a config (each returns top-1 accuracy in [0, 1]):

  knn_accuracy(train_features, train_labels, test_features, test_labels, k=20, temperature=0.07)
  linear_probe_accuracy(train_features, train_labels, test_features, test_labels)     # L-BFGS logistic regression
  lars_probe_accuracy(...)                                                             # MAE protocol, cached feats
  fewshot_accuracy(..., shots=5)                                                       # big_vision least squares

The trainer runs the evaluators named in `config.eval.evaluators`, each `{type: <EVALUATORS key>, **arguments}`:

  config.eval.evaluators = dict(knn=dict(type="knn", k=20, temperature=0.07),
                                linear=dict(type="linear_lbfgs", l2=1e-4, steps=500),
                                fewshot=dict(type="fewshot", shots=(1, 5, 10, 25)))

and logs `eval/<name>_top1` (few-shot: `eval/<name>_<k>shot_top1`).
"""

import inspect

import jax

from ssl_jax.evaluators.fewshot import fewshot_accuracy
from ssl_jax.evaluators.knn import knn_accuracy
from ssl_jax.evaluators.linear import lars_probe_accuracy
from ssl_jax.evaluators.linear import linear_probe_accuracy

__all__ = ["knn_accuracy", "linear_probe_accuracy", "lars_probe_accuracy", "fewshot_accuracy", "EVALUATORS",
           "check", "run"]


def _knn(name, train, test, num_classes, mesh, **kw):
  return {f"eval/{name}_top1": knn_accuracy(*train, *test, num_classes=num_classes, mesh=mesh, **kw)}


def _linear_lbfgs(name, train, test, num_classes, mesh, **kw):
  del mesh
  return {f"eval/{name}_top1": linear_probe_accuracy(*train, *test, num_classes=num_classes, **kw)}


def _linear_lars(name, train, test, num_classes, mesh, **kw):
  del mesh
  return {f"eval/{name}_top1": lars_probe_accuracy(*train, *test, num_classes=num_classes, **kw)}


def _fewshot(name, train, test, num_classes, mesh, shots=(1, 5, 10, 25), **kw):
  del mesh
  return {f"eval/{name}_{k}shot_top1": fewshot_accuracy(*train, *test, shots=k, num_classes=num_classes, **kw)
          for k in shots}


# type -> (runner, the function whose keyword arguments the config may set)
EVALUATORS = {
    "knn": (_knn, knn_accuracy),
    "linear_lbfgs": (_linear_lbfgs, linear_probe_accuracy),
    "linear_lars": (_linear_lars, lars_probe_accuracy),
    "fewshot": (_fewshot, fewshot_accuracy),
}
_NOT_SETTABLE = {"train_features", "train_labels", "test_features", "test_labels", "num_classes", "mesh", "name",
                 "train", "test", "kw"}


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


def run(evaluators: dict, train, test, *, num_classes: int | None, mesh: jax.sharding.Mesh | None = None,
        suffix: str = "") -> dict[str, float]:
  """Runs every evaluator of `evaluators` (name -> spec) on `train = (features, labels)` and `test` likewise.

  Returns `{metric name + suffix: value}`.
  """
  out = {}
  for name, spec in evaluators.items():
    spec = dict(spec)
    runner = EVALUATORS[spec.pop("type")][0]
    out.update({k + suffix: v for k, v in runner(name, train, test, num_classes, mesh, **spec).items()})
  return out

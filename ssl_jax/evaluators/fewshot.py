"""Few-shot linear evaluation by closed-form regularised least squares, as big_vision's `fewshot_lsr` evaluator.

For each of `seeds` draws, `shots` training examples per class are sampled; features are whitened with their mean
and standard deviation, a constant bias feature is appended, and a ridge regression onto one-hot targets in
{-1, +1} is solved in closed form through an eigendecomposition of the smaller Gram matrix; the test accuracy of the
arg-max prediction is averaged over the seeds.
"""

import numpy as np

from ssl_jax import sharding

BIAS_FEATURE = 100.0    # large, so that the bias is almost unregularised


def fit_least_squares(x: np.ndarray, y: np.ndarray, *, num_classes: int, l2: float):
  """Ridge regression of `2 * onehot(y) - 1` on whitened `x` `[N, D]` plus a bias feature.

  Solved on the host in float64 (as big_vision solves it on the CPU): the bias feature makes the Gram matrix
  ill-conditioned (its largest eigenvalue is about N x 100^2), too much for float32.

  Returns:
    (w `[D + 1, C]`, mean `[D]`, std `[D]`).
  """
  x = np.asarray(x, np.float64)
  mean, std = x.mean(0), x.std(0) + 1e-5
  x = np.pad((x - mean) / std, ((0, 0), (0, 1)), constant_values=BIAS_FEATURE)
  t = 2.0 * np.eye(num_classes)[np.asarray(y)] - 1.0
  n, d = x.shape
  # (x^T x + l2 I)^-1 x^T t  ==  x^T (x x^T + l2 I)^-1 t; decompose whichever Gram matrix is smaller.
  if n >= d:
    eigs, q = np.linalg.eigh(x.T @ x)
    w = (q / (eigs + l2)) @ (q.T @ (x.T @ t))
  else:
    eigs, q = np.linalg.eigh(x @ x.T)
    w = ((x.T @ q) / (eigs + l2)) @ (q.T @ t)
  return w, mean, std


def predict(w, mean, std, x) -> np.ndarray:
  x = np.pad((np.asarray(x, np.float64) - mean) / std, ((0, 0), (0, 1)), constant_values=BIAS_FEATURE)
  return np.argmax(x @ w, axis=-1)


def fewshot_accuracy(train_features, train_labels, test_features, test_labels, *, shots: int,
                     l2: float = 2.0 ** 10, seeds: int = 3, num_classes: int | None = None) -> float:
  """Mean over `seeds` draws of the test top-1 accuracy in [0, 1] of `shots`-per-class least squares.

  Classes with fewer than `shots` training examples use all they have. Labels < 0 (padding) are ignored.
  """
  xtr, ytr, xte, yte = (sharding.to_host(x) for x in (train_features, train_labels, test_features, test_labels))
  xtr, xte = xtr.astype(np.float32), xte.astype(np.float32)
  keep = yte >= 0
  xte, yte = xte[keep], yte[keep]
  if num_classes is None:
    num_classes = int(max(ytr.max(), yte.max())) + 1
  accs = []
  for seed in range(seeds):
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:shots] for c in range(num_classes)])
    w, mean, std = fit_least_squares(xtr[idx], ytr[idx], num_classes=num_classes, l2=l2)
    accs.append(float(np.mean(predict(w, mean, std, xte) == yte)))
  return float(np.mean(accs))

import numpy as np
import pytest

from ssl_jax import evaluators
from ssl_jax.evaluators import knn


def test_weighted_knn_by_hand():
  # Bank: two of class 0 near (1, 0), one of class 1 exactly at (0, 1).
  bank = np.array([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]], np.float32)
  labels = np.array([0, 0, 1])
  # The query is at 45 degrees: cos to the class-0 points is (1 +- 0.1) / (sqrt(2) sqrt(1.01)), to the class-1
  # point 1 / sqrt(2). With k=3 and T=0.07: class 0 gets exp(c1/T) + exp(c2/T), class 1 exp(c3/T).
  q = np.array([[1.0, 1.0]], np.float32)
  c = bank @ q[0] / (np.linalg.norm(bank, axis=1) * np.linalg.norm(q[0]))
  votes0, votes1 = np.exp(c[0] / 0.07) + np.exp(c[1] / 0.07), np.exp(c[2] / 0.07)
  expected = 0 if votes0 > votes1 else 1
  pred = knn.knn_predict(bank, labels, q, num_classes=2, k=3, temperature=0.07)
  assert int(pred[0]) == expected == 0
  # With k=1 only the most similar point votes.
  assert int(knn.knn_predict(bank, labels, q, num_classes=2, k=1)[0]) == labels[np.argmax(c)]
  # A query at (0, 1) is nearest to the class-1 point; a sharp temperature (exp(1 / 0.01) overflows float32 unless
  # the weights are shifted) lets it outvote the two class-0 points.
  assert int(knn.knn_predict(bank, labels, np.array([[0.0, 1.0]]), num_classes=2, k=3, temperature=0.01)[0]) == 1


def test_knn_accuracy_ignores_negative_labels_and_chunks():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(5, 16)) * 4
  y_train, y_test = rng.integers(0, 5, 300), rng.integers(0, 5, 257)
  x_train = centers[y_train] + rng.normal(size=(300, 16))
  x_test = centers[y_test] + rng.normal(size=(257, 16))
  acc = evaluators.knn_accuracy(x_train, y_train, x_test, y_test, k=10)
  assert acc > 0.95
  # Half the test labels flipped to "padding" (-1): the accuracy is over the rest only.
  y_pad = np.where(np.arange(257) % 2 == 0, y_test, -1)
  assert evaluators.knn_accuracy(x_train, y_train, x_test, y_pad, k=10) > 0.95
  wrong = (y_test + 1) % 5
  assert evaluators.knn_accuracy(x_train, y_train, x_test, wrong, k=10) < 0.05


def test_linear_probe_separates_linearly_separable_classes():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(8, 3))
  x = rng.normal(size=(600, 8))
  y = np.argmax(x @ w, axis=1)
  acc = evaluators.linear_probe_accuracy(x[:400], y[:400], x[400:], y[400:], l2=1e-5, steps=200)
  assert acc > 0.93
  # Random labels cannot be predicted on held-out data.
  y_rand = rng.integers(0, 3, 600)
  assert evaluators.linear_probe_accuracy(x[:400], y_rand[:400], x[400:], y_rand[400:]) < 0.5


def test_linear_probe_matches_scikit_learn_on_digits():
  from sklearn.datasets import load_digits
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import StandardScaler
  d = load_digits()
  x, y = d.data.astype(np.float32), d.target
  n = 1400
  ours = evaluators.linear_probe_accuracy(x[:n], y[:n], x[n:], y[n:], l2=1e-3, steps=200)
  # sklearn's C is 1 / (n * l2) for a mean loss plus 0.5 * l2 * ||W||^2.
  scaler = StandardScaler().fit(x[:n])
  ref = LogisticRegression(C=1 / (n * 1e-3), max_iter=5000).fit(scaler.transform(x[:n]), y[:n])
  assert ours == pytest.approx(ref.score(scaler.transform(x[n:]), y[n:]), abs=0.01)

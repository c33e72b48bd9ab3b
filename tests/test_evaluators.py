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


def _digits_split():
  from sklearn.datasets import load_digits
  d = load_digits()
  x, y = d.data.astype(np.float32), d.target
  return x[:1400], y[:1400], x[1400:], y[1400:]


def test_knn_matches_scikit_learn_on_digits():
  from sklearn.neighbors import KNeighborsClassifier
  xtr, ytr, xte, yte = _digits_split()
  ref = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute").fit(xtr, ytr)
  ours = np.asarray(knn.knn_predict(xtr, ytr, xte, num_classes=10, k=20, vote="majority"))
  # The same neighbours and votes: predictions differ only on exact vote ties (broken differently).
  assert np.mean(ours == ref.predict(xte)) > 0.99
  acc_ref = ref.score(xte, yte)
  assert evaluators.knn_accuracy(xtr, ytr, xte, yte, vote="majority") == pytest.approx(acc_ref, abs=0.01)
  assert evaluators.knn_accuracy(xtr, ytr, xte, yte) == pytest.approx(acc_ref, abs=0.02)   # DINO's weighted vote


def test_sharded_knn_equals_single_device_and_padding_never_votes():
  import jax
  from ssl_jax import sharding
  rng = np.random.default_rng(2)
  centers = rng.normal(size=(7, 12)) * 2
  y_train, y_test = rng.integers(0, 7, 400), rng.integers(0, 7, 100)
  x_train = (centers[y_train] + rng.normal(size=(400, 12))).astype(np.float32)
  x_test = (centers[y_test] + rng.normal(size=(100, 12))).astype(np.float32)
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
  assert mesh.size == 8
  for vote in ("weighted", "majority"):
    single = knn.knn_predict(x_train, y_train, x_test, num_classes=7, k=15, vote=vote, chunk=64)
    sharded = knn.knn_predict(jax.device_put(x_train, sharding.batch_sharding(mesh)), y_train, x_test,
                              num_classes=7, k=15, vote=vote, chunk=64, mesh=mesh)
    np.testing.assert_array_equal(np.asarray(single), np.asarray(sharded))
  # Padding rows (label -1) that sit exactly on the queries must not take neighbour slots: with k=1 the prediction
  # is the nearest real example's label, on one device and sharded.
  bank = np.concatenate([x_train, x_test]).astype(np.float32)
  labels = np.concatenate([y_train, -np.ones(100, int)])
  nearest = y_train[np.argmax((x_test / np.linalg.norm(x_test, axis=1, keepdims=True))
                              @ (x_train / np.linalg.norm(x_train, axis=1, keepdims=True)).T, axis=1)]
  for m in (None, mesh):
    pred = knn.knn_predict(bank, labels, x_test, num_classes=7, k=1, mesh=m)
    np.testing.assert_array_equal(np.asarray(pred), nearest)


@pytest.mark.parametrize("n", [30, 200])    # fewer and more examples than feature dimensions (+ bias): both branches
def test_fewshot_least_squares_equals_the_normal_equations(n):
  from ssl_jax.evaluators import fewshot
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(n, 40)).astype(np.float32), rng.integers(0, 4, n)
  w, mean, std = fewshot.fit_least_squares(x, y, num_classes=4, l2=3.0)
  xs = np.pad((x - x.mean(0)) / (x.std(0) + 1e-5), ((0, 0), (0, 1)), constant_values=fewshot.BIAS_FEATURE)
  t = 2.0 * np.eye(4)[y] - 1.0
  expected = np.linalg.solve(xs.T.astype(np.float64) @ xs + 3.0 * np.eye(41), xs.T @ t)
  np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-7)


def test_fewshot_accuracy_grows_with_shots_on_digits():
  xtr, ytr, xte, yte = _digits_split()
  accs = {k: evaluators.fewshot_accuracy(xtr, ytr, xte, yte, shots=k, l2=32.0) for k in (1, 5, 25)}
  # Raw pixels, mean of 3 draws: 1-shot ~0.53, 5-shot ~0.80, 25-shot ~0.85; chance is 0.1.
  assert 0.4 < accs[1] < accs[5] < accs[25]
  assert accs[25] > 0.8


def test_lars_probe_matches_scikit_learn_on_digits():
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import StandardScaler
  xtr, ytr, xte, yte = _digits_split()
  scaler = StandardScaler().fit(xtr)
  ref = LogisticRegression(max_iter=5000).fit(scaler.transform(xtr), ytr).score(scaler.transform(xte), yte)
  ours = evaluators.lars_probe_accuracy(xtr, ytr, xte, yte, epochs=60, batch_size=128, base_lr=16.0,
                                        warmup_epochs=5)
  assert ours == pytest.approx(ref, abs=0.02)
  # Padding rows (label -1) are dropped before training: garbage features on them change nothing.
  x_pad = np.concatenate([xtr, np.full((40, 64), 1e3, np.float32)])
  y_pad = np.concatenate([ytr, -np.ones(40, int)])
  assert evaluators.lars_probe_accuracy(x_pad, y_pad, xte, yte, epochs=60, batch_size=128, base_lr=16.0,
                                        warmup_epochs=5) == ours


def _array_context(splits: dict, features=("image",), **kw) -> tuple[evaluators.Context, list]:
  """A Context over in-memory `(features, labels)` per split, in batches of 100 (the last one padded), whose
  `represent` gives each of `features` (the second as the first times 2) and records every call."""
  calls = []

  def batches(split, augment_seed=None):
    x, y = splits[split]
    n = -(-len(x) // 100) * 100
    x, valid = np.resize(x, (n,) + x.shape[1:]), (np.arange(n) < len(y)).astype(np.int32)
    for i in range(0, n, 100):
      yield {"x": x[i:i + 100], "label": np.resize(y, n)[i:i + 100], "valid": valid[i:i + 100]}

  def represent(batch):
    calls.append(len(batch["x"]))
    return {name: batch["x"] * (i + 1) for i, name in enumerate(features)}
  return evaluators.Context(represent=represent, batches=batches, mesh=None, num_classes=10, **kw), calls


def test_evaluators_share_one_pass_over_each_split():
  """`evaluators.run` over a `Context`: every configured evaluator reads the same cached features (one pass over
  each split), padding is dropped, and the numbers are the array-level functions' own."""
  xtr, ytr, xte, yte = _digits_split()
  context, calls = _array_context({"train": (xtr, ytr), "test": (xte, yte)})
  specs = {"knn": dict(type="knn", k=10), "few": dict(type="fewshot", shots=(5,), l2=1.0),
           "lin": dict(type="linear_lbfgs", steps=50)}
  out = evaluators.run(specs, context, suffix="_x")
  assert set(out) == {"eval/knn_top1_x", "eval/few_5shot_top1_x", "eval/lin_top1_x"}
  assert len(calls) == -(-len(xtr) // 100) + -(-len(xte) // 100)          # each split represented once
  assert out["eval/knn_top1_x"] == evaluators.knn_accuracy(xtr, ytr, xte, yte, k=10)
  assert out["eval/lin_top1_x"] == evaluators.linear_probe_accuracy(xtr, ytr, xte, yte, num_classes=10, steps=50)


def test_results_of_several_features_are_named_by_feature():
  """A representation with several features (a two-tower method) gets each feature's results under its name; with one
  the metric names stay as they are; a baseline context named after the run's features lines up with it."""
  xtr, ytr, xte, yte = _digits_split()
  data = {"train": (xtr, ytr), "test": (xte, yte)}
  one = evaluators.run({"knn": dict(type="knn", k=10)}, _array_context(data)[0])
  two = evaluators.run({"knn": dict(type="knn", k=10)}, _array_context(data, ("image", "text"))[0])
  assert set(one) == {"eval/knn_top1"} and set(two) == {"eval/image/knn_top1", "eval/text/knn_top1"}
  assert two["eval/image/knn_top1"] == two["eval/text/knn_top1"] == one["eval/knn_top1"]   # cosine kNN: x and 2x
  raw = evaluators.run({"knn": dict(type="knn", k=10)},
                       _array_context(data, feature_names=("image", "text"))[0], suffix="_raw")
  assert raw == {"eval/image/knn_top1_raw": one["eval/knn_top1"]}     # only the features the baseline has


def test_evaluator_arguments_are_checked():
  with pytest.raises(ValueError, match=r"config.eval.evaluators.knn has unknown arguments \['kk'\]"):
    evaluators.check("knn", dict(type="knn", kk=3))
  with pytest.raises(ValueError, match=r"evaluators.x.type='svm'; use one of"):
    evaluators.check("x", dict(type="svm"))

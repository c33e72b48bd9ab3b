"""The end-of-run representation report: collapse statistics and pictures of the embedding.

- numbers: per-dimension std of the normalised features (vs 1/sqrt(D)), effective rank (RankMe, in float64),
  alignment of two augmented views and uniformity (Wang & Isola 2020) — see `ssl_jax.monitors`;
- `embedding_figure`: the test features in 2-D, by PCA and by t-SNE (scikit-learn), coloured by label;
- `reconstruction_figure` (MAE): rows of input, masked input and reconstruction.

Figures are RGB uint8 arrays (for TensorBoard) and PNG files (matplotlib, Agg backend, no display needed).
"""

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from ssl_jax import monitors
from ssl_jax import sharding
from ssl_jax.evaluators import context as context_lib


def representation_metrics(features, view1, view2, prefix: str = "report/") -> dict[str, float]:
  """Collapse and geometry statistics of `features` `[N, D]` and two augmented views `[N, D]` of the same examples.

  Uniformity is computed on at most 4096 examples (it compares all pairs).
  """
  f = jnp.asarray(features, jnp.float32)
  return {
      f"{prefix}embedding_std": float(monitors.embedding_std(f)),
      f"{prefix}embedding_std_ref": 1.0 / f.shape[-1] ** 0.5,
      f"{prefix}rankme": effective_rank(features),
      f"{prefix}alignment": float(monitors.alignment(view1, view2)),
      f"{prefix}uniformity": float(monitors.uniformity(f[:4096])),
  }


def effective_rank(features, eps: float = 1e-7) -> float:
  """RankMe (Garrido et al. 2023) of `features` `[N, D]`, `exp(entropy(sigma / ||sigma||_1 + eps))`, from their
  singular values in float64 (numpy's SVD, on the host): the end-of-run number.

  The training-time monitor (`monitors.effective_rank`: every step on the device, in float32, from the eigenvalues of
  the Gram matrix) is a cheaper estimate. Its Gram matrix's rounding, about 1e-7 of the largest eigenvalue, becomes
  after the square root tail singular values of about 3e-4 of the largest, so it reads high (by 0.23 for a spectrum
  whose RankMe is 10.88, `tests/test_joint_parts.py`) and its fourth decimal follows the kernels' summation order: the
  README's main job printed 25.4664 on an AVX-512 Xeon and 25.4672 on an AVX2 EPYC.
  """
  s = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  p = s / (s.sum() + eps) + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def run(context: context_lib.Context, *, points: int = 1000) -> dict[str, float]:
  """The end-of-run report of `context`'s representation: per feature, `representation_metrics` of the test split
  (its evaluation view, and two augmented views seeded 1 and 2 for the alignment) and the picture of its embedding
  (at most `points` test examples), saved as "embedding" (one feature) or "embedding_<feature>"; for a method that
  reconstructs, the grid of its first eight test inputs, masked inputs and reconstructions ("reconstructions"; the
  name and columns of `context.pictures`).

  Pictures go through `context.picture` on process 0. Returns `report/...` numbers (per feature as `per_feature`).
  """
  feats, labels = context.features("test")
  view1, _ = context.features("test", augment_seed=1)
  view2, _ = context.features("test", augment_seed=2)
  labels = sharding.to_host(labels)
  valid = labels >= 0
  labels = labels[valid]
  names = context.names(feats)
  several = len(context.feature_names or feats) > 1
  numbers = {}
  for name in names:
    f, v1, v2 = (sharding.to_host(x[name])[valid] for x in (feats, view1, view2))
    numbers[name] = representation_metrics(f, v1, v2)
    if context.picture is not None and jax.process_index() == 0:
      title = context.title + (f", {name}" if several else "")
      context.picture(f"embedding_{name}" if several else "embedding",
                      embedding_figure(f[:points], labels[:points], title=title))
  numbers = context_lib.name_per_feature(numbers, several=several)
  if context.reconstruct is not None:
    batch = next(iter(context.batches("test")))
    rows = [sharding.to_host(x)[:8] for x in context.reconstruct(batch, jax.random.key(0))]
    if context.picture is not None and jax.process_index() == 0:
      name, titles = context.pictures
      context.picture(name, reconstruction_figure(*rows, titles=titles))
  return numbers


def pca_2d(x: np.ndarray) -> np.ndarray:
  """`[N, D]` -> `[N, 2]` projection on the two leading principal components."""
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  return x @ vt[:2].T


def _figure_to_array(fig) -> np.ndarray:
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def embedding_figure(features, labels, title: str = "", tsne: bool = True, seed: int = 0) -> np.ndarray:
  """A scatter plot of `features` `[N, D]` coloured by `labels` `[N]`: PCA, and t-SNE beside it when `tsne`.

  Returns:
    the figure as RGB uint8 `[H, W, 3]`.
  """
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  x = np.asarray(features, np.float64)
  y = np.asarray(labels)
  panels = [("PCA", pca_2d(x))]
  if tsne and len(x) > 5:
    from sklearn.manifold import TSNE
    perplexity = float(min(30, (len(x) - 1) / 3))
    panels.append(("t-SNE", TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)))
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
  for ax, (name, xy) in zip(axes[0], panels):
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10" if y.max() < 10 else "tab20", s=6)
    ax.set_title(f"{name} of the features{': ' + title if title else ''}", fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
  fig.colorbar(sc, ax=list(axes[0]), label="label")
  out = _figure_to_array(fig)
  plt.close(fig)
  return out


def reconstruction_figure(*columns, titles=("input", "masked", "reconstruction")) -> np.ndarray:
  """A grid with one row per example and one column per array of `columns` (each uint8 `[N, H, W, 3]`: by default
  input, masked input, reconstruction), titled `titles`; returns RGB uint8 of the grid."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  n, cols = len(columns[0]), len(columns)
  fig, axes = plt.subplots(n, cols, figsize=(1.5 * cols, 1.5 * n + 0.4), squeeze=False)
  for i in range(n):
    for j, (name, img) in enumerate(zip(titles, columns)):
      axes[i, j].imshow(np.asarray(img[i]), interpolation="nearest")
      axes[i, j].axis("off")
      if i == 0:
        axes[i, j].set_title(name, fontsize=8)
  fig.tight_layout()
  out = _figure_to_array(fig)
  plt.close(fig)
  return out


def save_png(array: np.ndarray, path) -> None:
  """Writes RGB uint8 `[H, W, 3]` as PNG to `path` (local or gs://), creating its directory."""
  from PIL import Image
  import io
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  path.write_bytes(buf.getvalue())

"""Jigsaw puzzles (Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles").

Each training image (a square crop, side divisible by 3) is cut into a 3 x 3 grid of cells; a random `tile_size`
square is cropped inside each cell (the gaps between tiles: no edge continuity to follow), the nine tiles are shuffled
by one permutation drawn from a set of `num_permutations` chosen for maximal Hamming distance
(`pretext.jigsaw_permutations`, the paper's Algorithm 1), and the network predicts which permutation it was. The
shared encoder (the paper's context-free network: AlexNet's conv layers) sees each tile on its own; the classifier
(`heads.JigsawHead`: fc6 per tile, the nine concatenated, fc7, fc8) sees them together. The representation is the
encoder's pooled features of the whole evaluation image, as the paper transfers its conv layers.

The shortcut defences (the paper's): the gaps; each tile normalised on its own (`pretext.standardize_tiles`:
its mean and standard deviation over pixels and channels; "to avoid low-level feature shortcuts"); colour jitter of
each tile (`pretext.jitter_tiles`: a factor per channel in U(0.8, 1.2) and a shift of up to 5 / 255, the PyTorch
reimplementation's `rgb_jittering`, against chromatic aberration). Logged: `jigsaw_top1` (the permutation
accuracy on the training batch). Report: `puzzles.png`, the test images, their shuffled tiles, and the tiles put back
in the order the network predicts.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax import pretext
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads
from ssl_jax.ops import image as image_ops

GRID = 3


@dataclasses.dataclass(frozen=True)
class Jigsaw(joint.ReleasesOnlineEncoder, contract.Method):
  reconstructs = True
  pictures = ("puzzles", ("input", "puzzle", "predicted order"))

  net: joint.Network             # encoder (each tile) -> the permutation classifier (`heads.JigsawHead`)
  permutations: tuple            # [P, 9] as nested tuples (hashable)
  tile_size: int
  jitter: bool
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    tiles, _ = self._puzzles(jax.random.key(0), batch["image"])
    params = self.net.init(rng, tiles, method=self._init_apply)
    stats = params.get("batch_stats", {})
    return {"net": params["params"], "probe": joint.init_probe(self.num_classes, self.net.encoder.num_features)}, {
        "batch_stats": stats}

  @staticmethod
  def _init_apply(net, tiles):
    b, t = tiles.shape[:2]
    feats = net.encode(tiles.reshape((b * t,) + tiles.shape[2:]))
    return net.project(feats.reshape(b, t, -1))

  def _puzzles(self, rng, images):
    """Normalised images `[B, S, S, 3]` -> (normalised, jittered and standardised tiles `[B, 9, t, t, 3]` in puzzle
    order, `[B]` permutation indices)."""
    tiles, labels = self._puzzles_unit(rng, images)
    return pretext.standardize_tiles(image_ops.normalize_unit(tiles)), labels

  def _logits(self, params, stats, tiles, rng, train: bool):
    b, t = tiles.shape[:2]
    flat = tiles.reshape((b * t,) + tiles.shape[2:])
    if train:
      feats, stats = joint.forward(self.net, params, stats, flat, jax.random.fold_in(rng, 0),
                                   method=joint.Network.encode)
      logits, stats = joint.forward(self.net, params, stats, feats.reshape(b, t, -1), jax.random.fold_in(rng, 1),
                                    method=joint.Network.project)
      return feats, logits, stats
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    feats = self.net.apply(variables, flat, False, method=joint.Network.encode)
    return feats, self.net.apply(variables, feats.reshape(b, t, -1), False, method=joint.Network.project), stats

  def loss(self, params, extra, batch, rng, step):
    del step
    k_puzzle, k_net = jax.random.split(rng)
    tiles, targets = self._puzzles(k_puzzle, batch["image"])
    feats, logits, stats = self._logits(params["net"], extra["batch_stats"], tiles, k_net, train=True)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
    hits = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    # The online probe reads the tiles' mean feature (the encoder has only seen tiles in training).
    tile_mean = jnp.mean(feats.reshape(tiles.shape[:2] + feats.shape[1:]), axis=1)
    probe, probe_metrics = joint.probe_loss(params["probe"], tile_mean, batch.get("label"))
    metrics = dict(probe_metrics, ssl_loss=loss, jigsaw_top1=jnp.mean(hits))
    return loss + probe, (metrics, {"batch_stats": stats})

  def reconstruct(self, params, extra, batch, rng):
    """Pictures: the input, its puzzle (the shuffled tiles on the grid) and the tiles placed where the predicted
    permutation says they came from (the input's layout, with gaps, when the prediction is right), uint8."""
    images = batch["image"]
    tiles, _ = self._puzzles(rng, images)
    _, logits, _ = self._logits(params["net"], extra["batch_stats"], tiles, None, train=False)
    perms = jnp.asarray(self.permutations, jnp.int32)
    predicted = perms[jnp.argmax(logits, axis=-1)]                         # [B, 9]: slot j holds tile of cell p[j]
    # Unstandardised tiles for the picture: the same crops and jitter, drawn with the same key.
    shown, _ = self._puzzles_unit(rng, images)
    cells_of_slots = jnp.argsort(predicted, axis=-1)                       # cell c shows slot argsort(p)[c]
    solved = jnp.take_along_axis(shown, cells_of_slots[:, :, None, None, None], axis=1)
    to_uint8 = lambda t: jnp.clip(jnp.round(t * 255.0), 0, 255).astype(jnp.uint8)
    side = images.shape[1]
    return image_ops.denormalize(images), to_uint8(_grid(shown, side)), to_uint8(_grid(solved, side))

  def _puzzles_unit(self, rng, images):
    """`_puzzles` before the normalisations, in [0, 1] (for pictures)."""
    k_puzzle, k_jitter = jax.random.split(rng)
    tiles, labels = pretext.jigsaw(k_puzzle, image_ops.denormalize_unit(images), np.asarray(self.permutations),
                                   grid=GRID, tile_crop=self.tile_size)
    return (pretext.jitter_tiles(k_jitter, tiles) if self.jitter else tiles), labels

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, head: dict, num_permutations: int = 1000,
             tile_size: int = 64, jitter: bool = True, permutation_seed: int = 0,
             online_probe: bool = True) -> "Jigsaw":
    """Builds the jigsaw puzzle method.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (single-view square images of a side divisible by 3, labels).
      head: `heads.JigsawHead` fields but `num_permutations` (paper: tile_dim 1024, hidden_dim 4096, dropout 0.5).
      num_permutations: the permutation set's size (paper: 1000 of maximal Hamming distance).
      tile_size: the side of the tile cropped inside each cell (paper: 64 of 75-pixel cells of a 225 crop).
      jitter: colour jitter of each tile (`pretext.jitter_tiles`).
      permutation_seed: draws the set's first permutation (`pretext.jigsaw_permutations`).
      online_probe: train a linear probe on the stop-gradient mean tile feature when the data has labels.
    """
    h, w, _ = run.image_shape()
    if h != w or h % GRID:
      raise ValueError(f"the jigsaw puzzle cuts a square image into 3 x 3 cells: config.data.image.size is {h}x{w}; "
                       "use a multiple of 3 (paper: 225).")
    if not 1 <= tile_size <= h // GRID:
      raise ValueError(f"method.tile_size={tile_size} must be in [1, {h // GRID}], the side of a cell of the "
                       f"{h}-pixel image.")
    if "num_permutations" in head:
      raise ValueError("set the permutation count as method.num_permutations, not in method.head.")
    perms = pretext.jigsaw_permutations(num_permutations, GRID * GRID, permutation_seed)
    net = joint.Network(backbone.create(**model), heads.JigsawHead(num_permutations=num_permutations, **head))
    return cls(net=net, permutations=tuple(map(tuple, perms.tolist())), tile_size=tile_size, jitter=jitter,
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))


def _grid(tiles: jax.Array, side: int) -> jax.Array:
  """Tiles `[B, 9, t, t, C]` in [0, 1] -> a 3 x 3 picture of them, row-major, one-pixel white gaps where they fit,
  centred on white `[B, side, side, C]` (the input's size)."""
  b, n, t, _, c = tiles.shape
  gap = min(1, (side - GRID * t) // (GRID - 1))
  offset = (side - GRID * t - (GRID - 1) * gap) // 2
  out = jnp.ones((b, side, side, c), tiles.dtype)
  for k in range(n):
    top, left = offset + (k // GRID) * (t + gap), offset + (k % GRID) * (t + gap)
    out = out.at[:, top:top + t, left:left + t].set(tiles[:, k])
  return out

"""Self-supervised methods behind one contract; `config.method.name` picks the module from `METHODS`.

A method module exposes `create(*, model, run: contract.RunInfo, **hyperparameters) -> Method`, where `Method` has

  init(rng, batch) -> (params, extra)          # logically partitioned (boxed) parameters; extra: teachers, centres
  loss(params, extra, batch, rng, step) -> (loss, (metrics, new_extra))      # pure, for the global batch
  after_update(params, extra, step) -> extra                                 # e.g. an EMA teacher
  representation(params, extra, images) -> [B, D] features                   # for the evaluators
  encoder(params, extra) -> (spec, variables)    # the released encoder: `models.backbone.create(**spec)` applied
                                                 # to `variables` (for probing, fine-tuning and export)

and optionally `reconstruct(params, extra, images, rng) -> (masked, reconstruction)` uint8 pictures (MAE), which
the end-of-run report draws, and `frozen_until`: `(path regex, n)` pairs of parameters the optimizer leaves out of
its first n updates (DINO's last layer; see `ssl_jax.optim.make`).

`batch` holds `image` (uint8 `[B, H, W, 3]`) for single-view methods, or one float `[B, V, H, W, 3]` array per view
group (augmented on the device and normalised, see `ssl_jax.augment`), plus `label` and `index` `[B]`.
"""

from ssl_jax.methods import byol
from ssl_jax.methods import classify
from ssl_jax.methods import dino
from ssl_jax.methods import mae
from ssl_jax.methods import mocov3
from ssl_jax.methods import simclr

METHODS = {
    "byol": byol,
    "classify": classify,
    "dino": dino,
    "mae": mae,
    "mocov3": mocov3,
    "simclr": simclr,
}


def create(name: str, **kwargs):
  """Builds the method `name` with its keyword arguments (see each module's `create`)."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}.")
  return METHODS[name].create(**kwargs)

"""Self-supervised methods behind one contract; `config.method.name` picks the module from `METHODS`.

A method module exposes `create(*, model, image_shape, **hyperparameters) -> Method`, where `Method` has

  init(rng, batch) -> (params, extra)          # logically partitioned (boxed) parameters; extra: teachers, centres
  loss(params, extra, batch, rng, step) -> (loss, (metrics, new_extra))      # pure, for the global batch
  after_update(params, extra, step) -> extra                                 # e.g. an EMA teacher
  representation(params, extra, images) -> [B, D] features                   # for the evaluators
"""

from ssl_jax.methods import mae

METHODS = {
    "mae": mae,
}


def create(name: str, **kwargs):
  """Builds the method `name` with its keyword arguments (see each module's `create`)."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}.")
  return METHODS[name].create(**kwargs)

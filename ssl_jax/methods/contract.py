"""What the trainer tells every method about the run (besides its own hyperparameters)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """Facts of the run a method may need for its schedules and inputs.

  Attributes:
    image_shape: (H, W, C) of single-view training images (`config.data.image_size`).
    views: view group name -> (count, size) for multi-view methods, in the order the groups are processed (name
      order); empty for single-view methods, which get `batch["image"]`.
    total_steps: optimizer steps of the whole run (for momentum and temperature schedules).
    steps_per_epoch: optimizer steps per epoch (for epoch-based schedule hyperparameters of the papers).
    num_classes: labels of the training split, when it has them (for an online linear probe); None otherwise.
  """
  image_shape: tuple[int, int, int]
  views: tuple[tuple[str, int, int], ...] = ()
  total_steps: int = 1
  steps_per_epoch: int = 1
  num_classes: int | None = None

  def view_count(self, name: str) -> int:
    for n, count, _ in self.views:
      if n == name:
        return count
    raise ValueError(f"this method needs the view group {name!r} in config.data.views; the config has "
                     f"{[n for n, _, _ in self.views] or 'none'}.")


def freeze(spec: dict) -> tuple:
  """A hashable form of a keyword dict (lists become tuples), for frozen method dataclasses; `dict(...)` undoes it."""
  fix = lambda v: tuple(fix(x) for x in v) if isinstance(v, (list, tuple)) else v
  return tuple(sorted((k, fix(v)) for k, v in spec.items()))

"""Orbax checkpoints: train state, Grain iterator state and the config saved together as one atomic step.

Saves are asynchronous (training goes on while the arrays are written); a step directory becomes visible to
`latest_step` only once Orbax has committed it, so a crash mid-save never leaves a step that would be restored.
States restore straight into the shardings of the current mesh, whatever mesh wrote them.
"""

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

# Config keys that define the experiment: a workdir holding a run with other values is not resumed.
IDENTITY_KEYS = ("method", "model", "batch_size", "seed", "data.name", "data.image_size")


class Checkpointer:
  """A `CheckpointManager` with three items per step: `state`, `data` (Grain iterator) and `config` (JSON)."""

  def __init__(self, directory: str | epath.Path, *, keep: int = 3, async_save: bool = True):
    self.directory = epath.Path(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._mngr = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=dict(state=ocp.StandardCheckpointHandler(), data=grain.checkpoint.CheckpointHandler(),
                           config=ocp.JsonCheckpointHandler()))

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, step: int, state, data_iterator, config: dict) -> None:
    """Starts an asynchronous save of `step` (waits for the previous save first)."""
    self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
        config=ocp.args.JsonSave(config)), force=True)

  def restore(self, step: int, abstract_state, data_iterator):
    """Restores `step` into `abstract_state`'s shapes and shardings; sets `data_iterator` to its saved position."""
    out = self._mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return out["state"]

  def saved_config(self, step: int) -> dict:
    return self._mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.close()


def _lookup(d: dict, dotted: str):
  for part in dotted.split("."):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d


def identity_differences(saved: dict, current: dict, keys=IDENTITY_KEYS) -> list[str]:
  """The dotted keys among `keys` whose values differ between two configs (as JSON-like dicts)."""
  import json
  norm = lambda v: json.loads(json.dumps(v))  # tuples vs lists, as JSON stores them
  return [k for k in keys if norm(_lookup(saved, k)) != norm(_lookup(current, k))]


def abstract_like(shapes, shardings):
  """`ShapeDtypeStruct`s with shardings: the target of a restore onto the current mesh."""
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)

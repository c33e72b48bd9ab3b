"""Orbax checkpoints: train state, Grain iterator state and the config saved together as one atomic step.

Saves are asynchronous (training goes on while the arrays are written); a step directory becomes visible to Orbax
only once it is committed, so a crash mid-save never leaves a step that would be restored. On restore every
candidate step is checked first (commit markers present, no link leading out of the checkpoint directory); a step
that fails the check or fails to load is moved aside to `<workdir>/checkpoints_damaged/` (never deleted) and the
previous step is tried. States restore straight into the shardings of the current mesh, whatever mesh wrote them.
"""

import datetime
import json
import os
import shutil
import warnings

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint._src.metadata import array_metadata_store

# Config keys that define the experiment: a workdir holding a run with other values is not resumed.
# The SHA-256 of a text run's tokenizer (`ssl_jax.data.text.tokenizer_digest`), which the trainer adds to the config
# it saves: token ids mean nothing under another tokenizer.
TOKENIZER_KEY = "data.text.tokenizer_sha256"
IDENTITY_KEYS = ("method", "model", "batch_size", "seed", "data.name", "data.image.size", "data.audio.sample_rate",
                 "data.audio.max_length", TOKENIZER_KEY)
# Where runs saved by earlier versions of the config schema kept an identity key.
_FORMER_KEYS = {"data.image.size": "data.image_size"}
# Identity keys recorded since a later version: a run saved before one existed matches any value.
_RECORDED_SINCE = {TOKENIZER_KEY}
ITEMS = ("state", "data", "config")
COMMIT_MARKER = "commit_success.txt"


class ConfigMismatch(ValueError):
  """The workdir holds a run of another experiment."""


class StateMismatch(ValueError):
  """The workdir's newest step holds other arrays, or arrays of other shapes, than the current code builds (another
  ssl_jax version's parameter or optimizer-state layout); args: (step, differences)."""


class CheckpointWriteError(RuntimeError):
  """An (asynchronous) checkpoint write failed: disk full, permissions, a vanished directory..."""


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """Orbax's pytree handler with its standard type handlers (the format `StandardCheckpointHandler` writes and
  reads), except that replicated arrays are written cooperatively by their replicas only when several processes
  hold them.

  Orbax's default on CPUs and TPUs (`use_replica_parallel`) splits every replicated array into one slice per
  replica, each cut by an eagerly dispatched `lax.slice`, so that replicas on several hosts share the write. In one
  process every replica is on the same host and the same disk, and the slicing is pure overhead: a tiny run on 8
  CPU devices spent 4.5 of its 26 s in saves (0.4 s with whole arrays), most of it compiling and dispatching slices.
  """
  # The array-metadata store is Orbax's own default for jax.Array (its module is not exported under a public name).
  arrays = ocp.type_handlers.ArrayHandler(use_replica_parallel=jax.process_count() > 1,
                                          array_metadata_store=array_metadata_store.Store())
  scalars = ocp.type_handlers.ScalarHandler()
  registry = ocp.type_handlers.create_type_handler_registry(
      (int, scalars), (float, scalars), (bytes, scalars), (np.number, scalars),
      (np.ndarray, ocp.type_handlers.NumpyHandler()), (jax.Array, arrays), (str, ocp.type_handlers.StringHandler()))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


def _restore_args(abstract_state) -> ocp.args.PyTreeRestore:
  """Restores into `abstract_state`'s shapes, dtypes and shardings (what `StandardRestore` does)."""
  return ocp.args.PyTreeRestore(item=abstract_state,
                                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state))


class Checkpointer:
  """A `CheckpointManager` with three items per step: `state`, `data` (Grain iterator) and `config` (JSON)."""

  def __init__(self, directory: str | epath.Path, *, keep: int = 3, async_save: bool = True,
               timeout_s: int = 1200):
    """`timeout_s` bounds how long an asynchronous save (and its cross-host barrier) may take before it fails."""
    self.directory = epath.Path(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save,
                                           async_options=ocp.AsyncOptions(timeout_secs=timeout_s))
    self._mngr = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=dict(state=_state_handler(), data=grain.checkpoint.CheckpointHandler(),
                           config=ocp.JsonCheckpointHandler()))

    self._pending = None

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def _write_error(self, e: Exception) -> CheckpointWriteError:
    return CheckpointWriteError(
        f"writing checkpoint step {self._pending} to {self.directory} failed ({type(e).__name__}: {e}). The "
        f"committed steps {sorted(self._mngr.all_steps())} are intact; free space or fix the directory, then rerun "
        "the same command to resume.")

  def save(self, step: int, state, data_iterator, config: dict) -> None:
    """Starts an asynchronous save of `step`.

    Raises:
      CheckpointWriteError: the previous asynchronous save failed (Orbax reports it here), or this one cannot start.
    """
    try:
      self._mngr.save(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
          config=ocp.args.JsonSave(config)), force=True)
    except Exception as e:  # noqa: BLE001 -- re-raised with the step and what to do
      raise self._write_error(e) from e
    self._pending = step

  def restore(self, step: int, abstract_state, data_iterator):
    """Restores `step` into `abstract_state`'s shapes and shardings; sets `data_iterator` to its saved position.

    A step written by another number of processes restores too: the arrays onto the current mesh (Orbax), and the
    data position from process 0's iterator state — every process's stream is the same dataset sliced by process
    (`ssl_jax.data.pipeline`), so the state (a position within the slice, `next_index`) is the same for all of them.
    """
    data_dir = self.directory / str(step) / "data"
    mine = data_dir / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if mine.exists():
      out = self._mngr.restore(step, args=ocp.args.Composite(
          state=_restore_args(abstract_state), data=grain.checkpoint.CheckpointRestore(data_iterator)))
      return out["state"]
    written = sorted(data_dir.glob("process_0-of-*.json"))
    if not written:
      raise FileNotFoundError(f"checkpoint step {step} has no data iterator state in {data_dir}.")
    out = self._mngr.restore(step, args=ocp.args.Composite(state=_restore_args(abstract_state)))
    data_iterator.set_state(json.loads(written[0].read_text()))
    return out["state"]

  def saved_config(self, step: int) -> dict:
    return self._mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  @property
  def _local(self) -> bool:
    return "://" not in str(self.directory)

  def damage(self, step: int) -> str | None:
    """Why the files of `step` cannot be trusted, or None. Reads only inside the checkpoint directory."""
    return step_damage(self.directory, step)

  def quarantine(self, step: int) -> str:
    """Moves a damaged step out of Orbax's view, to `checkpoints_damaged/<step>-<time>/` beside it.

    On an object store (gs://) nothing is moved (a directory "move" there is a copy and a delete); the step stays.
    """
    if not self._local:
      return f"nowhere: it stays at {self.directory / str(step)} on the object store"
    target = f"{self.directory.parent / 'checkpoints_damaged'}/{step}-{_now()}"
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(str(self.directory / str(step)), target)
    multihost_utils.sync_global_devices(f"ssl_jax quarantine {step}")
    self._mngr.reload()
    return target

  def restore_latest(self, abstract_state, data_iterator, config: dict):
    """The state of the newest intact step, falling back past damaged ones; None when there is none.

    Raises:
      ConfigMismatch: the newest intact step was written by a different experiment (see IDENTITY_KEYS).
      StateMismatch: the newest intact step's arrays have other shapes than `abstract_state`'s (written by a version
        of ssl_jax with another parameter layout): intact, so it is neither moved nor skipped.
    """
    steps = sorted(self._mngr.all_steps(), reverse=True)
    for step in steps:      # another experiment's workdir is refused before anything in it is moved aside
      try:
        saved = self.saved_config(step)
      except Exception:  # noqa: BLE001 -- unreadable: judged with the damage below
        continue
      if diffs := identity_differences(saved, config):
        raise ConfigMismatch(diffs)
      break
    for step in steps:
      reason = self.damage(step)
      if reason is None:
        try:
          diffs = identity_differences(self.saved_config(step), config)
        except Exception as e:  # noqa: BLE001 -- any failure to read the step means it is damaged
          reason = f"its config cannot be read: {type(e).__name__}: {e}"
        else:
          if diffs:
            raise ConfigMismatch(diffs)
          try:
            shapes = state_differences(self._mngr.item_metadata(step)["state"], abstract_state)
          except Exception:  # noqa: BLE001 -- unreadable metadata: the restore below says why
            shapes = []
          if shapes:
            raise StateMismatch(step, shapes)
          try:
            return self.restore(step, abstract_state, data_iterator)
          except Exception as e:  # noqa: BLE001
            reason = f"it cannot be restored: {type(e).__name__}: {e}"
      moved = self.quarantine(step)
      warnings.warn(f"checkpoint step {step} is damaged ({reason}); moved it to {moved} and falling back to the "
                    "previous step", RuntimeWarning, stacklevel=2)
    return None

  def wait(self) -> None:
    """Blocks until the last save is committed; raises CheckpointWriteError if it failed."""
    try:
      self._mngr.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise self._write_error(e) from e

  def close(self) -> None:
    """Waits for pending writes and releases the manager; a write error surfaces here if nothing else reported it."""
    try:
      self._mngr.close()
    except Exception as e:  # noqa: BLE001
      raise self._write_error(e) from e


def step_damage(directory, step: int) -> str | None:
  """Why the files of checkpoint `step` under `directory` cannot be trusted (a missing commit marker, a symbolic
  link leading out of `directory`), or None. Reads only inside `directory`."""
  directory = epath.Path(directory)
  for item in ("",) + ITEMS:
    if not (directory / str(step) / item / COMMIT_MARKER).exists():   # epath: local or object store
      return f"{step}/{item + '/' if item else ''}{COMMIT_MARKER} is missing"
  if "://" in str(directory):
    return None        # object stores have no symbolic links
  root = os.path.realpath(str(directory))
  step_dir = os.path.join(str(directory), str(step))
  for dirpath, dirnames, filenames in os.walk(step_dir, followlinks=False):
    for name in dirnames + filenames:
      path = os.path.join(dirpath, name)
      if os.path.islink(path) and not os.path.realpath(path).startswith(root + os.sep):
        return f"{os.path.relpath(path, str(directory))} links outside the checkpoint directory"
  return None


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def archive_run(workdir: str) -> str | None:
  """Moves a previous run's outputs in `workdir` to `workdir/archive/<time>/` (for an explicit restart)."""
  names = [n for n in ("checkpoints", "checkpoints_damaged", "metrics.jsonl", "tensorboard", "example_ids",
                       "tokenizer.json")
           if os.path.exists(os.path.join(workdir, n))]
  if not names:
    return None
  target = os.path.join(workdir, "archive", _now())
  if jax.process_index() == 0:
    os.makedirs(target)
    for n in names:
      shutil.move(os.path.join(workdir, n), os.path.join(target, n))
  multihost_utils.sync_global_devices("ssl_jax archive")
  return target


def _lookup(d: dict, dotted: str):
  for part in dotted.split("."):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d


# Model keys that change how the model runs but not what it computes (nor its parameters): a run may resume with
# other values (e.g. turn on rematerialisation to fit memory), and runs saved before they existed still match.
EXECUTION_KEYS = ("remat", "scan", "attention_impl")


def _path_name(path) -> str:
  """'params/encoder/block0/attn/qkv_kernel' for a key path, whichever pytree node types it went through."""
  names = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        names.append(str(getattr(key, attr)))
        break
    else:
      names.append(str(key))
  return "/".join(names)


def state_differences(stored, abstract_state, limit: int = 3) -> list[str]:
  """What differs between the arrays of a stored state (Orbax's metadata) and `abstract_state`: "path: stored (a, b),
  this code builds (b, a)" for an array in both with another shape, "path: not in the checkpoint" for one the code
  builds that the step lacks, "path: stored, not built by this code" for the converse (another parameter or
  optimizer-state layout); at most `limit` of them, then a count of the rest."""
  stored_shapes = {_path_name(p): tuple(m.shape) for p, m in jax.tree_util.tree_leaves_with_path(stored)
                   if getattr(m, "shape", None) is not None}
  built = {_path_name(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(abstract_state)}
  diffs = [f"{name}: stored {stored_shapes[name]}, this code builds {shape}" if name in stored_shapes
           else f"{name}: not in the checkpoint"
           for name, shape in built.items() if stored_shapes.get(name) != shape]
  diffs += [f"{name}: stored, not built by this code" for name in stored_shapes if name not in built]
  return diffs[:limit] + ([f"and {len(diffs) - limit} more"] if len(diffs) > limit else [])


def identity_differences(saved: dict, current: dict, keys=IDENTITY_KEYS) -> list[str]:
  """The dotted keys among `keys` whose values differ between two configs (as JSON-like dicts), ignoring the
  model's `EXECUTION_KEYS` and its unset (None) fields, which mean the default (`arch` unset means "vit"); a key the
  config schema has moved is read from its former place in runs saved before the move (`_FORMER_KEYS`)."""
  def norm(key, config):
    value = _lookup(config, key)
    if value is None and key in _FORMER_KEYS:
      value = _lookup(config, _FORMER_KEYS[key])
    value = json.loads(json.dumps(value))  # tuples vs lists, as JSON stores them
    if key == "model" and isinstance(value, dict):
      value = {k: v for k, v in dict(dict(arch="vit"), **value).items() if k not in EXECUTION_KEYS and v is not None}
    return value
  return [k for k in keys if norm(k, saved) != norm(k, current)
          and not (k in _RECORDED_SINCE and _lookup(saved, k) is None)]


def abstract_like(shapes, shardings):
  """`ShapeDtypeStruct`s with shardings: the target of a restore onto the current mesh."""
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)

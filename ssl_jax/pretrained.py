"""Pretrained encoders from a pretraining workdir, for `config.init_from`, standalone evaluation and export.

`open_workdir(workdir)` finds the newest intact checkpoint (read-only: nothing in the workdir is moved or written),
rebuilds the pretraining method from the config saved beside it, and knows the encoder it releases: one tower of the
method's `encoders(params, extra)` (`"image"` by default; DINO's is its teacher). `Source.variables()` then reads
only the parameters and method state of that step (not the optimizer state) into host memory, so that they can be
placed on any mesh. `merge` copies them into a freshly initialised encoder by parameter path, with a report of what
was loaded.
"""

import dataclasses
import re

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from ssl_jax import checkpoint
from ssl_jax import config as config_lib
from ssl_jax import convert
from ssl_jax import methods
from ssl_jax.data import inputs
from ssl_jax.methods import contract
from ssl_jax.runtime import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Source:
  """A pretraining run's newest intact checkpoint, and the tower of its method's `encoders` it releases."""
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  method: contract.Method
  _metadata: dict
  tower: str = "image"

  @property
  def label(self) -> str:
    return f"{self.workdir} (step {self.step})"

  @property
  def spec(self) -> dict:
    """The released encoder's `backbone.create` keywords."""
    return self.method.encoders(self._metadata["params"], self._metadata["extra"])[self.tower][0]

  def state(self) -> tuple[dict, dict]:
    """The run's `(params, extra)` as numpy arrays."""
    path = epath.Path(self.workdir) / "checkpoints" / str(self.step) / "state"
    item = {k: self._metadata[k] for k in ("params", "extra")}
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    with ocp.PyTreeCheckpointer() as ckptr:
      state = ckptr.restore(path, args=ocp.args.PyTreeRestore(item=item, restore_args=args, partial_restore=True))
    return state["params"], state["extra"]

  def variables(self) -> dict:
    """The released encoder's variables (`{"params": ..., "batch_stats": ...}`) as numpy arrays."""
    return self.method.encoders(*self.state())[self.tower][1]

  def shapes(self) -> dict:
    """The released encoder's variables as Orbax metadata (their `.shape`s), without reading any array."""
    return self.method.encoders(self._metadata["params"], self._metadata["extra"])[self.tower][1]


@dataclasses.dataclass(frozen=True)
class FileSource:
  """A timm ViT safetensors file (public weights) as a pretrained source: see `ssl_jax.convert.load_timm_vit`."""
  workdir: str
  spec: dict
  _variables: dict
  tower: str = "image"

  @property
  def label(self) -> str:
    return f"{self.workdir} (timm safetensors)"

  def variables(self) -> dict:
    return self._variables

  def shapes(self) -> dict:
    return self._variables


def open_source(init_from: str, model: dict):
  """`config.init_from` as a source: a pretraining workdir, or a timm ViT `.safetensors` file (whose head count and
  pooled feature come from `model["num_heads"]` and `model["pool"]` when set). Relative paths are taken from the
  current directory."""
  init_from = workdir_lib.absolute(init_from)
  if init_from.endswith(".safetensors"):
    if not epath.Path(init_from).exists():
      raise FileNotFoundError(f"config.init_from={init_from!r} does not exist.")
    spec, variables = convert.load_timm_vit(str(init_from), num_heads=model.get("num_heads"),
                                            pool=model.get("pool") or "cls")
    return FileSource(workdir=str(init_from), spec=spec, _variables=variables)
  return open_workdir(init_from)


def _intact_steps(directory: epath.Path) -> list[int]:
  if not directory.exists():
    return []
  steps = sorted((int(p.name) for p in directory.iterdir() if p.name.isdigit()), reverse=True)
  return [s for s in steps if checkpoint.step_damage(directory, s) is None]


def open_runs(method_config) -> dict[str, Source]:
  """The other runs a method reads (`contract.Method.reads_runs`), by hyperparameter, from `method_config`
  (`config.method`): each set one opened as `open_workdir` opens an `init_from` (its newest intact checkpoint)."""
  cls = methods.get(method_config["name"])
  out = {}
  for name in cls.reads_runs:
    value = method_config.get(name)
    if value:
      out[name] = open_workdir(value, what=f"config.method.{name}")
  return out


def create_method(name: str, hyperparameters: dict, runs: dict[str, Source] | None = None,
                  **kwargs) -> contract.Method:
  """`methods.create(name, ...)` with the other runs the method reads (`runs`, by default opened here by
  `open_runs`) passed as `runs`: their methods."""
  if methods.get(name).reads_runs:
    runs = open_runs(dict(hyperparameters, name=name)) if runs is None else runs
    kwargs["runs"] = {k: src.method for k, src in runs.items()}
  return methods.create(name, **kwargs, **hyperparameters)


def open_workdir(workdir: str, tower: str | None = None, what: str = "config.init_from") -> Source:
  """The newest intact checkpoint of the pretraining run in `workdir` (local or gs://), releasing `tower` (default:
  the encoder of the run's modality, "image", "text" or "audio"; an image-text run's image tower).

  Raises:
    FileNotFoundError: no intact checkpoint there (the message says what was found).
    ValueError: the run's method releases no encoder named `tower`.
  """
  workdir = workdir_lib.absolute(workdir)          # Orbax reads absolute paths only
  directory = epath.Path(workdir) / "checkpoints"
  steps = _intact_steps(directory)
  if not steps:
    raise FileNotFoundError(f"{what}={workdir!r} holds no complete checkpoint (looked in {directory}); "
                            "point it at the --workdir of a pretraining run that saved at least one step.")
  step = steps[0]
  with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
    config = ml_collections.ConfigDict(config_lib.upgrade(ckptr.restore(directory / str(step) / "config")))
  metadata = ocp.PyTreeCheckpointHandler().metadata(directory / str(step) / "state").tree
  method = build_method(config, vocab_size=saved_vocab_size(workdir))
  towers = method.encoders(metadata["params"], metadata["extra"])
  if tower is None:
    tower = "image" if "image" in config.data else "audio" if "audio" in config.data else "text"
  if tower not in towers:
    raise ValueError(f"the {config.method.name!r} run in {workdir} releases the encoders {sorted(towers)}, not "
                     f"{tower!r}.")
  return Source(workdir=str(workdir), step=step, config=config, method=method, _metadata=metadata, tower=tower)


def saved_vocab_size(workdir: str) -> int | None:
  """The vocabulary of a text run's `workdir/tokenizer.json` (the trainer writes it), or None."""
  path = epath.Path(workdir) / "tokenizer.json"
  if not path.exists():
    return None
  from tokenizers import Tokenizer
  return Tokenizer.from_str(path.read_text()).get_vocab_size()


def build_method(config: ml_collections.ConfigDict, vocab_size: int | None = None):
  """The method of a (saved) config, enough to name its parameters: no data, schedules or labels (a text model's
  vocabulary is `vocab_size` unless its config sets it)."""
  run = contract.RunInfo(inputs=inputs.method_inputs(config.data), total_steps=1, steps_per_epoch=1, num_classes=None,
                         vocab_size=vocab_size)
  hp = {k: v for k, v in config.method.to_dict().items() if k != "name"}
  return create_method(config.method.name, hp, model=config.model.to_dict(), run=run)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
  """A nested dict as `{'/'-joined path: leaf}`."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}/"))
    else:
      out[prefix + k] = v
  return out


def _unflatten(flat: dict[str, object]) -> dict:
  out: dict = {}
  for path, v in flat.items():
    node = out
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def resize_pos_embedding(table: np.ndarray, num_tokens: int) -> np.ndarray:
  """A learned position-embedding table `[1, g*g, D]` resized to `[1, num_tokens, D]` (square grids), bicubically
  over the grid as MAE's `interpolate_pos_embed` does when fine-tuning at another resolution."""
  old, new = int(round(table.shape[1] ** 0.5)), int(round(num_tokens ** 0.5))
  if old * old != table.shape[1] or new * new != num_tokens:
    raise ValueError(f"cannot resize a position embedding of {table.shape[1]} tokens to {num_tokens}: not square.")
  grid = table.reshape(old, old, -1)
  resized = jax.image.resize(grid, (new, new, grid.shape[-1]), method="cubic")
  return np.asarray(resized).reshape(1, new * new, -1).astype(table.dtype)


@dataclasses.dataclass(frozen=True)
class MergeReport:
  loaded: tuple[str, ...]
  missing: tuple[str, ...]        # in the new encoder, not in the pretrained one: left at initialisation
  unused: tuple[str, ...]         # in the pretrained encoder, not in the new one
  resized: tuple[str, ...]

  def summary(self) -> str:
    lines = [f"loaded {len(self.loaded)} pretrained arrays"]
    if self.resized:
      lines.append(f"resized: {', '.join(self.resized)}")
    if self.missing:
      lines.append(f"kept at initialisation (not in the pretrained encoder): {', '.join(self.missing)}")
    if self.unused:
      lines.append(f"not used from the pretrained encoder: {', '.join(self.unused)}")
    return "; ".join(lines)


def _resizable(path: str, stored: tuple, wanted: tuple) -> bool:
  """A learned position embedding `[1, T, D]` of another grid, which `merge` resizes."""
  return bool(re.search(r"(^|/)pos_embedding$", path)) and len(stored) == 3 and stored[2] == wanted[2]


def check_fit(target: dict, pretrained: dict) -> None:
  """Raises `merge`'s errors from the shapes alone (of arrays, ShapeDtypeStructs or Orbax metadata): the run
  checks a pretrained encoder this way before it writes anything.

  Raises:
    ValueError: shapes disagree, or nothing at all matches (the encoders are not the same architecture).
  """
  t, p = flatten(target), flatten(pretrained)
  shape = lambda x: tuple(x.shape)
  mismatched = [f"{path}: pretrained {shape(p[path])} vs {shape(leaf)}" for path, leaf in t.items()
                if path in p and shape(p[path]) != shape(leaf) and not _resizable(path, shape(p[path]), shape(leaf))]
  if mismatched:
    raise ValueError("the pretrained encoder does not fit the configured one: " + "; ".join(mismatched) +
                     ". Leave config.model's architecture keys unset to take the pretrained run's.")
  if not any(path in p for path in t):
    raise ValueError(f"no pretrained array matches the configured encoder (its arrays: {sorted(p)[:5]}...; the "
                     f"encoder's: {sorted(t)[:5]}...).")


def merge(target: dict, pretrained: dict) -> tuple[dict, MergeReport]:
  """Copies `pretrained` variables into `target` (a freshly initialised encoder's variables) by path.

  Arrays are taken where the paths match and the shapes agree; a learned `pos_embedding` of another grid is
  resized; any other shape disagreement is an error. The result keeps `target`'s structure (and its leaves where
  nothing was loaded); loaded leaves are numpy arrays of the target's dtype.

  Raises:
    ValueError: see `check_fit`.
  """
  check_fit(target, pretrained)
  t, p = flatten(target), flatten(pretrained)
  out, loaded, resized = dict(t), [], []
  for path, leaf in t.items():
    if path not in p:
      continue
    value = np.asarray(p[path])
    if value.shape != tuple(leaf.shape):
      value = resize_pos_embedding(value, leaf.shape[1])
      resized.append(path)
    out[path] = value.astype(leaf.dtype)
    loaded.append(path)
  report = MergeReport(tuple(loaded), tuple(k for k in t if k not in p), tuple(k for k in p if k not in t),
                       tuple(resized))
  return _unflatten(out), report

"""Optimizers and learning-rate schedules as optax chains, from keyword arguments."""

import math
import re

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("adamw", "lars", "lamb", "sgd")
SCHEDULES = ("cosine", "linear", "constant", "step")


LR_SCALINGS = ("linear", "sqrt")


def peak_learning_rate(base_lr: float, batch_size: int, lr_batch_base: int = 256, scaling: str = "linear") -> float:
  """`base_lr` scaled to the batch: "linear" (Goyal et al. 2017; MAE, MoCo v3, SimCLR, DINO),
  `base_lr * batch_size / lr_batch_base`, or "sqrt" (DINOv2's `sqrt_wrt_1024`), `base_lr * sqrt(batch_size /
  lr_batch_base)`."""
  if scaling == "linear":
    return base_lr * batch_size / lr_batch_base
  if scaling == "sqrt":
    return base_lr * (batch_size / lr_batch_base) ** 0.5
  raise ValueError(f"optim.lr_scaling={scaling!r}: use one of {LR_SCALINGS}.")


def lr_schedule(*, peak_lr: float, warmup_steps: int, total_steps: int, schedule: str = "cosine",
                min_lr: float = 0.0, init_lr: float = 0.0, decay_steps: tuple[int, ...] = (),
                decay_factor: float = 0.1) -> optax.Schedule:
  """Linear warm-up from `init_lr` (0; I-JEPA starts at a fifth of its peak) to `peak_lr` over `warmup_steps`, then
  half-cycle cosine to `min_lr` at `total_steps` (MAE's `adjust_learning_rate`, per step rather than per fractional
  epoch), linear decay to `min_lr` at `total_steps` (BERT's `polynomial_decay` with power 1), constant, or "step":
  piecewise constant, multiplied by `decay_factor` at each of the steps `decay_steps` (RotNet's and the jigsaw
  puzzle's lr table, e.g. 0.01 then x0.1 at epochs 15, 30, 45)."""
  if schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(init_lr, peak_lr, warmup_steps, max(total_steps, warmup_steps + 1),
                                              end_value=min_lr)
  warmup = optax.linear_schedule(init_lr, peak_lr, warmup_steps)
  if schedule == "linear":
    return optax.join_schedules([warmup, optax.linear_schedule(peak_lr, min_lr, max(total_steps - warmup_steps, 1))],
                                [warmup_steps])
  if schedule == "constant":
    return optax.join_schedules([warmup, optax.constant_schedule(peak_lr)], [warmup_steps])
  if schedule == "step":
    if list(decay_steps) != sorted(set(decay_steps)) or any(s <= warmup_steps for s in decay_steps):
      raise ValueError(f"lr_schedule: decay_steps {tuple(decay_steps)} must increase and come after the warm-up "
                       f"({warmup_steps} steps).")
    steps = optax.piecewise_constant_schedule(peak_lr, {int(s) - warmup_steps: decay_factor for s in decay_steps})
    return optax.join_schedules([warmup, steps], [warmup_steps])
  raise ValueError(f"unknown lr schedule {schedule!r}; use one of {SCHEDULES}.")


def decay_mask(params, no_decay_names=("pos_embedding",), biases_and_norms: bool = False):
  """True for parameters that get weight decay: matrices and larger, except biases (`*bias`) and `no_decay_names`.

  Biases and LayerNorm/BatchNorm parameters are excluded, as in MAE, DINO, BYOL and SimCLR, unless
  `biases_and_norms` (MoCo v3's AdamW decays every parameter: `AdamW(model.parameters(), ...)`). The [CLS] and mask
  tokens are decayed, as in the official MAE pretraining code (timm's `add_weight_decay` skips only 1-D tensors).
  """
  def keep(path, x):
    # The last dict key names the parameter (boxed parameters add an attribute key after it).
    name = next((k.key for k in reversed(path) if isinstance(k, jax.tree_util.DictKey)), None)
    if name in no_decay_names:
      return False
    return biases_and_norms or (x.ndim > 1 and not name.endswith("bias"))
  return jax.tree_util.tree_map_with_path(keep, params)


def param_path(path) -> str:
  """'/'-joined dict keys of a parameter's tree path ("net/encoder/vit/embedding/kernel")."""
  return "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def param_groups(params, frozen_patterns, frozen_until=(), constant_lr=()) -> object:
  """Each parameter's group: "frozen" (its path fully matches one of the regexes `frozen_patterns`), "from_<n>"
  (it matches the regex of a `(regex, n)` pair of `frozen_until`: trained from step n), "constant" (it matches one
  of `constant_lr`: trained at the peak learning rate throughout), "probe" (under the top-level key "probe": an
  online linear probe) or "trained".

  Raises:
    ValueError: a pattern matches no parameter (a typo would otherwise train what was meant to stay frozen).
  """
  compiled = [(re.compile(p), "frozen") for p in frozen_patterns]
  compiled += [(re.compile(p), f"from_{int(n)}") for p, n in frozen_until]
  compiled += [(re.compile(p), "constant") for p in constant_lr]
  used = set()

  def group(path, _):
    name = param_path(path)
    hits = [(c.pattern, g) for c, g in compiled if c.fullmatch(name)]
    used.update(p for p, _ in hits)
    if hits:
      return hits[0][1]
    return "probe" if name.startswith("probe/") else "trained"
  groups = jax.tree_util.tree_map_with_path(group, params)
  paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for what, patterns in (("config.optim.frozen", frozen_patterns),
                         ("the method's frozen_until", [p for p, _ in frozen_until]),
                         ("config.optim.constant_lr", constant_lr)):
    unused = [p for p in patterns if p not in used]
    if unused:
      raise ValueError(f"{what}: {unused} match no parameter path (full match); the paths look like {paths[:3]}...")
  return groups


def layer_id(path: str, num_blocks: int) -> int:
  """A ViT parameter's depth for layer-wise lr decay (BEiT; MAE's `get_layer_id_for_vit`; DINOv2's
  `get_vit_lr_decay_rate`): the patch embedding, [CLS] and [MASK] tokens and position embedding are layer 0, block i
  is layer i + 1, everything after the blocks (final norm, pooling norm, head) is layer `num_blocks + 1`."""
  block = re.search(r"(?:^|/)block(\d+)/", path)
  if block:
    return int(block.group(1)) + 1
  if re.search(r"(?:^|/)(embedding|cls|pos_embedding|mask_token)(?:/|$)", path):
    return 0
  return num_blocks + 1


def scale_by_layer_decay(decay: float) -> optax.GradientTransformation:
  """Multiplies each update by `decay ** (num_blocks + 1 - layer_id)` (layer-wise lr decay, Clark et al. 2020; BEiT,
  MAE fine-tuning). Placed last in the chain, it scales the learning rate of each layer's parameter group, weight
  decay included, exactly as MAE's per-group `lr_scale` does with PyTorch's AdamW."""
  def scale(updates, params=None):
    del params
    paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(updates)[0]]
    blocks = [int(m.group(1)) for p in paths for m in [re.search(r"(?:^|/)block(\d+)/", p)] if m]
    num_blocks = max(blocks) + 1 if blocks else 0
    return jax.tree_util.tree_map_with_path(
        lambda path, u: u * decay ** (num_blocks + 1 - layer_id(param_path(path), num_blocks)), updates)
  return optax.stateless(scale)


def scale_by_pattern(multipliers: tuple[tuple[str, float], ...]) -> optax.GradientTransformation:
  """Multiplies the updates of the parameters whose path (`param_path`) matches a regex (searched) of
  `multipliers`, `(regex, factor)` pairs, by that factor (the product, if several match): their learning rate,
  weight decay included (DINOv2's `patch_embed_lr_mult` 0.2: `(("encoder/embedding/", 0.2),)`)."""
  compiled = [(re.compile(p), float(f)) for p, f in multipliers]

  def scale(updates, params=None):
    del params
    factor = lambda path: math.prod(f for r, f in compiled if r.search(param_path(path)))
    return jax.tree_util.tree_map_with_path(lambda path, u: u * factor(path), updates)
  return optax.stateless(scale)


def _check_matches(params, patterns, what, match) -> None:
  """Refuses regexes (`patterns`) that match no parameter path (a typo would silently change nothing)."""
  paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  unused = [p for p in patterns if not any(match(re.compile(p), q) for q in paths)]
  if unused:
    raise ValueError(f"{what}: {unused} match no parameter path; the paths look like {paths[:3]}...")


def zero_lr_until(pairs: tuple[tuple[str, int], ...]) -> optax.GradientTransformation:
  """Sets to zero the updates of the parameters matching the regex (full match of `param_path`) of a `(regex, n)`
  pair during the first n updates; the optimizer's state (Adam's moments and step count) still accumulates, as
  with a learning rate of 0 (DINOv2's `last_layer_lr_schedule`, 0 during its first epoch)."""
  compiled = [(re.compile(p), int(n)) for p, n in pairs]

  def hold(path):
    return max([n for r, n in compiled if r.fullmatch(param_path(path))] or [0])

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    out = jax.tree_util.tree_map_with_path(
        lambda path, u: jnp.where(state.count >= hold(path), u, jnp.zeros_like(u)) if hold(path) else u, updates)
    return out, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))
  return optax.GradientTransformation(init, update)


def clip_per_module(max_norm: float, depth: int = 2) -> optax.GradientTransformation:
  """Clips the gradients of each module on its own: the parameters whose paths share their first `depth` components
  (`net/vit`, `net/dino`, ...) are scaled by `min(1, max_norm / (their global norm + 1e-6))`, as DINOv2
  calls PyTorch's `clip_grad_norm_` on each of its student's submodels."""
  def clip(updates, params=None):
    del params
    leaves, treedef = jax.tree_util.tree_flatten_with_path(updates)
    modules = ["/".join(param_path(p).split("/")[:depth]) for p, _ in leaves]
    norms = {m: jnp.sqrt(sum(jnp.sum(jnp.square(g)) for (_, g), n in zip(leaves, modules) if n == m))
             for m in dict.fromkeys(modules)}     # in the leaves' order: the same program in every process
    scale = {m: jnp.minimum(1.0, max_norm / (v + 1e-6)) for m, v in norms.items()}
    return jax.tree_util.tree_unflatten(treedef, [g * scale[m] for (_, g), m in zip(leaves, modules)])
  return optax.stateless(clip)


def make(*, name: str, learning_rate: optax.Schedule, weight_decay: float | optax.Schedule = 0.0, b1: float = 0.9,
         b2: float = 0.999, eps: float = 1e-8, momentum: float = 0.9, nesterov: bool = False,
         lr_in_momentum: bool = True,
         grad_clip: float | None = None, grad_clip_mode: str = "global", no_decay_names=("pos_embedding",),
         decay_biases_and_norms: bool = False, frozen=(), frozen_until=(), zero_lr_until_steps=(),
         probe_lr: float = 1e-3, layer_decay: float | None = None,
         lr_multipliers: tuple[tuple[str, float], ...] = (), constant_lr: tuple[str, ...] = (),
         peak_lr: float | None = None) -> optax.GradientTransformation:
  """An optax optimizer with decoupled weight decay masked by `decay_mask`, optionally after gradient clipping.

  Args:
    name: "adamw" (Loshchilov & Hutter), "lars" (You et al.; no adaptation or decay on biases and norms),
      "lamb", or "sgd" (with momentum).
    learning_rate: a schedule (see `lr_schedule`).
    weight_decay: a value, or a schedule of the step (DINO's cosine 0.04 -> 0.4).
    b1, b2, eps, momentum: the optimizer's hyperparameters.
    nesterov: SGD with Nesterov momentum, `p -= lr (g + m v)` after `v = m v + g`, as PyTorch's (RotNet).
    lr_in_momentum: LARS only. True: the momentum accumulates learning-rate-scaled steps, `v = m v + lr g`, as
      SimCLR's TensorFlow LARS and `optax.lars`; False: it accumulates the trust-scaled gradients and the learning
      rate of the current step scales the result, `v = m v + g; p -= lr v`, as BYOL's and MoCo v3's LARS. The two
      differ only while the learning rate changes.
    no_decay_names, decay_biases_and_norms: see `decay_mask`; LARS's trust ratio covers the same parameters (without
      biases and norms, as SimCLR's, BYOL's and the official Barlow Twins and VICReg LARS; with them, as apex's LARC
      that SwAV uses).
    grad_clip: clip the gradients first (None: no clipping), all trained parameters' but the probe's.
    grad_clip_mode: "global" (the norm of all those gradients together), "per_tensor" (each parameter's gradient
      on its own, as DINO's `clip_gradients`) or "per_module" (each module's, `net/vit`, `net/dino`, ...:
      `clip_per_module`, DINOv2).
    frozen: regexes of parameter paths (`param_path`) that are never updated, nor decayed (MoCo v3's patch
      projection).
    frozen_until: `(regex, n)` pairs: those parameters stay untouched for the first n updates — no update, no weight
      decay, and no optimizer state either (moments, step count): their optimizer starts at update n as a fresh one
      would, with the learning rate and weight decay of step n — which is what PyTorch's AdamW does with a parameter
      whose gradient is None (DINO's frozen last layer in its first epoch).
    zero_lr_until_steps: `(regex, n)` pairs: those parameters' learning rate is 0 for the first n updates while
      their optimizer state accumulates (`zero_lr_until`; DINOv2's frozen last layer).
    probe_lr: the parameters under "probe" (an online linear probe on stop-gradient features) are trained by Adam
      at this constant rate, without weight decay, clipping or LARS adaptation (which would never move its zero
      initialisation), as solo-learn trains its online classifier with its own learning rate.
    layer_decay: layer-wise lr decay of a ViT (`scale_by_layer_decay`; MAE fine-tuning: 0.65); None: off.
    lr_multipliers: `(regex, factor)` pairs scaling some parameters' learning rate (`scale_by_pattern`; DINOv2's
      patch embedding: 0.2).
    constant_lr, peak_lr: regexes of parameter paths (full match) trained by the same optimizer at the constant
      learning rate `peak_lr`, outside the schedule (SimSiam's `--fix-pred-lr`: the predictor at the initial lr).
  """
  if constant_lr and peak_lr is None:
    raise ValueError("optim.make: constant_lr needs the peak_lr those parameters are trained at.")
  mask = lambda p: decay_mask(p, no_decay_names, decay_biases_and_norms)
  trust_mask = mask              # LARS adapts what it decays (with biases and norms: apex's LARC, SwAV's optimizer)

  def optimizer(lr, wd):
    if name == "adamw":
      tx = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    elif name == "lars" and lr_in_momentum:
      tx = optax.lars(lr, weight_decay=wd, weight_decay_mask=mask, trust_ratio_mask=trust_mask, momentum=momentum)
    elif name == "lars":
      trust = optax.masked(optax.scale_by_trust_ratio(trust_coefficient=0.001), trust_mask)   # optax.lars's default
      tx = optax.chain(optax.add_decayed_weights(wd, mask), trust, optax.trace(decay=momentum),
                       optax.scale_by_learning_rate(lr))
    elif name == "lamb":
      tx = optax.lamb(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    elif name == "sgd":
      tx = optax.chain(optax.add_decayed_weights(wd, mask), optax.sgd(lr, momentum=momentum, nesterov=nesterov))
    else:
      raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}.")
    tail = ([scale_by_layer_decay(layer_decay)] if layer_decay is not None else []) + (
        [scale_by_pattern(tuple(lr_multipliers))] if lr_multipliers else []) + (
        [zero_lr_until(tuple(zero_lr_until_steps))] if zero_lr_until_steps else [])
    return optax.chain(tx, *tail) if tail else tx

  def starting_at(n):
    # The inner optimizer's own counts start at 0 on update n: its schedules are shifted by n.
    shift = lambda v: (lambda count: v(count + n)) if callable(v) else v
    return optax.transforms.conditionally_mask(optimizer(shift(learning_rate), shift(weight_decay)),
                                               lambda count: count >= n)

  groups = lambda p: param_groups(p, frozen, frozen_until, constant_lr)
  transforms = {"trained": optimizer(learning_rate, weight_decay), "frozen": optax.set_to_zero(),
                "probe": optax.adam(probe_lr)}
  if constant_lr:
    transforms["constant"] = optimizer(peak_lr, weight_decay)
  transforms.update({f"from_{int(n)}": starting_at(int(n)) for _, n in frozen_until})
  tx = optax.multi_transform(transforms, groups)
  if grad_clip:
    clips = {"global": optax.clip_by_global_norm, "per_tensor": clip_per_tensor, "per_module": clip_per_module}
    if grad_clip_mode not in clips:
      raise ValueError(f"grad_clip_mode={grad_clip_mode!r}: use one of {sorted(clips)}.")
    clip = clips[grad_clip_mode](grad_clip)
    clipped = lambda p: jax.tree.map(lambda g: g not in ("frozen", "probe"), groups(p))
    tx = optax.chain(optax.masked(clip, clipped), tx)

  def init(params):
    _check_matches(params, [p for p, _ in lr_multipliers], "optim.lr_multipliers", re.Pattern.search)
    _check_matches(params, [p for p, _ in zero_lr_until_steps], "the method's zero_lr_until", re.Pattern.fullmatch)
    return tx.init(params)
  return optax.GradientTransformation(init, tx.update)


def clip_per_tensor(max_norm: float) -> optax.GradientTransformation:
  """Scales each gradient tensor g to norm at most `max_norm`: `g * min(1, max_norm / (||g|| + 1e-6))` (DINO)."""
  def clip(updates, params=None):
    del params
    return jax.tree.map(lambda g: g * jnp.minimum(1.0, max_norm / (jnp.linalg.norm(g) + 1e-6)), updates)
  return optax.stateless(clip)


def weight_decay_schedule(start: float, end: float | None, total_steps: int) -> float | optax.Schedule:
  """`start`, or a half-cosine from `start` at step 0 to `end` at `total_steps` (DINO's weight decay 0.04 -> 0.4)."""
  if end is None:
    return start

  def schedule(step):
    t = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
  return schedule

"""Building blocks shared by the joint-embedding methods (SimCLR, BYOL, MoCo v3, DINO, Barlow Twins, VICReg, SwAV) and
the pretext tasks (RotNet, jigsaw, colorization, inpainting).

- `Network`: encoder (ViT or ResNet) -> projector (-> predictor), applied with BatchNorm statistics of the global
  batch in training (`forward`: all views as one batch; `per_view_forward`: each view its own batch) and running
  statistics in evaluation.
- `DenseNetwork`: encoder -> a head on its feature map (the pretext tasks' dense predictions: colorization,
  inpainting).
- `flatten_views` / `unflatten_views`: `[B, V, ...]` <-> `[B * V, ...]` without moving data between devices (example
  major, so each device keeps its own examples' views).
- momentum teachers: `init_with_teacher`, `teacher_forward`, `update_teacher` (EMA on a cosine schedule).
- the online linear probe: a linear classifier on the stop-gradient features of the first view, trained beside the
  method (solo-learn and lightly do the same; `ssl_jax.optim` gives it its own Adam), so that accuracy is visible
  while pretraining. Its loss is added to the method's; its gradient never reaches the encoder.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssl_jax import monitors
from ssl_jax.methods import teacher as teacher_lib
from ssl_jax.models import backbone


class Network(nn.Module):
  """`encoder -> projector [-> predictor]`; `__call__` returns (features, projection, prediction or None)."""
  encoder: nn.Module
  projector: nn.Module
  predictor: nn.Module | None = None

  def __call__(self, x, train: bool = False):
    feats, proj = self.embed(x, train)
    pred = self.predictor(proj, train) if self.predictor is not None else None
    return feats, proj, pred

  def embed(self, x, train: bool = False):
    feats = self.encoder(x, train)["pooled"]
    return feats, self.projector(feats, train)

  def encode(self, x, train: bool = False):
    return self.encoder(x, train)["pooled"]

  def project(self, feats, train: bool = False):
    return self.projector(feats, train)

  def features(self, x):
    return self.encoder(x, False)["pooled"]


class DenseNetwork(nn.Module):
  """`encoder -> head` on the encoder's feature map (its tokens, a ViT's [CLS] left out); `__call__` returns (pooled
  features, the head's output): colorization's and inpainting's per-pixel predictions (`heads.PixelHead`)."""
  encoder: nn.Module
  head: nn.Module

  def __call__(self, x, train: bool = False):
    out = self.encoder(x, train)
    class_token = int(getattr(self.encoder, "vit", {}).get("class_token", False))
    return out["pooled"], self.head(out["tokens"][:, class_token:], train)

  def features(self, x):
    return self.encoder(x, False)["pooled"]


def init_network(net: Network, rng, example) -> tuple[Any, Any]:
  """(params, batch_stats) of `net` from one example batch `[N, H, W, 3]` (batch_stats `{}` without BatchNorm)."""
  variables = net.init(rng, example, False)
  return variables["params"], variables.get("batch_stats", {})


def forward(net: Network, params, stats, x, rng=None, method=None):
  """Training-mode apply: outputs and the updated running BatchNorm statistics (unchanged without BatchNorm).

  `rng` feeds stochastic depth (the "dropout" stream) where the encoder has it.
  """
  variables = {"params": params, **({"batch_stats": stats} if stats else {})}
  rngs = {"dropout": rng} if rng is not None else {}
  if not stats:
    return net.apply(variables, x, True, method=method, rngs=rngs), stats
  out, updates = net.apply(variables, x, True, method=method, mutable=["batch_stats"], rngs=rngs)
  return out, updates["batch_stats"]


def apply(net: nn.Module, params, stats, x, *, train: bool, rng=None):
  """`net` on `x`: in training `forward` (batch statistics, updated running ones), else evaluation mode; returns
  (outputs, BatchNorm statistics)."""
  if train:
    return forward(net, params, stats, x, rng)
  return net.apply({"params": params, **({"batch_stats": stats} if stats else {})}, x, False), stats


def per_view_forward(net: Network, params, stats, views: jax.Array, rng):
  """Training-mode apply with each view its own batch (BatchNorm statistics per view over the global batch, the
  running statistics updated once per view), as the official Barlow Twins, VICReg and SimSiam code call the network
  once per view.

  Args:
    views: `[B, V, H, W, 3]` augmented, normalised views.
    rng: stochastic depth (folded in per view).

  Returns:
    (features `[V, B, D]`, projections `[V, B, P]`, predictions `[V, B, Q]` or None, new batch_stats).
  """
  outs = []
  for v in range(views.shape[1]):
    out, stats = forward(net, params, stats, views[:, v], jax.random.fold_in(rng, v))
    outs.append(out)
  feats, proj, pred = zip(*outs)
  return jnp.stack(feats), jnp.stack(proj), None if pred[0] is None else jnp.stack(pred), stats


def multi_crop_forward(net: Network, params, stats, groups: list[jax.Array], rng):
  """Training-mode apply over view groups of different sizes, as DINO's `MultiCropWrapper` and SwAV's multi-resolution
  forward: one encoder pass per group (BatchNorm statistics of that group's crops together), then one projector pass
  over every crop (its statistics over all crops).

  Args:
    groups: view groups `[B, V_i, H_i, W_i, 3]`, the first the global crops.
    rng: stochastic depth (folded in per group).

  Returns:
    (the first group's features `[V_0, B, D]`, the projector's outputs of every crop `[sum V_i, B, ...]` group by
    group (a tree if the projector returns one), the updated BatchNorm statistics).
  """
  feats = []
  for i, views in enumerate(groups):
    f, stats = forward(net, params, stats, flatten_views(views), jax.random.fold_in(rng, i), method=Network.encode)
    feats.append(f.reshape(views.shape[:2] + f.shape[1:]))            # [B, V_i, D]
  count = sum(v.shape[1] for v in groups)
  every = jnp.concatenate(feats, axis=1)                               # [B, sum V_i, D]: each device's own rows
  out, stats = forward(net, params, stats, flatten_views(every), method=Network.project)
  return jnp.swapaxes(feats[0], 0, 1), jax.tree.map(lambda x: unflatten_views(x, count), out), stats


def features(net: nn.Module, params, stats, images: jax.Array) -> jax.Array:
  """Evaluation features `[B, D]` of normalised images `[B, H, W, 3]` (running BatchNorm statistics) of a `Network`
  or `DenseNetwork`."""
  variables = {"params": params, **({"batch_stats": stats} if stats else {})}
  return net.apply(variables, images, method=lambda module, x: module.features(x))


def encoder_variables(net_params: dict, stats: dict) -> dict:
  """The variables of the encoder inside a `Network`'s (params, batch_stats), as `backbone.create(...)` takes them."""
  variables = {"params": net_params["encoder"]}
  if stats and "encoder" in stats:
    variables["batch_stats"] = stats["encoder"]
  return variables


class ReleasesOnlineEncoder:
  """`encoders` and `represent` of a method that releases and evaluates its online network's encoder (the method's
  `net`, a `Network` or `DenseNetwork`, with `params["net"]` and BatchNorm statistics `extra["batch_stats"]`): SimCLR,
  BYOL, MoCo v3, the other joint-embedding methods without a teacher, and the pretext tasks."""

  def encoders(self, params, extra):
    """The online encoder (`backbone.create` keywords, variables), for fine-tuning, probing and export."""
    return {"image": (dict(self.model_spec), encoder_variables(params["net"], extra["batch_stats"]))}

  def represent(self, params, extra, batch):
    return {"image": features(self.net, params["net"], extra["batch_stats"], batch["image"])}


class OnlineNetwork(ReleasesOnlineEncoder):
  """`init` of a method with one network and no teacher (SimSiam, Barlow Twins, VICReg): `{"net", "probe"}`
  parameters (the probe when `num_classes`) and `{"batch_stats"}`, from the first view of `view_group`."""

  def init(self, rng, batch):
    params, stats = init_network(self.net, rng, batch["views"][self.view_group][:, 0])
    return {"net": params, "probe": init_probe(self.num_classes, self.net.encoder.num_features)}, {"batch_stats": stats}


class PairObjective(OnlineNetwork):
  """`loss` of a method whose objective is a function of the two views' projections, each view its own batch through
  `net` (`per_view_forward`), with the online probe on the first view's features: Barlow Twins, VICReg. The method's
  dataclass has `net`, `view_group` and `num_classes`, and defines `objective(z1, z2) -> (loss, metrics)` for
  projections `[B, P]`."""

  def loss(self, params, extra, batch, rng, step):
    del step
    feats, z, _, stats = per_view_forward(self.net, params["net"], extra["batch_stats"],
                                          batch["views"][self.view_group], rng)
    loss, terms = self.objective(z[0], z[1])
    probe, probe_metrics = probe_loss(params["probe"], feats[0], batch.get("label"))
    metrics = dict(probe_metrics, **monitors.collapse_metrics(z[0]), **terms, ssl_loss=loss)
    return loss + probe, (metrics, {"batch_stats": stats})


def flatten_views(x: jax.Array) -> jax.Array:
  """`[B, V, ...]` -> `[B * V, ...]`, example major (a free reshape for a batch sharded on axis 0)."""
  return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unflatten_views(x: jax.Array, num_views: int) -> jax.Array:
  """`[B * V, ...]` -> `[V, B, ...]` (view major, as the losses take views)."""
  x = x.reshape((x.shape[0] // num_views, num_views) + x.shape[1:])
  return jnp.swapaxes(x, 0, 1)


def init_probe(num_classes: int | None, num_features: int) -> dict:
  """Zero-initialised linear probe parameters (empty when there are no labels)."""
  if not num_classes:
    return {}
  return {"kernel": jnp.zeros((num_features, num_classes), jnp.float32),
          "bias": jnp.zeros((num_classes,), jnp.float32)}


def probe_loss(probe: dict, feats: jax.Array, labels: jax.Array | None) -> tuple[jax.Array, dict]:
  """Cross-entropy of the online linear probe on stop-gradient features `[N, D]` with integer `labels` `[N]`."""
  if not probe or labels is None:
    return jnp.zeros((), jnp.float32), {}
  logits = jax.lax.stop_gradient(feats) @ probe["kernel"] + probe["bias"]
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  acc = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return loss, {"probe/loss": loss, "probe/train_top1": acc}


def repeat_labels(labels: jax.Array | None, num_views: int) -> jax.Array | None:
  """Labels `[B]` -> `[B * V]`, matching `flatten_views`."""
  return None if labels is None else jnp.repeat(labels, num_views)



def teacher_encoder(model: dict) -> nn.Module:
  """The encoder of `model` (`backbone.create` keywords) for a momentum teacher: without stochastic depth."""
  return backbone.create(**(dict(model, drop_path=0.0) if "drop_path" in model else model))


def teacher_params(student_net_params: dict) -> dict:
  """The parameters a momentum teacher copies: the student's encoder and projector (not its predictor)."""
  return {k: v for k, v in student_net_params.items() if k != "predictor"}


def init_with_teacher(net: Network, rng, example, num_classes: int | None) -> tuple[dict, dict]:
  """Parameters `{"net", "probe"}` and extra state `{"batch_stats", "teacher", "teacher_stats"}` of a method with a
  momentum teacher that starts as a copy of the student's encoder and projector (BYOL, MoCo v3)."""
  params, stats = init_network(net, rng, example)
  no_predictor = lambda tree: {k: v for k, v in tree.items() if k != "predictor"}
  extra = {"batch_stats": stats, "teacher": teacher_params(params), "teacher_stats": no_predictor(stats)}
  return {"net": params, "probe": init_probe(num_classes, net.encoder.num_features)}, extra


def update_teacher(extra: dict, params: dict, step, total_steps: int, base_momentum: float) -> dict:
  """`extra` with its teacher moved towards the student by EMA at `teacher.cosine_increase(step, ...)`."""
  m = teacher_lib.cosine_increase(step, total_steps, base_momentum)
  return dict(extra, teacher=teacher_lib.ema_update(extra["teacher"], teacher_params(params["net"]), m))


def teacher_forward(teacher: Network, params, stats, x):
  """A momentum teacher's (features, projection): BatchNorm on batch statistics, no stochastic depth."""
  if not stats:
    return teacher.apply({"params": params}, x, False, method=Network.embed), stats
  out, updates = teacher.apply({"params": params, "batch_stats": stats}, x, True, method=Network.embed,
                               mutable=["batch_stats"])
  return out, updates["batch_stats"]


def two_view_forward(net: Network, teacher: Network, params: dict, extra: dict, views: jax.Array, rng):
  """Online and momentum branches on two views, each view a separate batch (as BYOL's and MoCo v3's code do).

  Args:
    net: the online network (with predictor); `params["net"]` and `extra["batch_stats"]` are its variables.
    teacher: the same network without predictor; `extra["teacher"]`, `extra["teacher_stats"]` are its variables.
    views: `[B, 2, H, W, 3]` augmented, normalised views.
    rng: stochastic depth of the online network (the teacher has none).

  Returns:
    (features `[2, B, D]`, predictions `[2, B, P]`, stop-gradient teacher projections `[2, B, P]`, new extra).
  """
  stats, t_stats = extra["batch_stats"], extra["teacher_stats"]
  feats, preds, targets = [], [], []
  for v in range(2):
    (f, _, p), stats = forward(net, params["net"], stats, views[:, v], jax.random.fold_in(rng, v))
    (_, t), t_stats = teacher_forward(teacher, extra["teacher"], t_stats, views[:, v])
    feats.append(f), preds.append(p), targets.append(jax.lax.stop_gradient(t))
  new_extra = dict(extra, batch_stats=stats, teacher_stats=t_stats)
  return jnp.stack(feats), jnp.stack(preds), jnp.stack(targets), new_extra

"""SwAV (Caron, Misra, Mairal, Goyal, Bojanowski, Joulin 2020, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments").

Every crop (2 x 224 + 6 x 96 in the paper) goes through one encoder (one pass per crop size) and one head over all
crops (`heads.SwAVHead`: Linear-BN-ReLU-Linear to 128, l2-normalised `z`, scores `z @ C` against 3000 unit-norm
prototypes). For each of the two global crops, the codes `q` are the Sinkhorn-Knopp assignment (epsilon 0.05, 3
iterations, `losses.sinkhorn_knopp`) of its scores over the global batch — and, once the queue is full, over the
scores of the queued embeddings of earlier batches too — with no gradient; every other crop predicts them:
`loss = mean over the 2 global crops i of (1 / (V - 1)) sum_{v != i} CE(q_i, softmax(scores_v / 0.1))`.

The queue (`queue_length` embeddings per global crop, of the global batch, FIFO) is filled from epoch
`queue_start_epochs` on and used once it is full, as the official loop; it lives in the method's extra state (and
the checkpoint). The prototypes stay out of the optimizer for the first `freeze_prototypes_epochs` (no update, no
weight decay, no optimizer state: the official code sets their gradient to None) and are put back at unit norm after
every update (`project_params`; the official loop normalises them before every forward pass). Representation: the
encoder's pooled features.
"""

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import monitors
from ssl_jax.methods import contract
from ssl_jax.methods import joint
from ssl_jax.models import backbone
from ssl_jax.models import heads


@dataclasses.dataclass(frozen=True)
class SwAV(joint.ReleasesOnlineEncoder, contract.Method):
  net: joint.Network
  global_group: str
  local_group: str | None
  temperature: float
  epsilon: float
  sinkhorn_iterations: int
  queue_length: int
  queue_start_step: int
  freeze_prototypes_steps: int
  num_classes: int | None

  model_spec: tuple = ()

  def init(self, rng, batch):
    params, stats = joint.init_network(self.net, rng, batch["views"][self.global_group][:, 0])
    extra = {"batch_stats": stats}
    if self.queue_length:
      extra["queue"] = jnp.zeros((2, self.queue_length, self.net.projector.dim), jnp.float32)
      extra["queue_filled"] = jnp.zeros((), jnp.int32)            # rows written since the queue started
    return {"net": params, "probe": joint.init_probe(self.num_classes, self.net.encoder.num_features)}, extra

  def loss(self, params, extra, batch, rng, step):
    groups = [batch["views"][self.global_group]]
    if self.local_group is not None:
      groups.append(batch["views"][self.local_group])
    feats, (z, scores), stats = joint.multi_crop_forward(self.net, params["net"], extra["batch_stats"], groups, rng)
    num_crops, b = scores.shape[:2]                                    # z [V, B, dim], scores [V, B, K]
    prototypes = jax.lax.stop_gradient(params["net"]["projector"]["prototypes"])
    log_p = jax.nn.log_softmax(scores / self.temperature, axis=-1)
    new_extra = dict(extra, batch_stats=stats)
    if self.queue_length:
      use_queue = extra["queue_filled"] >= self.queue_length
      fill = step >= self.queue_start_step
    loss, queues = 0.0, []
    for i in range(2):                                                 # crops_for_assign: the two global crops
      out = jax.lax.stop_gradient(scores[i])
      if self.queue_length:
        queue = extra["queue"][i]
        valid = jnp.concatenate([jnp.full((self.queue_length,), use_queue), jnp.ones((b,), bool)])
        q = losses.sinkhorn_knopp(jnp.concatenate([queue @ prototypes, out]), self.epsilon, self.sinkhorn_iterations,
                                  valid=valid)[self.queue_length:]
        queued = jnp.concatenate([jax.lax.stop_gradient(z[i]), queue[:-b]])
        queues.append(jnp.where(fill, queued, queue))
      else:
        q = losses.sinkhorn_knopp(out, self.epsilon, self.sinkhorn_iterations)
      others = [v for v in range(num_crops) if v != i]
      cross_entropy = -jnp.sum(q[None] * log_p[jnp.array(others)], axis=-1)      # [V - 1, B]
      loss = loss + jnp.sum(jnp.mean(cross_entropy, axis=1)) / (num_crops - 1)
    loss = loss / 2
    metrics = {}
    if self.queue_length:
      new_extra.update(queue=jnp.stack(queues), queue_filled=jnp.where(
          fill, jnp.minimum(extra["queue_filled"] + b, self.queue_length), extra["queue_filled"]))
      metrics["queue_in_use"] = use_queue.astype(jnp.float32)
    probe, probe_metrics = joint.probe_loss(params["probe"], feats[0], batch.get("label"))
    metrics.update(probe_metrics, **monitors.collapse_metrics(z[0]), ssl_loss=loss)
    return loss + probe, (metrics, new_extra)

  def project_params(self, params):
    """The prototypes back at unit norm (each column of `C`)."""
    net = params["net"]
    c = net["projector"]["prototypes"]
    c = c / jnp.maximum(jnp.linalg.norm(c, axis=0, keepdims=True), 1e-12)
    return dict(params, net=dict(net, projector=dict(net["projector"], prototypes=c)))

  @property
  def frozen_until(self) -> tuple[tuple[str, int], ...]:
    """The prototypes are left out of the first `freeze_prototypes_steps` updates (`optim.make`)."""
    return (("net/projector/prototypes", self.freeze_prototypes_steps),) if self.freeze_prototypes_steps else ()

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, head: dict, temperature: float = 0.1,
             epsilon: float = 0.05, sinkhorn_iterations: int = 3, queue_length: int = 0,
             queue_start_epochs: float = 15.0, freeze_prototypes_epochs: float = 1.0,
             global_group: str = "global_crops", local_group: str | None = "local_crops",
             online_probe: bool = True) -> "SwAV":
    """Builds SwAV.

    Args:
      model: encoder keywords (`ssl_jax.models.backbone.create`).
      run: the run's facts (views, batch, steps per epoch, labels).
      head: `heads.SwAVHead` fields (paper: hidden_dim 2048, dim 128, num_prototypes 3000).
      temperature: of the predicted assignments (0.1).
      epsilon: Sinkhorn-Knopp's entropic regularisation (0.05): the codes are `exp(scores / epsilon)` normalised.
      sinkhorn_iterations: normalisation rounds (3).
      queue_length: embeddings of earlier batches kept per global crop (official: 3840 at batch 256, none at 4096);
        rounded down to a multiple of the global batch, as the official code does. 0: no queue.
      queue_start_epochs: the epoch from which the queue is filled (15); it is used once full.
      freeze_prototypes_epochs: epochs at the start during which the prototypes are not updated (official: 313
        iterations at batch 4096, 5005 at batch 256: one epoch).
      global_group, local_group: the view groups of the two global crops (whose codes are computed) and of the
        small crops (None: none).
      online_probe: train a linear probe on the stop-gradient features when the data has labels.
    """
    if run.view_count(global_group) != 2:
      raise ValueError(f"SwAV assigns codes to exactly 2 global crops: config.data.image.views.{global_group}.count "
                       f"is {run.view_count(global_group)}.")
    if local_group is not None and local_group not in run.inputs["views"]:
      raise ValueError(f"method.local_group={local_group!r} is not a view group of config.data.image.views "
                       f"({sorted(run.inputs['views'])}); set it to None for global crops only.")
    if temperature <= 0 or epsilon <= 0 or sinkhorn_iterations < 1:
      raise ValueError(f"SwAV needs temperature > 0, epsilon > 0 and sinkhorn_iterations >= 1, got {temperature}, "
                       f"{epsilon}, {sinkhorn_iterations}.")
    batch = run.batch_size or 1
    if queue_length < 0 or (queue_length and queue_length < batch):
      raise ValueError(f"method.queue_length={queue_length} must be 0 (no queue) or at least the global batch "
                       f"({batch}).")
    net = joint.Network(backbone.create(**model), heads.SwAVHead(**head))
    return cls(net=net, global_group=global_group, local_group=local_group, temperature=temperature,
               epsilon=epsilon, sinkhorn_iterations=sinkhorn_iterations,
               queue_length=queue_length - queue_length % batch,
               queue_start_step=int(round(queue_start_epochs * run.steps_per_epoch)),
               freeze_prototypes_steps=int(round(freeze_prototypes_epochs * run.steps_per_epoch)),
               num_classes=run.num_classes if online_probe else None, model_spec=contract.freeze(model))

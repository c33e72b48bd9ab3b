"""DINO against a PyTorch transcription of the official training step (facebookresearch/dino, `main_dino.py`).

The reference below re-implements, from the official code, what one DINO iteration does: the ViT and `DINOHead`
(3-layer GELU MLP, l2-normalised bottleneck, weight-normalised prototypes with the gain frozen at 1), the
`MultiCropWrapper` (one backbone pass per crop resolution, one head pass over all crops), `DINOLoss` (centred,
sharpened teacher softmax; cross-entropy over the pairs of different crops; centre EMA over the teacher's outputs),
`clip_gradients` (per tensor, `clip / (norm + 1e-6)`), `cancel_gradients_last_layer`, PyTorch's AdamW over
`get_params_groups` (no decay on biases and 1-D parameters), the per-iteration `cosine_scheduler` values of the
learning rate, weight decay and teacher momentum, the per-epoch teacher temperature, and the EMA of the teacher.
Both sides start from the same weights and see the same augmented crops; the test compares the loss of every step
and every parameter, the teacher and the centre after the steps.

Needs PyTorch (the `export` extra); skipped without it. Run as a script, it trains the reference on the tiny digits
config (`configs/tiny/dino.py`) with DINO's plain head (no BatchNorm) and prints the teacher's entropy:

    python tests/test_dino_reference.py --steps=200
"""

import argparse
import dataclasses
import time

import jax
import numpy as np
import pytest

from conftest import load_config
from ssl_jax import config as config_lib
from ssl_jax import convert
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.models import vit

torch = pytest.importorskip("torch")
F = torch.nn.functional


@dataclasses.dataclass(frozen=True)
class Arch:
  """The sizes the reference is built with (the config's model and head)."""
  patch: int = 4
  width: int = 32
  depth: int = 2
  heads: int = 2
  mlp: int = 64
  out: int = 64
  hidden: int = 32
  bottleneck: int = 16
  use_bn: bool = False

  def apply(self, c):
    c.model.patch_size, c.model.width, c.model.depth = self.patch, self.width, self.depth
    c.model.num_heads, c.model.mlp_dim = self.heads, self.mlp
    c.method.head = dict(c.method.head, out_dim=self.out, hidden_dim=self.hidden, bottleneck_dim=self.bottleneck,
                         use_bn=self.use_bn)


SMALL = Arch()


def _config(a: Arch, total_steps: int, freeze_steps: int, steps_per_epoch: int, temp_warmup_epochs: int = 0):
  c = load_config("configs/tiny/dino.py")
  c.batch_size = 16
  c.total_epochs, c.total_steps = None, total_steps
  c.log_every, c.ckpt_every = total_steps, 0
  a.apply(c)
  c.method.teacher_temp = (0.04, 0.07)
  c.method.teacher_temp_warmup_epochs = temp_warmup_epochs
  c.method.freeze_last_layer_epochs = freeze_steps / steps_per_epoch
  c.optim.warmup_epochs, c.optim.warmup_steps = None, 0
  c.optim.base_lr = 2e-3 * 256 / c.batch_size      # a peak learning rate of 2e-3: updates well above rounding
  return c


# ---- the reference: PyTorch, transcribed from the official DINO code ------------------------------------------------

def _torch_params(a: Arch, state_params) -> dict:
  """Our student network's parameters as the official model's named parameters (timm names for the ViT; the head's
  `mlp` indices as with `use_bn_in_head`, whether or not it has BatchNorm)."""
  net = jax.tree.map(np.asarray, state_params["net"])
  spec = dict(arch="vit", patch_size=a.patch, width=a.width, depth=a.depth, num_heads=a.heads, mlp_dim=a.mlp)
  sd, _ = convert.to_timm(spec, {"params": net["encoder"]}, image_size=4 * a.patch)
  sd = {f"backbone.{k}": v for k, v in sd.items() if k != "pos_embed"}       # sin-cos: recomputed per crop size
  head = net["projector"]
  for i in range(3):
    sd[f"head.mlp.{3 * i}.weight"] = head[f"dense{i}"]["kernel"].T
    sd[f"head.mlp.{3 * i}.bias"] = head[f"dense{i}"]["bias"]
    if a.use_bn and i < 2:
      sd[f"head.mlp.{3 * i + 1}.weight"] = head[f"bn{i}"]["scale"]
      sd[f"head.mlp.{3 * i + 1}.bias"] = head[f"bn{i}"]["bias"]
  sd["head.last_layer.weight_v"] = head["prototypes"].T                        # [out_dim, bottleneck]
  out = {k: torch.tensor(np.ascontiguousarray(v), dtype=torch.float32, requires_grad=True) for k, v in sd.items()}
  # norm_last_layer=True: weight_g filled with 1 and requires_grad False.
  out["head.last_layer.weight_g"] = torch.ones(a.out, 1)
  return out


def _backbone(a: Arch, p: dict, x: torch.Tensor) -> torch.Tensor:
  """The ViT's [CLS] output of `[N, H, W, 3]` crops (pre-norm blocks, eps 1e-6, exact GELU)."""
  n, h, w, _ = x.shape
  x = F.conv2d(x.permute(0, 3, 1, 2), p["backbone.patch_embed.proj.weight"], p["backbone.patch_embed.proj.bias"],
               stride=a.patch).flatten(2).transpose(1, 2)
  x = x + torch.from_numpy(vit.sincos_2d(a.width, h // a.patch, w // a.patch))
  x = torch.cat([p["backbone.cls_token"].expand(n, -1, -1), x], dim=1)
  hd = a.width // a.heads
  for i in range(a.depth):
    b = lambda name: p[f"backbone.blocks.{i}.{name}"]
    y = F.layer_norm(x, (a.width,), b("norm1.weight"), b("norm1.bias"), eps=1e-6)
    q, k, v = F.linear(y, b("attn.qkv.weight"), b("attn.qkv.bias")).reshape(n, -1, 3, a.heads, hd).permute(
        2, 0, 3, 1, 4)
    attn = ((q @ k.transpose(-2, -1)) * hd ** -0.5).softmax(dim=-1)
    y = (attn @ v).transpose(1, 2).reshape(n, -1, a.width)
    x = x + F.linear(y, b("attn.proj.weight"), b("attn.proj.bias"))
    y = F.layer_norm(x, (a.width,), b("norm2.weight"), b("norm2.bias"), eps=1e-6)
    y = F.linear(F.gelu(F.linear(y, b("mlp.fc1.weight"), b("mlp.fc1.bias"))), b("mlp.fc2.weight"), b("mlp.fc2.bias"))
    x = x + y
  return F.layer_norm(x, (a.width,), p["backbone.norm.weight"], p["backbone.norm.bias"], eps=1e-6)[:, 0]


def _head(a: Arch, p: dict, x: torch.Tensor) -> torch.Tensor:
  """DINOHead(nlayers=3, use_bn=a.use_bn, norm_last_layer=True): Linear [BN] GELU Linear [BN] GELU Linear, with
  BatchNorm1d in training mode (batch statistics; DINO never switches its student or teacher to eval mode)."""
  for i in range(2):
    x = F.linear(x, p[f"head.mlp.{3 * i}.weight"], p[f"head.mlp.{3 * i}.bias"])
    if a.use_bn:
      x = F.batch_norm(x, None, None, p[f"head.mlp.{3 * i + 1}.weight"], p[f"head.mlp.{3 * i + 1}.bias"],
                       training=True, eps=1e-5)
    x = F.gelu(x)
  x = F.linear(x, p["head.mlp.6.weight"], p["head.mlp.6.bias"])
  x = F.normalize(x, dim=-1, p=2)
  v, g = p["head.last_layer.weight_v"], p["head.last_layer.weight_g"]
  return F.linear(x, g * v / v.norm(dim=1, keepdim=True))         # torch.nn.utils.weight_norm, dim=0


def _multi_crop(a: Arch, p: dict, crops: list) -> torch.Tensor:
  """MultiCropWrapper: crops of one resolution share a backbone pass; the head runs once over all of them."""
  feats, start = [], 0
  while start < len(crops):
    end = start + 1
    while end < len(crops) and crops[end].shape[-2] == crops[start].shape[-2]:
      end += 1
    feats.append(_backbone(a, p, torch.cat(crops[start:end])))
    start = end
  return _head(a, p, torch.cat(feats))


def _cosine_scheduler(base, final, total, warmup=0):
  """utils.cosine_scheduler: one value per iteration (a linear warm-up from 0 over `warmup` iterations first)."""
  it = np.arange(total - warmup)
  cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * it / len(it)))
  return np.concatenate([np.linspace(0, base, warmup), cosine])


class Reference:
  def __init__(self, a: Arch, c, state_params, total_steps, steps_per_epoch, freeze_steps, warmup_steps=0):
    self.arch = a
    self.student = _torch_params(a, state_params)
    self.teacher = {k: v.detach().clone() for k, v in self.student.items()}
    self.center = torch.zeros(1, a.out)
    self.freeze_steps = freeze_steps
    self.lr = _cosine_scheduler(c.optim.base_lr * c.batch_size / 256, c.optim.min_lr, total_steps,
                                warmup_steps)
    self.wd = _cosine_scheduler(c.optim.weight_decay, c.optim.weight_decay_end, total_steps)
    self.momentum = _cosine_scheduler(c.method.momentum_base, 1.0, total_steps)
    # DINOLoss.teacher_temp_schedule, indexed by the epoch.
    epochs, warm = -(-total_steps // steps_per_epoch), c.method.teacher_temp_warmup_epochs
    self.teacher_temps = np.concatenate((np.linspace(*c.method.teacher_temp, warm),
                                         np.ones(epochs - warm) * c.method.teacher_temp[1]))
    self.steps_per_epoch, self.student_temp = steps_per_epoch, c.method.student_temp
    self.center_momentum, self.clip = c.method.center_momentum, c.optim.grad_clip
    trained = {k: v for k, v in self.student.items() if v.requires_grad}
    regularized = [v for k, v in trained.items() if not (k.endswith(".bias") or v.ndim == 1)]
    not_regularized = [v for k, v in trained.items() if k.endswith(".bias") or v.ndim == 1]
    self.optimizer = torch.optim.AdamW([{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}])

  def loss(self, student_output, teacher_output):
    """DINOLoss.forward (and the centre update)."""
    ncrops = student_output.shape[0] // teacher_output.shape[0] * 2
    student_out = (student_output / self.student_temp).chunk(ncrops)
    teacher_probs = F.softmax((teacher_output - self.center) / self.teacher_temp, dim=-1).detach()
    self.teacher_entropy = float(-(teacher_probs * torch.log(teacher_probs.clamp_min(1e-30))).sum(-1).mean())
    teacher_out = teacher_probs.chunk(2)
    total, terms = 0, 0
    for iq, q in enumerate(teacher_out):
      for v in range(len(student_out)):
        if v == iq:
          continue
        total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
        terms += 1
    total /= terms
    batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
    self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)
    return total

  def step(self, it, global_crops, local_crops):
    """One iteration of train_one_epoch (fp32, no loss scaler); crops are lists of `[B, H, W, 3]` tensors."""
    self.teacher_temp = self.teacher_temps[it // self.steps_per_epoch]
    for i, group in enumerate(self.optimizer.param_groups):
      group["lr"] = self.lr[it]
      if i == 0:
        group["weight_decay"] = self.wd[it]
    with torch.no_grad():
      teacher_output = _multi_crop(self.arch, self.teacher, global_crops)
    student_output = _multi_crop(self.arch, self.student, global_crops + local_crops)
    loss = self.loss(student_output, teacher_output)
    self.optimizer.zero_grad()
    loss.backward()
    for p in self.student.values():                                    # utils.clip_gradients
      if p.grad is not None:
        clip_coef = self.clip / (p.grad.norm(2) + 1e-6)
        if clip_coef < 1:
          p.grad.mul_(clip_coef)
    if it < self.freeze_steps:                                         # utils.cancel_gradients_last_layer
      for name, p in self.student.items():
        if "last_layer" in name:
          p.grad = None
    self.optimizer.step()
    with torch.no_grad():
      m = self.momentum[it]
      for name, p in self.student.items():
        self.teacher[name].mul_(m).add_((1 - m) * p.detach())
    return loss.item()


# ---- the comparison ----------------------------------------------------------------------------------------------

def _run_both(steps, total_steps, freeze_steps, a: Arch = SMALL, temp_warmup_epochs=0):
  src = sources.digits("train[:32]")                        # 2 steps per epoch: the per-epoch schedules move
  spe = config_lib.resolve_durations(_config(a, 1, 0, 1), len(src)).steps_per_epoch
  c = _config(a, total_steps, freeze_steps, spe, temp_warmup_epochs)
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  assert program.method.freeze_last_layer_steps == freeze_steps
  augment = inputs.device_stage(c.data)
  data = iter(inputs.train_stream(c.data, src, seed=0, global_batch_size=c.batch_size))
  state = program.init()
  ref = Reference(a, c, state.params, total_steps, spe, freeze_steps)
  init_prototypes = np.asarray(state.params["net"]["projector"]["prototypes"])
  ours, theirs, prototypes = [], [], []
  with jax.set_mesh(mesh):
    for it in range(steps):
      batch = pipeline.to_global(next(data), sharding.batch_sharding(mesh))
      # The crops the jitted step augments, drawn here with the step's own key (train.train_step).
      key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
      views = augment(batch, jax.random.split(key)[0])["views"]
      crops = lambda name: [torch.from_numpy(np.array(views[name][:, v])) for v in range(views[name].shape[1])]
      theirs.append(ref.step(it, crops("global_crops"), crops("local_crops")))
      state, metrics = program.step(state, batch)
      ours.append(float(metrics["ssl_loss"]))
      prototypes.append(np.asarray(state.params["net"]["projector"]["prototypes"]))
  return state, ref, np.array(ours), np.array(theirs), [init_prototypes] + prototypes


def _assert_params_match(ours_net, theirs: dict, skip=(), a: Arch = SMALL):
  ours = _torch_params(a, {"net": ours_net})
  for name, ref in theirs.items():
    if name in skip or name == "head.last_layer.weight_g":
      continue
    x, y = ours[name].detach().numpy(), ref.detach().numpy()
    if name.endswith("attn.qkv.bias"):
      # The key bias adds the same q.b_k to every score of a query: softmax cancels it, its true gradient is 0, and
      # Adam blows both sides' rounding noise (~1e-10) up to steps of ~lr. Compare the query and value biases.
      k = np.s_[a.width:2 * a.width]
      x, y = np.delete(x, k), np.delete(y, k)
    np.testing.assert_allclose(x, y, atol=2e-5, rtol=1e-4, err_msg=name)


def test_dino_steps_equal_the_official_training_step():
  """Four updates (loss, student, teacher, centre) equal the reference's, with the learning rate, weight decay and
  teacher momentum moving along their cosine schedules (a 12-step run) and the teacher temperature warming up over
  3 epochs of 2 steps (0.04, 0.04, 0.055, 0.055)."""
  state, ref, ours, theirs, _ = _run_both(steps=4, total_steps=12, freeze_steps=0, temp_warmup_epochs=3)
  assert ref.teacher_temp == pytest.approx(0.055)
  np.testing.assert_allclose(ours, theirs, rtol=1e-5)
  assert abs(ours[-1] - ours[0]) > 1e-3, ours                    # the steps did something
  _assert_params_match(state.params["net"], ref.student)
  _assert_params_match(state.extra["teacher"], ref.teacher)
  np.testing.assert_allclose(np.asarray(state.extra["center"]), ref.center[0].numpy(), atol=1e-6, rtol=1e-5)


def test_dino_frozen_last_layer_matches_the_official_step():
  """DINO's first epoch (here 2 steps) leaves the last layer out of AdamW (its gradient is None): the prototypes stay
  exactly as they were, and on the next step their AdamW starts afresh (bias correction from 1) — as ours does."""
  state, ref, ours, theirs, prototypes = _run_both(steps=4, total_steps=12, freeze_steps=2)
  np.testing.assert_allclose(ours, theirs, rtol=1e-5)
  np.testing.assert_array_equal(prototypes[1], prototypes[0])
  np.testing.assert_array_equal(prototypes[2], prototypes[0])
  assert np.abs(prototypes[3] - prototypes[0]).max() > 1e-3
  _assert_params_match(state.params["net"], ref.student)
  _assert_params_match(state.extra["teacher"], ref.teacher)

def test_dino_with_batchnorm_in_the_head_equals_the_official_step():
  """`use_bn_in_head`: the student's head normalises over all crops together (one head pass, as MultiCropWrapper),
  the teacher's over its global crops; BatchNorm's scale and bias are trained without weight decay and averaged
  into the teacher."""
  a = dataclasses.replace(SMALL, use_bn=True)
  state, ref, ours, theirs, _ = _run_both(steps=3, total_steps=12, freeze_steps=0, a=a)
  np.testing.assert_allclose(ours, theirs, rtol=1e-5)
  # A bias right before BatchNorm (and the final LayerNorm's bias, which only shifts the first head layer's input)
  # moves every row of the batch alike: BatchNorm subtracts it again, its true gradient is 0, and Adam turns both
  # sides' rounding noise into steps of ~lr (as the attention key bias).
  shifts = ("backbone.norm.bias", "head.mlp.0.bias", "head.mlp.3.bias")
  _assert_params_match(state.params["net"], ref.student, skip=shifts, a=a)
  _assert_params_match(state.extra["teacher"], ref.teacher, skip=shifts, a=a)

def main(argv=None):
  """The reference alone on `configs/tiny/dino.py` with `use_bn=False`: does the official step collapse there too?"""
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args(argv)
  c = load_config("configs/tiny/dino.py")
  c.method.head = dict(c.method.head, use_bn=False)
  h = c.method.head
  arch = Arch(c.model.patch_size, c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim, h["out_dim"],
              h["hidden_dim"], h["bottleneck_dim"], use_bn=False)
  src = sources.digits("train")
  durations = config_lib.resolve_durations(c, len(src))
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices()[:1])
  program = train.build(c, mesh, len(src), src.num_classes)
  state = program.init()
  ref = Reference(arch, c, state.params, durations.total, durations.steps_per_epoch,
                  program.method.freeze_last_layer_steps, durations.warmup)
  augment = jax.jit(inputs.device_stage(c.data))
  data = iter(inputs.train_stream(c.data, src, seed=c.seed, global_batch_size=c.batch_size))
  start = time.time()
  print(f"{durations.total} steps in the run, {durations.warmup} of warm-up; log({arch.out}) = {np.log(arch.out):.3f}")
  for it in range(args.steps):
    views = augment(next(data), jax.random.fold_in(jax.random.key(c.seed), it))["views"]
    crops = lambda name: [torch.from_numpy(np.array(views[name][:, v])) for v in range(views[name].shape[1])]
    loss = ref.step(it, crops("global_crops"), crops("local_crops"))
    if it % 25 == 0 or it == args.steps - 1:
      print(f"step {it:4d}  loss {loss:.4f}  teacher entropy {ref.teacher_entropy:.3f}  lr {ref.lr[it]:.2e}  "
            f"{time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
  main()

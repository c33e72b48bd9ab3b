"""The joint-embedding methods' shared parts through the one trainer: the teacher sharded like the student, the
full-scale configs lowered at their paper batch, bfloat16 compute. Each method's loss (finite, decreasing against a
fixed target, 1 vs 8 devices) is checked by test_contract.py over the registry, and each method's run (monitors,
online probe, report, faults and resume) by test_fault_matrix.py."""

import re

import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import load_config
from ssl_jax import dry_run
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs
from ssl_jax.data import pipeline
from ssl_jax.data import sources


def _small(method: str):
  """The tiny config of `method`, shrunk to seconds: batch 32, a very small encoder and heads."""
  method, _, variant = method.partition("-")
  c = load_config(f"configs/tiny/{method}.py")
  if variant:
    c.method.centering = variant
  c.batch_size = 32
  c.total_epochs = None
  c.total_steps = 12
  c.log_every = 4
  c.ckpt_every = 0
  c.optim.warmup_epochs = None
  c.optim.warmup_steps = 0
  if c.model.arch == "resnet":
    c.model.width = 8
  else:
    c.model.width, c.model.depth, c.model.num_heads, c.model.mlp_dim = 32, 1, 2, 64
  if method == "dino":
    c.method.head = dict(c.method.head, out_dim=64, hidden_dim=32, bottleneck_dim=16)
    c.method.teacher_temp_warmup_epochs = 0
    c.method.freeze_last_layer_epochs = 0.0
  else:
    dims = lambda n: tuple([32] * (n - 1) + [16])
    c.method.projector = dict(c.method.projector, dims=dims(len(c.method.projector["dims"])))
    if "predictor" in c.method:
      c.method.predictor = dict(c.method.predictor, dims=dims(len(c.method.predictor["dims"])))
  c.eval.train_split = "train[:96]"
  c.eval.test_split = "test[:48]"
  c.eval.batch_size = 48
  c.eval.evaluators.linear.steps = 10
  c.eval.report = False
  return c


def test_teacher_is_sharded_like_the_student():
  c = _small("dino")
  c.mesh.data, c.mesh.fsdp = 2, 4
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices())
  program = train.build(c, mesh, 1437, 10)
  student = program.abstract_state.params["net"]
  teacher = program.abstract_state.extra["teacher"]
  specs = lambda t: [x.sharding.spec for x in jax.tree.leaves(t)]
  assert specs(student) == specs(teacher)
  assert any("fsdp" in str(s) for s in specs(teacher))


@pytest.mark.parametrize("name", ["simclr_resnet50", "byol_resnet50", "barlow_twins_resnet50", "vicreg_resnet50",
                                  "simsiam_resnet50", "swav_resnet50", "rotation_resnet50", "jigsaw_resnet50",
                                  "colorization_vit_b16", "inpainting_vit_b16", "mocov3_vit_b", "dino_vit_s16", "ijepa_vit_h14", "data2vec_vit_b", "beit_vit_b",
                                  "vqvae_tokenizer", "dinov2_vit_l16", "clip_vit_b16", "siglip_vit_b16",
                                  "wav2vec2_base"])
def test_full_scale_config_builds_and_lowers_at_its_batch(name):
  """The paper-sized model, crops and global batch on the 8-device mesh: the train step traced and lowered as the
  trainer builds it (running ResNet-50 or ViT-B steps on this CPU would add nothing that the tiny configs, through
  the same code, do not check; `benchmarks/gpu.sh` runs these configs for real). State in = state out, a float32
  loss, and the bfloat16 matmuls the config asks for."""
  c = load_config(f"configs/{name}.py")
  mesh = sharding.make_mesh(c.mesh.to_dict(), jax.devices(), c.mesh_preset)
  num_examples, num_classes, vocab_size, _ = dry_run.dataset_facts(c)
  program = train.build(c, mesh, num_examples, num_classes, vocab_size)
  with jax.set_mesh(mesh), nn.logical_axis_rules(c.sharding_rules):
    lowered = program.step.lower(program.abstract_state, dry_run.abstract_batch(c, mesh))
  state_out, step_metrics = lowered.out_info
  shapes = lambda tree: [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]
  assert shapes(state_out) == shapes(program.abstract_state)
  assert step_metrics["loss"].shape == () and step_metrics["loss"].dtype == np.float32
  assert re.search(r"stablehlo\.(?:dot_general|convolution)[^\n]*xbf16>", lowered.as_text())
  assert sum(x.size for x in jax.tree.leaves(program.abstract_state.params)) > 20e6


@pytest.mark.parametrize("method", ["mae", "simclr"])
def test_bfloat16_compute_keeps_float32_parameters_and_loss(method):
  """Mixed precision (`model.dtype="bfloat16"`): the matmuls and convolutions run in bfloat16, the parameters and
  the loss stay float32, and the loss is the float32 model's up to bfloat16 rounding."""
  if method == "mae":
    c = load_config("configs/tiny/mae.py")
    c.model.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
    c.method.decoder = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
    c.update(dict(batch_size=32, total_epochs=None, total_steps=4))
  else:
    c = _small(method)
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  local = next(iter(inputs.train_stream(c.data, sources.digits("train"), seed=0, global_batch_size=32)))
  batch, key = pipeline.to_global(local, sharding.batch_sharding(mesh)), jax.random.key(0)
  batch = inputs.device_stage(c.data)(batch, key)
  losses = {}
  for dtype in ("float32", "bfloat16"):
    c.model.dtype = dtype
    program = train.build(c, mesh, 1437, 10)
    with jax.set_mesh(mesh):
      state = program.init()
      loss = jax.jit(lambda p, e, b: program.method.loss(p, e, b, key, 0)[0])
      hlo = loss.lower(state.params, state.extra, batch).as_text()
      value = loss(state.params, state.extra, batch)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype(np.float32)}
    assert value.dtype == np.float32
    low_precision = re.findall(r"stablehlo\.(?:dot_general|convolution)[^\n]*xbf16>", hlo)
    assert bool(low_precision) == (dtype == "bfloat16")
    losses[dtype] = float(value)
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.03)

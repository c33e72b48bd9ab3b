"""Model FLOPs (matmuls only, 2 per MAC, train = 3 x forward) against closed forms, and the benchmark harness."""

import gzip
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from conftest import ROOT
from conftest import image_run
from ssl_jax.methods import mae
from ssl_jax.models import vit
from ssl_jax.runtime import host_memory

sys.path.insert(0, str(ROOT / "benchmarks"))
import attention  # noqa: E402
import flops  # noqa: E402
import profile_summary  # noqa: E402


@pytest.mark.parametrize("scan,remat", [(False, "none"), (True, "full")])
def test_vit_flops_match_the_closed_form(scan, remat):
  model = vit.ViT(**vit.vit_kwargs(patch_size=4, width=32, depth=3, num_heads=2, mlp_dim=64, scan=scan, remat=remat))
  params = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))))
  images = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  counted = flops.matmul_flops(model.apply, params, images)
  embedding = 2 * 2 * 16 * (4 * 4 * 3) * 32                      # 16 patches of 48 pixels -> width 32
  assert counted == embedding + flops.vit_forward_flops(batch=2, tokens=17, width=32, depth=3, mlp_dim=64)


def test_convolution_flops():
  conv = nn.Conv(8, (3, 3), strides=2, padding=1, use_bias=False)
  params = jax.eval_shape(conv.init, jax.random.key(0), jnp.zeros((1, 16, 16, 4)))
  counted = flops.matmul_flops(conv.apply, params, jax.ShapeDtypeStruct((2, 16, 16, 4), jnp.float32))
  assert counted == 2 * (2 * 8 * 8 * 8) * (3 * 3 * 4)


def test_mae_step_counts_the_visible_tokens_in_the_encoder_and_all_in_the_decoder():
  method = mae.MAE.create(model=dict(patch_size=4, width=32, depth=2, num_heads=2, mlp_dim=64),
                      run=image_run(16), mask_ratio=0.75,
                      decoder=dict(width=16, depth=1, num_heads=2, mlp_dim=32))
  batch = {"image": jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)}
  params, extra = jax.eval_shape(lambda: method.init(jax.random.key(0), {"image": jnp.zeros((1, 16, 16, 3))}))
  counted = flops.train_step_flops(method, nn.unbox(params), extra, batch, jax.random.key(1))
  b, t, k, p = 2, 16, 4, 48                    # 16 patches, 4 visible, 48 values per patch
  forward = (2 * b * t * p * 32                                                  # patch embedding (before dropping)
             + flops.vit_forward_flops(batch=b, tokens=1 + k, width=32, depth=2, mlp_dim=64)
             + 2 * b * (1 + k) * 32 * 16                                         # decoder embedding
             + flops.vit_forward_flops(batch=b, tokens=1 + t, width=16, depth=1, mlp_dim=32)
             + 2 * b * (1 + t) * 16 * p)                                         # pixel prediction
  assert counted == 3 * forward


def test_train_step_benchmark_reports_mfu_and_a_consistent_flop_count(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "benchmarks/train_step.py", "--config=configs/tiny/mae.py", "--config.batch_size=16",
       "--config.model.depth=1", "--steps=2", "--warmup=1", f"--json_out={tmp_path / 'r.json'}",
       f"--profile_dir={tmp_path / 'profile'}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result == json.loads((tmp_path / "r.json").read_text())
  assert 0 < result["mfu"] <= 1 and result["peak_source"].startswith("measured")
  # XLA also counts elementwise work and the optimizer, so it is somewhat above the matmul-only model count.
  assert 0.7 < result["model_flops_per_step"] / result["xla_flops_per_step"] <= 1.0
  assert result["examples_per_s"] == pytest.approx(16 / result["step_time_s"])
  assert result["step_time_min_s"] <= result["step_time_blocking_s"]
  # The script restarted itself with glibc's huge-page tunable where that helps (ssl_jax/runtime/host_memory.py).
  restarts = host_memory.wants_restart(env, sys.platform, host_memory.glibc_version(), host_memory.thp_mode())
  expected_env = dict(env, GLIBC_TUNABLES=host_memory.TUNABLE) if restarts else env
  assert result["host_memory"] == host_memory.describe(expected_env)
  assert result["host_page_faults_per_step"] >= 0 and result["host_system_s_per_step"] >= 0
  # The profile: a Perfetto trace and the compiled step's HLO, whose fusions name the model code.
  assert list((tmp_path / "profile").rglob("*.trace.json.gz"))
  sources = profile_summary.hlo_sources(str(tmp_path / "profile" / "step.hlo.txt"))
  assert any("mlp" in op for op in sources.values())
  assert "MFU" in out.stdout and result["config"].endswith("configs/tiny/mae.py")


def test_attention_benchmark_runs_each_implementation():
  """benchmarks/attention.py builds and times each implementation, alone and inside attention.Attention (its numbers are
  for the README, never asserted here)."""
  for impl, module in (("einsum", False), ("xla", False), ("einsum", True)):
    r = attention.measure(impl, batch=2, tokens=9, width=16, heads=2, dtype=jnp.float32, module=module, repeats=1)
    assert set(r) == {"forward_s", "forward_backward_s"} and all(0 < t < 60 for t in r.values()), (impl, module, r)


def test_cudnn_attention_is_counted():
  """The fused-attention primitive that jax's cuDNN path binds is one the counter knows (a rename in jax would
  otherwise silently drop attention from the GPU step's model FLOPs, as it once did)."""
  from jax._src.cudnn import fused_attention_stablehlo as cudnn
  assert cudnn._dot_product_attention_fwd_p_wrapper.name in flops._ATTENTION_PRIMITIVES


def test_profile_summary_ties_kernels_to_model_code(tmp_path):
  trace = {"traceEvents": [
      {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
      {"ph": "M", "pid": 7, "name": "process_name", "args": {"name": "/host:CPU"}},
      {"ph": "X", "pid": 7, "ts": 0, "dur": 999, "name": "host work"},
      *({"ph": "X", "pid": 1, "ts": 100 * i, "dur": d, "name": n} for i, (n, d) in enumerate(
          [("loop_add_fusion_7", 30), ("loop_add_fusion_12", 10), ("nvjet_sm90_tst", 50), ("input_reduce_fusion", 6),
           ("loop_add_fusion_7", 30), ("loop_add_fusion_12", 10), ("nvjet_sm90_tst", 50), ("input_reduce_fusion", 6)])),
  ]}
  with gzip.open(tmp_path / "t.json.gz", "wt") as f:
    json.dump(trace, f)
  (tmp_path / "step.hlo.txt").write_text(
      '  %loop_add_fusion.7 = f32[4] fusion(%p), metadata={op_name="jit(train_step)/jvp(M)/block3/mlp/add"}\n'
      '  %loop_add_fusion.12 = f32[4] fusion(%p), metadata={op_name="jit(train_step)/jvp(M)/block11/mlp/add"}\n')
  events = profile_summary.kernel_events(str(tmp_path / "t.json.gz"))
  assert len(events) == 8                                    # device kernels only
  text = profile_summary.summarise(events, profile_summary.hlo_sources(str(tmp_path / "step.hlo.txt")), steps=2)
  assert "device busy 0.10 ms" in text                       # (30 + 10 + 50 + 6) us per step
  assert "0.04  element-wise fusion  jvp(M)/block*/mlp/add" in text       # blocks 3 and 11 folded: 40 us
  assert "0.05 ms   52.1%  matmul" in text and "reduction fusion" in text
  # XLA:CPU: the operations run in its host threads, among bookkeeping events that are not kernels.
  cpu = {"traceEvents": [
      {"ph": "M", "pid": 701, "name": "process_name", "args": {"name": "/host:CPU"}},
      {"ph": "M", "pid": 701, "tid": 5, "name": "thread_name", "args": {"name": "tf_XLAEigen/123"}},
      {"ph": "M", "pid": 701, "tid": 6, "name": "thread_name", "args": {"name": "main/1"}},
      {"ph": "X", "pid": 701, "tid": 5, "ts": 0, "dur": 500, "name": "ThunkExecutor::Execute"},
      {"ph": "X", "pid": 701, "tid": 5, "ts": 0, "dur": 20, "name": "ynn_fusion.3"},
      {"ph": "X", "pid": 701, "tid": 5, "ts": 30, "dur": 10, "name": "loop_add_fusion.7"},
      {"ph": "X", "pid": 701, "tid": 6, "ts": 0, "dur": 900, "name": "python work"}]}
  with gzip.open(tmp_path / "cpu.json.gz", "wt") as f:
    json.dump(cpu, f)
  events = profile_summary.kernel_events(str(tmp_path / "cpu.json.gz"))
  assert [e["name"] for e in events] == ["ynn_fusion.3", "loop_add_fusion.7"]
  text = profile_summary.summarise(events, profile_summary.hlo_sources(str(tmp_path / "step.hlo.txt")), steps=1)
  assert "0.02 ms   66.7%  matmul" in text and "0.01  element-wise fusion  jvp(M)/block*/mlp/add" in text


def test_pytorch_reference_is_the_same_model():
  """benchmarks/torch_reference/mae.py: the parameter count and position embeddings of configs/mae_vit_b.py."""
  torch = pytest.importorskip("torch", reason="the PyTorch reference needs the bench extra: pip install -e '.[bench]'")
  pytest.importorskip("timm", reason="the PyTorch reference needs the bench extra: pip install -e '.[bench]'")
  sys.path.insert(0, str(ROOT / "benchmarks" / "torch_reference"))
  import mae as torch_mae
  import numpy as np
  reference = torch_mae.MAE()
  ours = mae.MAE.create(model=dict(variant="B/16"), run=image_run(224),
                    decoder=dict(width=512, depth=8, num_heads=16, mlp_dim=2048))
  params, _ = jax.eval_shape(lambda: ours.init(jax.random.key(0), {"image": jnp.zeros((1, 224, 224, 3))}))
  assert sum(p.numel() for p in reference.parameters()) == sum(x.size for x in jax.tree.leaves(nn.unbox(params)))
  np.testing.assert_allclose(torch_mae.sincos_table(768, 14)[1:], vit.sincos_2d(768, 14, 14), atol=1e-6)
  assert float(reference(torch.randn(2, 3, 224, 224))) > 0


def test_simclr_pytorch_reference_is_the_same_model_loss_and_optimizer():
  """benchmarks/torch_reference/joint_embedding.py: configs/simclr_resnet50.py's parameters (encoder, projection head
  and online probe, count by count), its NT-Xent, and two steps of its LARS equal ssl_jax's."""
  torch = pytest.importorskip("torch", reason="the PyTorch reference needs the bench extra: pip install -e '.[bench]'")
  pytest.importorskip("torchvision", reason="the PyTorch reference needs the bench extra: pip install -e '.[bench]'")
  import numpy as np
  from conftest import load_config
  from ssl_jax import losses
  from ssl_jax import methods
  from ssl_jax import optim
  from ssl_jax.data import inputs
  from ssl_jax.methods import contract
  sys.path.insert(0, str(ROOT / "benchmarks" / "torch_reference"))
  import joint_embedding as torch_simclr
  config = load_config("configs/simclr_resnet50.py")
  run = contract.RunInfo(inputs=inputs.method_inputs(config.data), num_classes=torch_simclr.NUM_CLASSES)
  ours = methods.create("simclr", model=config.model.to_dict(), run=run,
                        **{k: v for k, v in config.method.to_dict().items() if k != "name"})
  batch = jax.tree.map(lambda s: jnp.zeros((2,) + s.shape, s.dtype), run.inputs)
  params, _ = jax.eval_shape(lambda: ours.init(jax.random.key(0), batch))
  count = lambda tree: sum(x.size for x in jax.tree.leaves(nn.unbox(tree)))
  reference = torch_simclr.SimCLR()
  theirs = lambda module: sum(p.numel() for p in module.parameters())
  ours_counts = (count(params["net"]["encoder"]), count(params["net"]["projector"]), count(params["probe"]))
  their_counts = (theirs(reference.encoder), theirs(reference.projector), theirs(reference.probe))
  assert ours_counts == their_counts == (23_508_032, 4_460_672, 2_049_000)
  assert config.method.temperature == torch_simclr.TEMPERATURE

  z1, z2 = np.random.default_rng(0).normal(size=(2, 6, 5)).astype(np.float32)
  normalised = torch.nn.functional.normalize(torch.tensor(np.concatenate([z1, z2])), dim=1)
  np.testing.assert_allclose(float(torch_simclr.nt_xent(normalised, 0.1)), float(jnp.mean(losses.nt_xent(z1, z2, 0.1))),
                             rtol=1e-6)

  # LARS: a kernel (decayed, trust-scaled) and a bias (neither), two steps with different gradients.
  rng = np.random.default_rng(1)
  w, b = rng.normal(size=(3, 4)), rng.normal(size=4)
  grads = [(rng.normal(size=(3, 4)), rng.normal(size=4)) for _ in range(2)]
  tx = optim.make(name="lars", learning_rate=0.5, weight_decay=0.1, momentum=0.9)
  state = {"dense": {"kernel": jnp.asarray(w, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}}
  opt_state = tx.init(state)
  kernel, bias = (torch.tensor(x, dtype=torch.float32, requires_grad=True) for x in (w, b))
  lars = torch_simclr.LARS([dict(params=[kernel], weight_decay=0.1, adapt=True), dict(params=[bias])], lr=0.5,
                           momentum=0.9)
  for gw, gb in grads:
    g = {"dense": {"kernel": jnp.asarray(gw, jnp.float32), "bias": jnp.asarray(gb, jnp.float32)}}
    updates, opt_state = tx.update(g, opt_state, state)
    state = jax.tree.map(lambda p, u: p + u, state, updates)
    kernel.grad, bias.grad = (torch.tensor(np.asarray(x)) for x in (g["dense"]["kernel"], g["dense"]["bias"]))
    lars.step()
  np.testing.assert_allclose(kernel.detach().numpy(), state["dense"]["kernel"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(bias.detach().numpy(), state["dense"]["bias"], rtol=1e-6, atol=1e-7)
  assert not np.allclose(state["dense"]["kernel"], w, atol=1e-3)        # the steps moved it


def test_stop_gradient_work_counts_once():
  """A matmul on a stop-gradient path (a teacher's forward pass) has no backward: 1 x; one through a trained
  parameter 3 x, also inside remat and scan."""
  def loss(p, e, b):
    frozen = jax.lax.stop_gradient(b @ e)                                       # 2 * 2*3*3 = 36, no backward
    trained = jax.checkpoint(lambda a: a @ p)(frozen)                           # 36, trained
    out, _ = jax.lax.scan(lambda c, _: (c @ p, None), trained, None, length=2)  # 2 x 36, trained
    return jnp.sum(out)
  closed = jax.make_jaxpr(loss)(jnp.ones((3, 3)), jnp.ones((3, 3)), jnp.ones((2, 3)))
  assert flops._split_flops(closed.jaxpr, [True, False, False])[:2] == (108, 36)
  assert flops.jaxpr_matmul_flops(closed.jaxpr) == 144


def test_ijepa_step_counts_its_target_encoder_forward_once():
  from ssl_jax.methods import ijepa
  method = ijepa.IJEPA.create(model=dict(patch_size=2, width=32, depth=2, num_heads=2, mlp_dim=64, class_token=False),
                              run=image_run(16), predictor=dict(width=16, depth=1, num_heads=2, mlp_dim=32),
                              min_keep=4)
  batch = {"image": jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)}
  params, extra = jax.eval_shape(lambda: method.init(jax.random.key(0), {"image": jnp.zeros((2, 16, 16, 3))}))
  params = nn.unbox(params)
  counted = flops.train_step_flops(method, params, extra, batch, jax.random.key(1))
  everything = flops.matmul_flops(lambda p, e, b: method.loss(p, e, b, jax.random.key(1), 0)[0], params, extra, batch)
  target = flops.matmul_flops(lambda e, b: method.target.apply({"params": e["target"]}, b["image"]), extra, batch)
  target_expected = 2 * 2 * 64 * 12 * 32 + flops.vit_forward_flops(batch=2, tokens=64, width=32, depth=2, mlp_dim=64)
  assert target == target_expected
  gram = 2 * 2 * 2 * 32              # RankMe's Gram matrix of the pooled target features ([2, 32]), no backward
  assert counted == 3 * everything - 2 * (target + gram)


def test_data2vec_step_counts_its_teacher_forward_once():
  from ssl_jax.methods import data2vec
  model = dict(patch_size=2, width=32, depth=2, num_heads=2, mlp_dim=64, posemb="none", mask_token=True,
               relative_position_bias=True, layer_scale=0.1)
  method = data2vec.Data2Vec.create(model=model, run=image_run(16), num_mask_patches=0.5, min_mask_patches_per_block=4,
                                    top_k=2)
  batch = {"image": jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)}
  params, extra = jax.eval_shape(lambda: method.init(jax.random.key(0), {"image": jnp.zeros((2, 16, 16, 3))}))
  params = nn.unbox(params)
  counted = flops.train_step_flops(method, params, extra, batch, jax.random.key(1))
  everything = flops.matmul_flops(lambda p, e, b: method.loss(p, e, b, jax.random.key(1), 0)[0], params, extra, batch)
  teacher = flops.matmul_flops(lambda e, b: method.targets(e["teacher"], b["image"]), extra, batch)
  teacher_expected = 2 * 2 * 64 * 12 * 32 + flops.vit_forward_flops(batch=2, tokens=65, width=32, depth=2, mlp_dim=64)
  assert teacher == teacher_expected
  gram = 2 * 2 * 2 * 32              # RankMe's Gram matrix of the pooled targets ([2, 32]), no backward
  assert counted == 3 * everything - 2 * (teacher + gram)
  # The student: the same encoder forward (at every position: BEiT-style masking keeps all tokens) and the head on
  # the 32 masked slots.
  student = everything - teacher - gram
  assert student == teacher_expected + 2 * 2 * 32 * 32 * 32

"""Data parallelism, FSDP (ZeRO-3) and FSDP + tensor parallelism on 8 CPU devices: the intended partition specs, the
same losses, optimizer state sharded like the parameters, and the check against replicated parameters."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from conftest import load_config
from conftest import train_steps
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import inputs
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.data import transforms

# The presets (config.mesh_preset; "fsdp_tp" with config.mesh.tensor=2) and an explicit mesh.
MESHES = {"dp": "dp", "fsdp": "fsdp", "fsdp_tp": "fsdp_tp", "dp_fsdp_tp": dict(data=2, fsdp=2, tensor=2)}


def test_fsdp_and_tensor_parallel_shard_as_intended_and_train_like_data_parallel(tiny_config):
  tiny_config.model.update(dict(width=64, num_heads=4, mlp_dim=128, depth=2))
  tiny_config.mesh.tensor = 2            # the tensor-parallel size of the fsdp_tp preset
  it = iter(pipeline.train_dataset(sources.digits("train"), seed=0, global_batch_size=tiny_config.batch_size,
                                   transform=transforms.train_transform(image_size=16)))
  batches = [next(it) for _ in range(3)]
  runs = {name: train_steps(tiny_config.copy_and_resolve_references(), m, batches) for name, m in MESHES.items()}
  # Scanned, rematerialised blocks (encoder and decoder) under FSDP + TP: the stacked parameters shard like the
  # per-block ones.
  scanned = tiny_config.copy_and_resolve_references()
  scanned.model.update(dict(scan=True, remat="full"))
  runs["fsdp_tp_scan_remat"] = train_steps(scanned, MESHES["fsdp_tp"], batches)

  # The logical rules give every layout the same PartitionSpecs; the mesh sizes decide what each device holds.
  assert [dict(runs[n][0].mesh.shape) for n in ("dp", "fsdp", "fsdp_tp")] == [
      dict(data=8, fsdp=1, tensor=1), dict(data=1, fsdp=8, tensor=1), dict(data=1, fsdp=4, tensor=2)]
  shard = lambda state, *path: _get(state.params, path).sharding.shard_shape(_get(state.params, path).shape)
  attn = ("encoder", "encoder", "block0", "attn")
  fc1 = ("encoder", "encoder", "block0", "mlp", "fc1", "kernel")
  _, tp, _ = runs["fsdp_tp"]
  assert _get(tp.params, attn + ("qkv_kernel",)).sharding.spec == P("fsdp", "tensor", None, None)   # [D, H, 3, d]
  assert _get(tp.params, attn + ("out_kernel",)).sharding.spec == P("tensor", None, "fsdp")          # [H, d, D]
  assert _get(tp.params, fc1).sharding.spec == P("fsdp", "tensor")
  expected = {"dp": [(64, 4, 3, 16), (64, 128)], "fsdp": [(8, 4, 3, 16), (8, 128)],
              "fsdp_tp": [(16, 2, 3, 16), (16, 64)], "dp_fsdp_tp": [(32, 2, 3, 16), (32, 64)]}
  for name, (qkv, mlp) in expected.items():
    state = runs[name][1]
    assert (shard(state, *attn, "qkv_kernel"), shard(state, *fc1)) == (qkv, mlp), name
  # Adam's moments shard exactly like the parameters they follow (ZeRO-3: nothing held whole).
  mu = [x for x in jax.tree.leaves(tp.opt_state) if getattr(x, "shape", None) == (64, 4, 3, 16)]
  assert mu and all(x.sharding.shard_shape(x.shape) == (16, 2, 3, 16) for x in mu)
  held = {name: sharding.per_device_bytes(state.params) for name, (_, state, _) in runs.items()}
  assert held["fsdp"] < held["dp"] / 6 and held["fsdp_tp"] < held["dp"] / 6

  for name in ("fsdp", "fsdp_tp", "dp_fsdp_tp", "fsdp_tp_scan_remat"):
    np.testing.assert_allclose(runs[name][2], runs["dp"][2], rtol=2e-5, err_msg=name)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def test_resnet_under_fsdp_splits_convolutions_and_trains_like_data_parallel():
  """SimCLR's ResNet with global BatchNorm: convolution kernels split over output channels, same losses as DP."""
  c = load_config("configs/tiny/simclr.py")
  c.batch_size, c.eval.batch_size = 16, 16
  it = iter(inputs.train_stream(c.data, sources.digits("train"), seed=0, global_batch_size=16))
  batches = [next(it) for _ in range(2)]
  dp, fsdp = (train_steps(c.copy_and_resolve_references(), MESHES[name], batches) for name in ("dp", "fsdp"))
  kernels = [(p, x) for p, x in jax.tree_util.tree_flatten_with_path(fsdp[1].params)[0] if x.ndim == 4]
  assert kernels and all(x.sharding.spec == P(None, None, None, "fsdp") for _, x in kernels)
  assert sharding.per_device_bytes(fsdp[1].params) < sharding.per_device_bytes(dp[1].params) / 2
  np.testing.assert_allclose(fsdp[2], dp[2], rtol=2e-5)


def test_replicated_parameters_under_fsdp_fail_loudly():
  c = load_config("configs/tiny/simclr.py")
  c.sharding_rules = tuple(r for r in c.sharding_rules if r[0] != "conv_out") + (("conv_out", None),)
  c.mesh_preset = "fsdp"
  c.batch_size, c.eval.batch_size = 64, 64
  mesh = sharding.make_mesh(c.mesh.to_dict(), preset=c.mesh_preset)
  with pytest.raises(ValueError, match=r"not sufficiently sharded over fsdp x tensor = 8 devices.*largest replicated"
                                       r".*stage3_block1.*conv2"):
    train.build(c, mesh, 1437, 10)
  c.sharding_tolerance = None                   # explicitly allowed
  train.build(c, mesh, 1437, 10)


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_language_models_train_alike_under_data_fsdp_and_tensor_parallelism(name):
  """GPT and BERT (dropout and masks on) through the trainer's step: the vocabulary split over tensor and the width
  over FSDP, the same losses as data parallelism over three steps."""
  c = load_config(f"configs/tiny/{name}.py")
  c.batch_size = 16
  c.model.update(dict(width=32, depth=2, num_heads=4, mlp_dim=64, vocab_size=4096))
  it = iter(inputs.train_stream(c.data, inputs.open_source(c.data, "train"), seed=0, global_batch_size=16))
  batches = [next(it) for _ in range(3)]
  (_, _, dp), (_, tp, tp_losses) = (train_steps(c.copy_and_resolve_references(), MESHES[m], batches)
                                    for m in ("dp", "dp_fsdp_tp"))
  table = tp.params["token_embedding"]
  assert table.sharding.spec == P("tensor", "fsdp") and table.sharding.shard_shape(table.shape) == (2048, 16)
  np.testing.assert_allclose(tp_losses, dp, rtol=2e-5)
  assert dp[0] > dp[-1] > 0

"""Data parallelism, FSDP (ZeRO-3) and FSDP + tensor parallelism on 8 CPU devices: the intended partition specs, the
same losses, optimizer state sharded like the parameters, and the check against replicated parameters."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from conftest import load_config
from ssl_jax import sharding
from ssl_jax import train
from ssl_jax.data import pipeline
from ssl_jax.data import sources

MESHES = {"dp": dict(data=8, fsdp=1, tensor=1), "fsdp": dict(data=1, fsdp=8, tensor=1),
          "fsdp_tp": dict(data=1, fsdp=4, tensor=2), "dp_fsdp_tp": dict(data=2, fsdp=2, tensor=2)}


def _train(config, mesh_sizes, batches):
  config.mesh = mesh_sizes
  mesh = sharding.make_mesh(mesh_sizes)
  program = train.build(config, mesh, 1437)
  with jax.set_mesh(mesh), nn.logical_axis_rules(config.sharding_rules):
    state, losses = program.init(), []
    for b in batches:
      state, m = program.step(state, pipeline.to_global(b, sharding.batch_sharding(mesh)))
      losses.append(float(m["loss"]))
  return program, state, losses


def test_fsdp_and_tensor_parallel_shard_as_intended_and_train_like_data_parallel(tiny_config):
  tiny_config.model.update(dict(width=64, num_heads=4, mlp_dim=128))
  it = iter(pipeline.train_dataset(sources.digits("train"), seed=0, global_batch_size=tiny_config.batch_size,
                                   image_size=16))
  batches = [next(it) for _ in range(3)]
  runs = {name: _train(tiny_config.copy_and_resolve_references(), m, batches) for name, m in MESHES.items()}

  # The logical rules give every preset the same PartitionSpecs; the mesh sizes decide what each device holds.
  shard = lambda state, *path: _get(state.params, path).sharding.shard_shape(_get(state.params, path).shape)
  attn = ("encoder", "encoder", "block0", "attn")
  fc1 = ("encoder", "encoder", "block0", "mlp", "fc1", "kernel")
  _, tp, _ = runs["fsdp_tp"]
  assert _get(tp.params, attn + ("qkv_kernel",)).sharding.spec == P("fsdp", None, "tensor", None)   # [D, 3, H, d]
  assert _get(tp.params, attn + ("out_kernel",)).sharding.spec == P("tensor", None, "fsdp")          # [H, d, D]
  assert _get(tp.params, fc1).sharding.spec == P("fsdp", "tensor")
  expected = {"dp": [(64, 3, 4, 16), (64, 128)], "fsdp": [(8, 3, 4, 16), (8, 128)],
              "fsdp_tp": [(16, 3, 2, 16), (16, 64)], "dp_fsdp_tp": [(32, 3, 2, 16), (32, 64)]}
  for name, (qkv, mlp) in expected.items():
    state = runs[name][1]
    assert (shard(state, *attn, "qkv_kernel"), shard(state, *fc1)) == (qkv, mlp), name
  # Adam's moments shard exactly like the parameters they follow (ZeRO-3: nothing held whole).
  mu = [x for x in jax.tree.leaves(tp.opt_state) if getattr(x, "shape", None) == (64, 3, 4, 16)]
  assert mu and all(x.sharding.shard_shape(x.shape) == (16, 3, 2, 16) for x in mu)
  held = {name: sharding.per_device_bytes(state.params) for name, (_, state, _) in runs.items()}
  assert held["fsdp"] < held["dp"] / 6 and held["fsdp_tp"] < held["dp"] / 6

  for name in ("fsdp", "fsdp_tp", "dp_fsdp_tp"):
    np.testing.assert_allclose(runs[name][2], runs["dp"][2], rtol=2e-5, err_msg=name)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def test_replicated_parameters_under_fsdp_fail_loudly():
  c = load_config("configs/tiny/simclr.py")     # ResNet convolutions carry no logical axis names: replicated
  c.mesh = dict(data=1, fsdp=8, tensor=1)
  c.batch_size, c.eval.batch_size = 64, 64
  mesh = sharding.make_mesh(c.mesh.to_dict())
  with pytest.raises(ValueError, match=r"not sufficiently sharded over fsdp x tensor = 8 devices.*largest replicated"):
    train.build(c, mesh, 1437, 10)
  c.sharding_tolerance = None                   # explicitly allowed
  train.build(c, mesh, 1437, 10)

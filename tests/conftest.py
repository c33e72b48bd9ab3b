"""Test setup: 8 CPU devices and two compile options (set before jax is imported), a session-wide XLA
compilation cache shared by the pytest-xdist workers and the subprocesses, absl flags parsed, quiet Orbax/Grain
logs."""

import os

# Two compile options for the tests' programs (each unless XLA_FLAGS already sets it): they change how XLA:CPU emits
# kernels (and so the last bits of some results), not the programs (XLA's HLO passes, fusion and partitioning run as
# for users), and the suite compiles thousands of small programs and runs each a few times (docs/testing.md, "Why the
# tests compile ...").
#  - LLVM's optimisation level 0: LLVM's passes over the emitted kernels skipped, about half of a CPU compile (perf);
#    35% less time for the suite.
#  - XLA:CPU's loop emitters for fusions instead of its newer MLIR fusion emitters: 30-35% less compile time for the
#    tiny train steps (SimCLR, DINOv2, MAE), when this XLA still has the choice (probed once: an unknown flag aborts).
# The README's main job (.ci/run) compiles with XLA's defaults, and so does tests/test_isa.py (`user_xla_flags`).
OPT_LEVEL_FLAG = "--xla_backend_optimization_level=0"
EMITTERS_FLAG = "--xla_cpu_use_fusion_emitters=false"
DEVICES_FLAG = "--xla_force_host_platform_device_count=8"


def _xla_accepts(flag: str) -> bool:
  """Whether this jaxlib's XLA knows `flag` ("--name=value"): a child process starts the CPU backend with it (XLA
  aborts on a flag it does not know)."""
  import subprocess
  import sys
  done = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True, timeout=120,
                        env=dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu"))
  return done.returncode == 0


# Decided once, in the session's first process (pytest-xdist's controller, or the only process); its workers and
# subprocesses inherit the environment.
if "SSL_JAX_TEST_COMPILE_FLAGS" not in os.environ:
  _given = os.environ.get("XLA_FLAGS", "")
  os.environ["SSL_JAX_TEST_COMPILE_FLAGS"] = " ".join(
      f for f in (OPT_LEVEL_FLAG, EMITTERS_FLAG)
      if f.split("=")[0] not in _given and (f == OPT_LEVEL_FLAG or _xla_accepts(f)))
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [_given, DEVICES_FLAG, os.environ["SSL_JAX_TEST_COMPILE_FLAGS"]]))
TEST_COMPILE_FLAGS = tuple(os.environ["SSL_JAX_TEST_COMPILE_FLAGS"].split())


def user_xla_flags() -> str:
  """The tests' `XLA_FLAGS` without the compile options above: XLA compiles as it does for users."""
  flags = os.environ["XLA_FLAGS"].split()
  return " ".join(f for f in flags if f not in TEST_COMPILE_FLAGS)


def one_device_xla_flags() -> str:
  """The tests' `XLA_FLAGS` without the 8 virtual devices, for a subprocess that runs as a user's shell would (one
  CPU device, or the devices its launcher asks for), compiled at the suite's level."""
  return " ".join(os.environ["XLA_FLAGS"].replace(DEVICES_FLAG, "").split())
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session, shared with the main.py subprocesses: the many runs of the same
# tiny programs (resume tests run a config two or three times) compile once.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  import tempfile
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ssl_jax_test_xla_cache_")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import importlib.util  # noqa: E402
import pathlib  # noqa: E402

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import pytest  # noqa: E402

flags.FLAGS.mark_as_parsed()
logging.set_verbosity(logging.WARNING)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per core, but at most one per 6 GiB of memory (a worker's peak, 8 virtual devices and
  the full-size ViT-B steps, is about 5 GiB)."""
  import psutil
  return max(1, min(psutil.cpu_count(logical=False) or 1, psutil.virtual_memory().total // (6 << 30)))


def pytest_sessionfinish(session):
  """Removes the cache this process made, once: in the controller under pytest-xdist (its workers inherit the
  directory through the environment and share it), or in the only process without it."""
  if _OWN_CACHE and not hasattr(session.config, "workerinput"):
    import shutil
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def load_config(path: str, arg=None):
  """`get_config(arg)` of a config file given relative to the repository root, unlocked for the test to edit."""
  spec = importlib.util.spec_from_file_location("config_under_test", ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.unlock()
  return config


def image_run(size: int, **facts):
  """The `RunInfo` of a single-view image method on `size` x `size` images (other facts as keywords)."""
  import jax
  import numpy as np
  from ssl_jax.methods import contract
  return contract.RunInfo(inputs={"image": jax.ShapeDtypeStruct((size, size, 3), np.float32)}, **facts)


def train_steps(config, mesh_sizes, batches):
  """Builds `config` on a mesh of `mesh_sizes` (a dict, or a `config.mesh_preset` name) and applies one step per
  host batch: (program, state, losses)."""
  import flax.linen as nn
  import jax
  from ssl_jax import sharding
  from ssl_jax import train
  from ssl_jax.data import pipeline
  if isinstance(mesh_sizes, str):
    config.mesh_preset = mesh_sizes
  else:
    config.mesh = mesh_sizes
  mesh = sharding.make_mesh(config.mesh.to_dict(), preset=config.mesh_preset)
  program = train.build(config, mesh, 1437, 10)
  with jax.set_mesh(mesh), nn.logical_axis_rules(config.sharding_rules):
    state, losses = program.init(), []
    for b in batches:
      state, m = program.step(state, pipeline.to_global(b, sharding.batch_sharding(mesh)))
      losses.append(float(m["loss"]))
  return program, state, losses


@pytest.fixture
def tiny_config():
  """The tiny MAE config shrunk further: a run of a few steps takes seconds."""
  c = load_config("configs/tiny/mae.py")
  c.batch_size = 32
  c.total_epochs = None
  c.total_steps = 6
  c.log_every = 1
  c.ckpt_every = 3
  c.optim.warmup_epochs = None
  c.optim.warmup_steps = 2
  c.data.image.size = 16
  c.model.width = 32
  c.model.depth = 1
  c.model.num_heads = 2
  c.model.mlp_dim = 64
  c.method.decoder = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
  c.eval.train_split = "train[:200]"
  c.eval.test_split = "test[:80]"
  c.eval.batch_size = 40
  c.eval.evaluators.linear.steps = 20
  c.eval.report = False                 # its own tests cover it; t-SNE would slow every run
  c.eval.raw_baseline = False
  return c


@pytest.fixture(scope="session")
def mae_workdir(tmp_path_factory):
  """A tiny MAE pretraining run of 4 steps (ViT width 32, depth 2, 4 heads) that downstream protocols and export
  start from: (workdir, its final evaluation)."""
  from ssl_jax import train
  c = load_config("configs/tiny/mae.py")
  c.update(dict(batch_size=32, total_epochs=None, total_steps=4, log_every=2, ckpt_every=4))
  c.optim.warmup_epochs, c.optim.warmup_steps = None, 1
  c.model.update(dict(width=32, depth=2, num_heads=4, mlp_dim=64))
  c.method.decoder = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
  c.eval.update(dict(train_split="train[:200]", test_split="test[:80]", batch_size=40, init_baseline=False,
                     raw_baseline=False, report=False))
  c.eval.evaluators.linear.steps = 20
  workdir = tmp_path_factory.mktemp("mae")
  return workdir, train.run(c, str(workdir))

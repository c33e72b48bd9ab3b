"""The ahead-of-time compile check (`main.py --dry_run`): shardings and per-device memory, no data read, nothing
written; compiling for a described TPU topology where libtpu is installed."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from ssl_jax import dry_run


def _small(config):
  config.model.update(dict(width=32, depth=2, num_heads=2, mlp_dim=64))
  config.method.decoder = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
  config.batch_size = 64
  config.eval.batch_size = 40
  return config


def test_dry_run_reports_shardings_and_memory_per_device(tiny_config, capsys):
  reports = {}
  for name, mesh in (("dp", dict(data=8, fsdp=1, tensor=1)), ("fsdp", dict(data=1, fsdp=8, tensor=1))):
    c = _small(tiny_config.copy_and_resolve_references())
    c.mesh = mesh
    reports[name] = dry_run.check(c)
  dp, fsdp = reports["dp"]["bytes_per_device"], reports["fsdp"]["bytes_per_device"]
  assert reports["dp"]["devices"] == 8 and reports["fsdp"]["mesh"] == dict(data=1, fsdp=8, tensor=1)
  # Adam: two moments per parameter, sharded like the parameters.
  assert fsdp["opt_state"] == pytest.approx(2 * fsdp["params"], rel=0.01)
  assert fsdp["params"] < dp["params"] / 3
  # The donated state is aliased; the step's arguments hold at least the state and this device's batch slice.
  assert dp["step_aliased"] >= dp["params"] + dp["opt_state"]
  assert dp["step_arguments"] >= dp["params"] + dp["opt_state"] + 64 // 8 * 16 * 16 * 3
  assert dp["step_peak"] > dp["step_arguments"] and reports["dp"]["flops_per_device"] > 0
  out = capsys.readouterr().out
  assert "encoder/encoder/block*/attn/qkv_kernel  x2  (32, 2, 3, 16)  ('fsdp', 'tensor', None, None)  " \
         "(4, 2, 3, 16)" in out
  assert "per-device memory:" in out and "step_peak" in out


def test_dry_run_needs_no_data_and_writes_nothing(tiny_config, tmp_path, capsys):
  c = _small(tiny_config)
  c.data.update(dict(name="imagenet2012", data_dir=str(tmp_path / "tfds")))     # not on this machine
  c.eval.evaluators.knn.k = 5
  report = dry_run.check(c)
  assert report["bytes_per_device"]["step_peak"] > 0
  assert "data set 'imagenet2012' not readable here" in capsys.readouterr().out
  assert not (tmp_path / "tfds").exists()


def test_main_dry_run_flags(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  run = lambda *args: subprocess.run([sys.executable, "main.py", "--config=configs/tiny/mae.py", *args], cwd=ROOT,
                                     env=env, capture_output=True, text=True, timeout=300)
  out = run("--dry_run", "--config.model.depth=1", "--config.batch_size=16")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "dry run: mae, global batch 16" in out.stdout and "step_peak" in out.stdout
  out = run("--topology=v5e:2x2", f"--workdir={tmp_path / 'w'}")
  assert out.returncode != 0 and "--topology needs --dry_run" in out.stderr
  out = run()
  assert out.returncode != 0 and "--workdir is required (unless --dry_run)" in out.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="compiling for a TPU topology needs libtpu: pip install -e '.[tpu]'")
def test_dry_run_compiles_for_a_tpu_topology_without_a_tpu(tiny_config):
  c = _small(tiny_config)
  c.mesh = dict(data=1, fsdp=-1, tensor=1)
  report = dry_run.check(c, topology="v5e:2x2")
  assert report["devices"] == 4 and report["device_kind"] == "TPU v5 lite"
  assert report["mesh"] == dict(data=1, fsdp=4, tensor=1) and report["bytes_per_device"]["step_peak"] > 0
  with pytest.raises(ValueError, match="is not a TPU topology libtpu knows"):
    dry_run.check(c, topology="v5e-nonsense")
  c.batch_size = 2 ** 20                          # 28 GiB of temporaries per 16 GiB chip: the compiler refuses it
  with pytest.raises(dry_run.DoesNotFit, match=r"does not fit in the memory of a TPU v5 lite device.*HBM.*To fit: "):
    dry_run.check(c, topology="v5e:2x2")


def test_dry_run_compiles_a_text_config_under_fsdp_and_tensor_parallelism(capsys):
  """The text path ahead of time: the tiny GPT's step compiles from the input spec on an FSDP x TP mesh, the
  vocabulary read from the data (`dataset_facts`), the embedding split as (tensor, fsdp)."""
  from conftest import load_config
  c = load_config("configs/tiny/gpt.py")
  assert dry_run.dataset_facts(c)[:3] == (7947, None, 4096)
  c.model.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  c.mesh = dict(data=2, fsdp=2, tensor=2)
  c.batch_size = 16
  report = dry_run.check(c)
  assert report["mesh"] == dict(data=2, fsdp=2, tensor=2) and report["flops_per_device"] > 0
  row = next(l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("token_embedding"))
  assert row.split() == ["token_embedding", "(4096,", "32)", "('tensor',", "'fsdp')", "(2048,", "16)"]


@pytest.mark.parametrize("path, parameters", [("configs/gpt2_small.py:10b", 124_475_904),     # 124,439,808 + 47 rows
                                              ("configs/bert_base.py:512", 109_514_298)])
def test_dry_run_compiles_the_full_language_configs_without_their_data(path, parameters, capsys):
  """GPT-2 small and BERT-base on an FSDP x TP mesh, two of their twelve blocks (a 768-wide block holds 7,087,872
  parameters) and a small batch, for a short compile, with no corpus on this machine: the vocabulary, widths and
  positions come from the config."""
  from conftest import load_config
  c = load_config(*path.split(":"))
  c.batch_size, c.mesh, c.model.depth = 16, dict(data=2, fsdp=2, tensor=2), 2
  report = dry_run.check(c)
  assert report["parameters"] == parameters - 10 * 7_087_872 and report["mesh"] == dict(data=2, fsdp=2, tensor=2)
  assert "data set 'prepared' not readable here" in capsys.readouterr().out

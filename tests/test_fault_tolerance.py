"""Fault injection on the tiny MAE config: preemption, kill -9, exactly-once data, non-finite steps, damaged
checkpoints, a workdir of another experiment, an unwritable workdir. Real processes where that is what is tested."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import ROOT
from conftest import one_device_xla_flags
from ssl_jax import checkpoint
from ssl_jax.runtime import preemption
from ssl_jax import train

# The tiny config shrunk (as the `tiny_config` fixture), as command-line overrides.
TINY = ["--config.batch_size=32", "--config.total_steps=40", "--config.log_every=1", "--config.ckpt_every=4",
        "--config.optim.warmup_steps=2", "--config.data.image.size=16", "--config.model.width=32",
        "--config.model.depth=1", "--config.model.num_heads=2", "--config.model.mlp_dim=64",
        "--config.method.decoder.width=32", "--config.method.decoder.depth=1", "--config.method.decoder.num_heads=2",
        "--config.method.decoder.mlp_dim=64", "--config.eval.train_split=train[:200]",
        "--config.eval.test_split=test[:80]", "--config.eval.batch_size=40", "--config.eval.evaluators.linear.steps=20",
        "--config.eval.init_baseline=False", "--config.eval.report=False",
        "--config.debug.log_example_ids=True"]


def _start(workdir, *extra):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.Popen([sys.executable, "main.py", "--config=configs/tiny/mae.py", f"--workdir={workdir}",
                           *TINY, *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _records(workdir):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def _losses(workdir):
  return {r["step"]: r["loss"] for r in _records(workdir) if "loss" in r}


def _ids(workdir):
  lines = (pathlib.Path(workdir) / "example_ids" / "process_0.jsonl").read_text().splitlines()
  return {r["step"]: r["ids"] for r in map(json.loads, lines)}


def _wait_for_step(workdir, step, proc, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if max(_losses(workdir), default=0) >= step:
      return
    if proc.poll() is not None:
      raise AssertionError(f"the run ended early: {proc.stdout.read()}")
    time.sleep(0.05)
  raise AssertionError(f"step {step} not reached in {timeout}s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of the same command."""
  workdir = tmp_path_factory.mktemp("reference")
  proc = _start(workdir)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  return workdir


def _signal_saves_the_step(proc, workdir, signum, exit_code):
  """Sends `signum` to the running `proc`; it must exit with `exit_code` having saved the step at which the signal
  arrived (logged, then saved). Returns (that step, the output)."""
  proc.send_signal(signum)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == exit_code, out
  saved = checkpoint.Checkpointer(workdir / "checkpoints").latest_step()
  assert saved == max(_losses(workdir))
  return saved, out


def test_sigterm_saves_the_current_step_and_exits_75_then_resumes(reference, tmp_path):
  proc = _start(tmp_path)
  _wait_for_step(tmp_path, 6, proc)
  saved, out = _signal_saves_the_step(proc, tmp_path, signal.SIGTERM, preemption.PREEMPTED_EXIT_CODE)
  assert f"checkpoint of step {saved} saved" in out
  proc = _start(tmp_path)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  assert f"resuming from step {saved}" in out
  assert _losses(tmp_path) == _losses(reference)        # bit-identical, and every step exactly once
  assert _ids(tmp_path) == _ids(reference)


def _assert_one_line_per_step(workdir):
  """metrics.jsonl parses line by line, and its steps strictly increase (no step twice, none out of order)."""
  steps = [r["step"] for r in _records(workdir)]
  assert steps == sorted(set(steps)), steps


def _ends_as_the_reference(proc, workdir, reference):
  """`proc` finishes with the uninterrupted run's losses and examples, each step logged once."""
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  _assert_one_line_per_step(workdir)
  assert _losses(workdir) == _losses(reference)
  assert _ids(workdir) == _ids(reference)


def test_second_run_on_a_live_workdir_is_refused_at_once(reference, tmp_path):
  """Scenario: the same command started twice on one workdir. The second stops within seconds with exit 73, names
  the first (its pid and command) and writes nothing; the first finishes with every step logged once, in order."""
  first = _start(tmp_path)
  _wait_for_step(tmp_path, 2, first)
  start = time.time()
  second = _start(tmp_path)
  out, _ = second.communicate(timeout=120)
  assert second.returncode == 73, out
  assert time.time() - start < 60
  assert f"is in use by another run: pid {first.pid} " in out and "main.py --config=configs/tiny/mae.py" in out
  assert "Traceback" not in out
  _ends_as_the_reference(first, tmp_path, reference)


def test_ctrl_c_saves_and_resumes_and_a_second_ctrl_c_stops_at_once(reference, tmp_path):
  """Scenario: Ctrl-C (SIGINT). The first saves the current step and exits 130 with one line, no traceback; two in a
  row stop at once, leaving every committed checkpoint intact; the reruns resume bit-identically."""
  proc = _start(tmp_path)
  _wait_for_step(tmp_path, 3, proc)
  saved, out = _signal_saves_the_step(proc, tmp_path, signal.SIGINT, preemption.INTERRUPTED_EXIT_CODE)
  assert f"interrupted at step {saved} (its checkpoint is saved); rerun the same command to resume" in out
  assert "Traceback" not in out and "KeyboardInterrupt" not in out

  proc = _start(tmp_path)                              # resumes; then two Ctrl-C in a row
  _wait_for_step(tmp_path, saved + 2, proc)
  proc.send_signal(signal.SIGINT)
  time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == preemption.INTERRUPTED_EXIT_CODE, out
  assert "Traceback" not in out
  steps = _steps_on_disk(tmp_path)
  assert steps and all(checkpoint.step_damage(tmp_path / "checkpoints", s) is None for s in steps)

  _ends_as_the_reference(_start(tmp_path), tmp_path, reference)


def test_kill_9_at_any_moment_loses_only_uncommitted_work(reference, tmp_path):
  rng = np.random.default_rng(0)
  for _ in range(3):
    proc = _start(tmp_path)
    reached = max(_losses(tmp_path), default=0)
    _wait_for_step(tmp_path, reached + 1, proc)
    time.sleep(rng.uniform(0.0, 1.5))                   # mid-step, mid-log or mid-(async)-save
    proc.kill()
    proc.wait()
    latest = checkpoint.Checkpointer(tmp_path / "checkpoints").latest_step()
    assert latest is None or latest <= max(_losses(tmp_path))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(l)["step"] for l in lines[:-1]]    # the last line may be cut short by the kill
    assert steps == sorted(set(steps))
  proc = _start(tmp_path)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  _assert_one_line_per_step(tmp_path)
  assert _losses(tmp_path) == _losses(reference)
  ids, ref_ids = _ids(tmp_path), _ids(reference)
  assert ids == ref_ids                                 # the data each step saw: no example repeated or skipped
  assert len(ids) == 40


LAUNCH = ROOT / "launch" / "local.sh"


def _launch(workdir, log_dir, *extra):
  """The same run as `_start`, as 2 processes x 4 CPU devices through launch/local.sh."""
  env = dict(os.environ, XLA_FLAGS=one_device_xla_flags())
  env.update(PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu", PYTHON=sys.executable, DEVICES_PER_PROCESS="4",
             LOG_DIR=str(log_dir), KILL_AFTER="5")
  # A process group of its own, as a terminal's foreground job: Ctrl-C there is a SIGINT to the whole group.
  return subprocess.Popen(["bash", str(LAUNCH), "2", "configs/tiny/mae.py", f"--workdir={workdir}", *TINY, *extra],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)


def _pid(workdir, process_id):
  pattern = f"--process_id={process_id} --workdir={workdir} "
  out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True, check=True)
  return int(out.stdout.split()[0])


def _ids_of_processes(workdir):
  """Per step, the example ids of the global batch: process 0's slice, then process 1's where a second process ran
  that step (a run that moved between process counts)."""
  logs = sorted((pathlib.Path(workdir) / "example_ids").glob("process_*.jsonl"))
  ids = {}
  for log in logs:
    for r in map(json.loads, log.read_text().splitlines()):
      ids.setdefault(r["step"], []).extend(r["ids"])
  return ids


def test_a_run_moves_between_process_counts_through_every_kind_of_stop(reference, tmp_path):
  """One run taken in turns by 2 processes x 4 CPU devices (launch/local.sh) and 1 process x 8, each turn ended by a
  different stop:

  1. 2 processes; a SIGTERM reaches process 1 only: JAX's preemption service makes both stop at one agreed step, both
     save it and exit 75, and the launcher with them.
  2. 1 process resumes the checkpoint the 2 wrote; a SIGTERM: it saves the step it is at and exits 75.
  3. 2 processes resume the checkpoint the 1 wrote; Ctrl-C in the terminal (a SIGINT to the launcher and both
     processes, which the launcher also forwards as a preemption notice): both save one agreed step, the launcher
     exits 130.
  4. 2 processes run to the end and evaluate; only process 0 prints.

  The losses are the uninterrupted 1-process run's up to the order of floating-point reductions (Gloo across
  processes, XLA within one), each step logged once, every example seen exactly once, and the evaluation agrees."""
  workdir, log = tmp_path / "run", tmp_path / "local_process_1.log"
  proc = _launch(workdir, tmp_path)
  _wait_for_step(workdir, 6, proc)
  os.kill(_pid(workdir, 1), signal.SIGTERM)
  out, _ = proc.communicate(timeout=180)
  assert proc.returncode == preemption.PREEMPTED_EXIT_CODE, out
  saved = checkpoint.Checkpointer(workdir / "checkpoints").latest_step()
  assert saved >= 6 and saved == max(_losses(workdir))
  assert checkpoint.step_damage(workdir / "checkpoints", saved) is None
  for text in (out, log.read_text()):
    assert f"checkpoint of step {saved} saved" in text

  proc = _start(workdir)
  _wait_for_step(workdir, saved + 2, proc)
  resumed, saved = saved, _signal_saves_the_step(proc, workdir, signal.SIGTERM, preemption.PREEMPTED_EXIT_CODE)[0]
  assert saved > resumed

  proc = _launch(workdir, tmp_path)
  _wait_for_step(workdir, saved + 2, proc)
  os.killpg(proc.pid, signal.SIGINT)                   # Ctrl-C in the terminal: the launcher and both processes
  out, _ = proc.communicate(timeout=180)
  assert proc.returncode == preemption.INTERRUPTED_EXIT_CODE, out
  assert f"resuming from step {saved}" in out
  resumed, saved = saved, checkpoint.Checkpointer(workdir / "checkpoints").latest_step()
  assert saved > resumed and checkpoint.step_damage(workdir / "checkpoints", saved) is None
  for text in (out, log.read_text()):
    assert f"interrupted at step {saved} (its checkpoint is saved)" in text and "Traceback" not in text

  proc = _launch(workdir, tmp_path)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  assert f"resuming from step {saved}" in out and "on 8 devices" in out
  assert out.count("evaluation at step 40") == 1 and "evaluation at step" not in log.read_text()
  _assert_one_line_per_step(workdir)
  losses, ref = _losses(workdir), _losses(reference)
  assert sorted(losses) == sorted(ref)
  np.testing.assert_allclose([losses[k] for k in sorted(losses)], [ref[k] for k in sorted(ref)], rtol=2e-6)
  assert _ids_of_processes(workdir) == _ids(reference)
  knn = lambda d: [r for r in _records(d) if "eval/knn_top1" in r][-1]["eval/knn_top1"]
  assert knn(workdir) == pytest.approx(knn(reference), abs=1 / 80)    # one of the 80 test images may flip


def test_a_frozen_process_ends_the_job_instead_of_hanging(tmp_path):
  """A process that stops responding (SIGSTOP: no crash, no closed socket) is declared dead after
  config.distributed.heartbeat_timeout_s and the job ends with an error; committed checkpoints stay intact."""
  workdir = tmp_path / "run"
  proc = _launch(workdir, tmp_path, "--config.distributed.heartbeat_timeout_s=5")
  _wait_for_step(workdir, 5, proc)
  os.kill(_pid(workdir, 1), signal.SIGSTOP)
  start = time.time()
  out, _ = proc.communicate(timeout=180)
  assert proc.returncode not in (0, preemption.PREEMPTED_EXIT_CODE)
  assert time.time() - start < 90, "the job outlived the heartbeat timeout by far"
  assert "stopped sending heartbeats" in out
  steps = _steps_on_disk(workdir)
  assert 4 in steps and all(checkpoint.step_damage(workdir / "checkpoints", s) is None for s in steps)


def _steps_on_disk(workdir):
  return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def test_nonfinite_skip_keeps_the_state_and_counts(tiny_config, tmp_path):
  tiny_config.ckpt_every, tiny_config.keep_ckpts, tiny_config.eval.init_baseline = 1, 10, False
  tiny_config.debug.nonfinite_at_steps = (3,)
  train.run(tiny_config, str(tmp_path))
  records = {r["step"]: r for r in _records(tmp_path) if "loss" in r}
  assert [records[s]["skipped_steps"] for s in range(1, 7)] == [0, 0, 1, 1, 1, 1]
  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints")
  params = {}
  for s in (2, 3, 4):
    state = ckpt._mngr.restore(s, args=checkpoint.ocp.args.Composite(state=checkpoint.ocp.args.PyTreeRestore()))
    params[s] = state["state"]["params"]
  ckpt.close()
  same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params[2], params[3])
  assert all(jax.tree.leaves(same))                     # step 3's update was not applied
  changed = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params[3], params[4])
  assert not all(jax.tree.leaves(changed))              # training went on


def test_nonfinite_streak_stops_the_run(tiny_config, tmp_path):
  tiny_config.eval.init_baseline = False
  tiny_config.debug.nonfinite_at_steps = (2, 3, 4)
  tiny_config.max_nonfinite_streak = 3
  with pytest.raises(train.NonFiniteError, match="3 consecutive steps .* first at step 2"):
    train.run(tiny_config, str(tmp_path))


def test_nonfinite_stop_policy_writes_no_later_checkpoint(tiny_config, tmp_path):
  tiny_config.ckpt_every, tiny_config.nonfinite_policy = 1, "stop"
  tiny_config.debug.nonfinite_at_steps = (3,)
  with pytest.raises(train.NonFiniteError, match="at step 3"):
    train.run(tiny_config, str(tmp_path))
  assert _steps_on_disk(tmp_path) == [1, 2]


def _damage_truncate(step_dir, outside):
  for data in (step_dir / "state").rglob("d/*"):       # every array data file, cut to a third
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])


def _damage_marker(step_dir, outside):
  (step_dir / "commit_success.txt").unlink()


def _damage_symlink(step_dir, outside):
  victim = step_dir / "data" / "process_0-of-1.json"
  outside.write_text(victim.read_text())
  victim.unlink()
  victim.symlink_to(outside)


@pytest.mark.parametrize("damage,reason", [(_damage_truncate, "cannot be restored"),
                                           (_damage_marker, "commit_success.txt is missing"),
                                           (_damage_symlink, "links outside the checkpoint directory")])
def test_damaged_latest_checkpoint_falls_back(tiny_config, tmp_path, damage, reason):
  tiny_config.eval.init_baseline = False
  reference = tmp_path / "reference"
  train.run(tiny_config, str(reference))
  workdir = tmp_path / "run"
  train.run(tiny_config, str(workdir), stop_at=5)      # checkpoints 3 and 5
  assert _steps_on_disk(workdir) == [3, 5]
  damage(workdir / "checkpoints" / "5", tmp_path / "outside.json")
  with pytest.warns(RuntimeWarning, match=f"checkpoint step 5 is damaged.*{reason}"):
    train.run(tiny_config, str(workdir))
  assert _losses(workdir) == _losses(reference)         # resumed from step 3, identically
  kept = list((workdir / "checkpoints_damaged").iterdir())
  assert len(kept) == 1 and kept[0].name.startswith("5-")    # moved aside, not deleted


def test_other_experiment_in_workdir_is_refused_or_archived_on_restart(tiny_config, tmp_path):
  tiny_config.total_steps, tiny_config.eval.init_baseline = 2, False
  train.run(tiny_config, str(tmp_path), stop_at=1)
  files = lambda: {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "lease.json"}
  before = files()             # lease.json records the last run that opened the workdir, the refused one too
  tiny_config.model.depth = 2
  tiny_config.batch_size = 16
  with pytest.raises(checkpoint.ConfigMismatch, match=r"different config \(model, batch_size\).*--restart"):
    train.run(tiny_config, str(tmp_path))
  assert files() == before
  train.run(tiny_config, str(tmp_path), restart=True)
  archived = list((tmp_path / "archive").iterdir())
  assert len(archived) == 1 and (archived[0] / "checkpoints" / "1").is_dir()
  assert sorted(_losses(tmp_path)) == [1, 2]


def test_checkpoint_of_another_parameter_layout_is_refused_and_kept(tmp_path):
  """A step whose arrays have other shapes than the current code builds (written by a version with another parameter
  layout, e.g. the q/k/v kernel's `[D, 3, heads, d]` before it became `[D, heads, 3, d]`) is intact: it stops the run
  with the arrays named, and is neither moved aside as damaged nor skipped for an older step."""
  import grain
  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", async_save=False)
  data = iter(grain.MapDataset.range(8).to_iter_dataset())
  state = {"attn": {"qkv_kernel": np.zeros((8, 3, 2, 4), np.float32)}, "bias": np.zeros(3, np.float32)}
  config = {"method": "mae", "model": {"remat": "none"}}
  for step in (1, 2):
    ckpt.save(step, state, data, config)
  ckpt.wait()
  before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  replicated = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree)
  now = {"attn": {"qkv_kernel": np.zeros((8, 2, 3, 4), np.float32)}, "bias": np.zeros(3, np.float32)}
  with pytest.raises(checkpoint.StateMismatch) as e:
    ckpt.restore_latest(abstract(now), data, dict(config, model={"remat": "full", "attention_impl": "xla"}))
  assert e.value.args == (2, ["attn/qkv_kernel: stored (8, 3, 2, 4), this code builds (8, 2, 3, 4)"])
  assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
  # The layout it was written with restores (execution keys such as attention_impl may differ).
  restored = ckpt.restore_latest(abstract(state), data, dict(config, model={"remat": "full", "attention_impl": "xla"}))
  assert restored["attn"]["qkv_kernel"].shape == (8, 3, 2, 4)
  ckpt.close()


def test_unwritable_workdir_fails_before_compiling(tiny_config, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(PermissionError, match="cannot be written"):
    train.run(tiny_config, str(blocker / "run"))


def test_failed_async_checkpoint_write_surfaces_and_keeps_earlier_steps(tmp_path):
  """A full disk, simulated by a file-size limit (which binds root too): the error is reported, not swallowed."""
  import resource

  def small_files_only():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write beyond the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

  first = _start(tmp_path, "--config.total_steps=4")
  out, _ = first.communicate(timeout=300)
  assert first.returncode == 0, out
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  args = [sys.executable, "main.py", "--config=configs/tiny/mae.py", f"--workdir={tmp_path}", *TINY,
          "--config.total_steps=12"]
  full = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                        preexec_fn=small_files_only)
  assert full.returncode == 1
  assert "CheckpointWriteError" in full.stderr and "committed steps [4] are intact" in full.stderr
  assert _steps_on_disk(tmp_path) == [4]
  again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0 and "resuming from step 4" in again.stdout, again.stdout + again.stderr
  assert sorted(_steps_on_disk(tmp_path)) == [4, 8, 12]


def _image_folder(root, n_per_class=24):
  from PIL import Image
  rng = np.random.default_rng(0)
  for c in ("cat", "dog"):
    (root / "train" / c).mkdir(parents=True)
    for i in range(n_per_class):
      Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "train" / c / f"{i:03d}.png")
  good = (root / "train" / "cat" / "000.png").read_bytes()
  (root / "train" / "cat" / "005.png").write_bytes(good[: len(good) // 2])       # truncated
  (root / "train" / "dog" / "007.png").write_text("not an image")                  # not an image at all
  return root


def _folder_config(cfg, root, policy):
  cfg.data.update(dict(name="image_folder", data_dir=str(root)))
  cfg.data.image.bad_images = policy
  cfg.eval.update(dict(data_name="digits", init_baseline=False))
  cfg.total_steps = 4
  return cfg


def test_undecodable_images_are_skipped_and_counted(tiny_config, tmp_path):
  root = _image_folder(tmp_path / "images")
  train.run(_folder_config(tiny_config, root, "skip"), str(tmp_path / "run"))
  counts = [r["bad_examples"] for r in _records(tmp_path / "run") if "bad_examples" in r]
  assert counts == sorted(counts) and counts[-1] >= 1         # 4 steps x 32 draws from 48 files meet both bad ones


def test_undecodable_image_stops_the_run_with_its_name_by_policy(tiny_config, tmp_path):
  from ssl_jax.data import sources
  root = _image_folder(tmp_path / "images")
  with pytest.raises(sources.BadImageError, match=r"cannot decode .*(cat/005|dog/007)\.png"):
    train.run(_folder_config(tiny_config, root, "stop"), str(tmp_path / "run"))


def test_empty_image_folder_is_a_clear_error(tiny_config, tmp_path):
  (tmp_path / "images" / "train" / "cat").mkdir(parents=True)
  with pytest.raises(ValueError, match="holds no images"):
    train.run(_folder_config(tiny_config, tmp_path / "images", "skip"), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()

"""The README's commands that read a pretraining workdir run as written there: relative paths, from a checkout's
root (here a temporary directory laid out like one, with `workdirs/mae_tiny` a finished tiny MAE run)."""

import os
import re
import shlex
import subprocess
import sys

from conftest import ROOT


def _readme_commands(*prefixes):
  """The command lines of the README's code blocks that start with one of `prefixes`."""
  blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
  lines = [l.strip() for b in blocks for l in b.replace("\\\n", " ").splitlines()]
  return [l for l in lines if l.startswith(prefixes)]


def test_commands_on_a_pretraining_workdir_run_as_written(mae_workdir, tmp_path):
  workdir, _ = mae_workdir
  (tmp_path / "workdirs").mkdir()
  (tmp_path / "workdirs" / "mae_tiny").symlink_to(workdir)
  for name in ("main.py", "configs"):
    (tmp_path / name).symlink_to(ROOT / name)
  commands = _readme_commands("python -m ssl_jax.export", "python main.py --config=configs/knn.py")
  assert [c.split()[:3] for c in commands] == [["python", "main.py", "--config=configs/knn.py:digits"],
                                                ["python", "-m", "ssl_jax.export"]]
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  outputs = []
  for command in commands:
    argv = shlex.split(command)
    done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    outputs.append(done.stdout)
  assert "evaluation at step 0" in outputs[0] and (tmp_path / "workdirs" / "mae_tiny_eval" / "metrics.jsonl").exists()
  assert "wrote mae_tiny.safetensors" in outputs[1] and (tmp_path / "mae_tiny.safetensors").stat().st_size > 0

"""Every command the README and the docs pages show, checked as written.

The shell lines of every fenced `bash` block (and the `$ ` lines of a transcript block) in `DOCS` are collected, and
each must have an entry in `CHECKS` saying how it is checked, so that a command added to the docs fails
`test_every_documented_command_has_a_check` until it is given one:

- `Run`: run here by `bash -c`, exactly as written, from a directory laid out like a checkout (`main.py`, `configs/`,
  `launch/`, `benchmarks/` linked; `workdirs/mae_tiny` a finished tiny MAE pretraining run), with the test
  environment's Python first on PATH and XLA's default single CPU device, as a user's shell has (compiled with the
  suite's compile options, `conftest.TEST_COMPILE_FLAGS`, unless `users_compile`: the full-size smoke run, whose
  kernels' run time, not their compile, is what those options would cost; `.ci/run` runs the main job at XLA's
  defaults). Paths under `/tmp/` move into the test's directory (runs in parallel must not share them). `append`
  adds flags after the command (flags given twice: the last wins) where the documented run is long and a shorter one
  checks the same thing; `env` adds variables (DRY_RUN=1 where the command needs a cluster this machine is not).
- `Needs`: it needs what this machine does not have (a GPU, a TPU slice, Slurm, a bucket); where a Python package
  is what is missing (libtpu, torch) the command runs when the package is installed and is skipped with the
  install command otherwise.
- `Covered`: another test runs it, as written but for flags that shorten it and paths of its own (named, with what
  it changes), where running it here too would only repeat that test's cost.
- `Ci`: `.ci/run` executes it as written on a clean copy of the checkout (the README's two setup commands).
"""

import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from conftest import TEST_COMPILE_FLAGS
from conftest import one_device_xla_flags

DOCS = ("README.md", "launch/README.md", "benchmarks/README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))


@dataclasses.dataclass(frozen=True)
class Run:
  expect: str                          # a line fragment the command prints
  append: str = ""
  env: tuple[tuple[str, str], ...] = ()
  package: str | None = None           # run only when this package is importable
  install: str = ""
  workdir: str | None = None           # whose metrics.jsonl must hold a finite loss for each of steps 1..`steps`
  steps: int = 0
  users_compile: bool = False          # compiled as users compile (without `conftest.TEST_COMPILE_FLAGS`)


@dataclasses.dataclass(frozen=True)
class Needs:
  what: str


@dataclasses.dataclass(frozen=True)
class Covered:
  test: str                            # tests/<file>.py::<function>
  changes: str


@dataclasses.dataclass(frozen=True)
class Ci:
  pass


_SHORT_EVAL = " --config.total_epochs=1"   # one epoch of the head instead of 30: the same init_from path and protocol
_FEW = " --batches=3"                      # the pipeline's throughput over 3 batches instead of 20-30: the same code
# The full-size step rate at batch 8 given rather than measured in the same run (a compile and 5 steps of ViT-B or of
# DINO's 12 crops: minutes here); the full-size MAE step runs in the smoke command, DINO's is lowered in test_methods.
_NO_STEP = " --step_examples_per_s=1"
# The DINO config's 16 Grain worker processes are for a GPU host: on 2 cores the command took 43 s with them, 9 s
# with 2 (the same multi-process path).
_TWO_WORKERS = " --config.data.num_workers=2"
_TPU = dict(package="libtpu", install="pip install -e '.[tpu]'")
_TORCH = dict(package="torch", install="pip install -e '.[bench]'")
_TPU_ENV = (("DRY_RUN", "1"),)
_TWO_PROCESSES = "tests/test_fault_tolerance.py::test_a_run_moves_between_process_counts_through_every_kind_of_stop"

CHECKS = {
    # README.md
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python main.py "
    "--config=configs/tiny/mae.py --workdir=workdirs/mae_tiny": Ci(),
    ".venv/bin/python -m pytest -q tests": Ci(),
    "python main.py --config=configs/mae_vit_b.py --workdir=gs://bucket/mae_vit_b "
    "--config.data.data_dir=gs://bucket/tfds": Needs("ImageNet prepared in a GCS bucket, and the accelerators to train ViT-B on it"),
    "python main.py --config=configs/mae_vit_b.py --workdir=/tmp/smoke --config.data.name=digits "
    "--config.batch_size=8 --config.total_steps=2 --config.log_every=1 --config.data.num_workers=0 "
    "--config.eval.data_name=digits "
    "--config.eval.train_split='train[:64]' --config.eval.test_split='test[:64]' --config.eval.batch_size=8":
        # At the suite's compile options the command took 103 s, at XLA's defaults 77 s (2-core Xeon, 2026-12-02):
        # the train step compiles in 15 s either way; ViT-B's initialiser runs in 4 s instead of 13 (its compile
        # takes 11 s instead of 7), and the steps and the features' forward passes run faster.
        Run("evaluation at step 2", workdir="/tmp/smoke", steps=2, users_compile=True,
            append=" --config.eval.init_baseline=false --config.eval.report=false"   # the evaluation's protocols
                   " --config.eval.evaluators.linear.steps=5"            # are tested elsewhere: here ViT-B's
                   " --config.eval.train_split=train[:32] --config.eval.test_split=test[:8]"),   # features run
    "python main.py --config=configs/knn.py:digits --config.init_from=workdirs/mae_tiny "
    "--workdir=workdirs/mae_tiny_eval": Run("evaluation at step 0",
                                            append=" --config.eval.evaluators.linear_lars.epochs=3"),
    "python main.py --config=configs/tiny/linear_probe.py --config.init_from=workdirs/mae_tiny "
    "--workdir=workdirs/mae_tiny_lin": Run("top1", append=_SHORT_EVAL),
    "python main.py --config=configs/tiny/finetune.py --config.init_from=workdirs/mae_tiny "
    "--workdir=workdirs/mae_tiny_ft": Run("top1", append=_SHORT_EVAL),
    "python -m ssl_jax.export --workdir=workdirs/mae_tiny --format=timm --out=mae_tiny.safetensors":
        Run("wrote mae_tiny.safetensors"),
    "python main.py --config=configs/mae_vit_b.py --dry_run --topology=v5e:4x4 --config.mesh.data=1 "
    "--config.mesh.fsdp=-1": Run("on 16 x TPU v5 lite", **_TPU),
    # docs/methods.md
    "python -m ssl_jax.data.prepare_text --input='corpus/*.jsonl' --per=json --tokenizer=bpe:50257 "
    "--out=data/corpus": Covered("tests/test_text.py::test_prepare_text_writes_streams_and_refuses_bad_input",
                                 "small files of its own, a tokenizer of 2048 tokens"),
    "python -m ssl_jax.data.speech": Run("speech_espeakng", package="espeakng_loader",
                                         install="pip install -e '.[speech]'"),
    # launch/README.md
    "launch/local.sh 2 configs/tiny/mae.py --workdir=/tmp/mae_2proc":
        Covered(_TWO_PROCESSES, "the shrunk tiny MAE for 40 steps, a workdir of the test's"),
    "DEVICES_PER_PROCESS=2 launch/local.sh 4 configs/tiny/mae.py --workdir=/tmp/mae_4proc":
        Run("--num_processes=4", env=(("DRY_RUN", "1"),)),   # four real processes: test_multiprocess runs two
    "DRY_RUN=1 launch/local.sh 2 configs/tiny/mae.py --workdir=/tmp/x": Run("--process_id=1"),
    "sbatch launch/gpu_slurm.sbatch configs/mae_vit_b.py /shared/runs/mae_vit_b --config.data.data_dir=/shared/tfds":
        Needs("a Slurm cluster with GPUs"),
    "sbatch --nodes=8 launch/gpu_slurm.sbatch configs/mae_vit_b.py /shared/runs/mae_vit_b": Needs("a Slurm cluster"),
    "sbatch --ntasks-per-node=8 --gpus-per-task=1 launch/gpu_slurm.sbatch ...": Needs("a Slurm cluster"),
    "DRY_RUN=1 bash launch/gpu_slurm.sbatch configs/tiny/mae.py /tmp/x": Run("srun"),
    "python main.py --config=configs/mae_vit_b.py --dry_run --topology=v4:4x4x2 --config.mesh.data=1 "
    "--config.mesh.fsdp=-1": Run("on 32 x TPU v4", **_TPU),
    "launch/tpu_pod.sh create": Run("gcloud compute tpus queued-resources create ssl-jax-qr", env=_TPU_ENV),
    "launch/tpu_pod.sh setup": Run("gcloud compute tpus tpu-vm", env=_TPU_ENV),
    "launch/tpu_pod.sh run configs/mae_vit_b.py gs://bucket/mae_vit_b --config.data.data_dir=gs://bucket/tfds":
        Run("SSL_JAX_DISTRIBUTED=1", env=_TPU_ENV),
    "launch/tpu_pod.sh logs": Run("gcloud compute tpus tpu-vm ssh ssl-jax", env=_TPU_ENV),
    "launch/tpu_pod.sh stop": Run("gcloud compute tpus tpu-vm ssh ssl-jax", env=_TPU_ENV),
    "launch/tpu_pod.sh delete": Run("gcloud compute tpus queued-resources delete ssl-jax-qr", env=_TPU_ENV),
    # benchmarks/README.md
    'OUT=/tmp/bench PARTS="compare compiled" bash benchmarks/gpu.sh': Needs("an NVIDIA GPU (and torch for compare)"),
    "python benchmarks/compare_torch.py --batch_size=256 --dtype=bfloat16 --attention_impl=cudnn --steps=20":
        Needs("an NVIDIA GPU"),
    "python benchmarks/train_step.py --config=configs/mae_vit_b.py --config.batch_size=512 "
    "--config.model.dtype=bfloat16 --config.model.attention_impl=cudnn --steps=20": Needs("an NVIDIA GPU"),
    "python benchmarks/train_step.py --config=configs/tiny/mae.py --steps=20":
        Covered("tests/test_flops.py::test_train_step_benchmark_reports_mfu_and_a_consistent_flop_count",
                "batch 16, one block, 2 steps, a JSON result and a profile"),
    "python benchmarks/train_step.py --config=configs/mae_vit_b.py --config.batch_size=8 --config.model.dtype=float32 "
    "--steps=10": Covered("tests/test_flops.py::test_train_step_benchmark_reports_mfu_and_a_consistent_flop_count",
                          "the tiny config; the full-size step at batch 8 runs in the README's smoke command here"),
    "python benchmarks/train_step.py --config=configs/tiny/ijepa.py --steps=20":
        Covered("tests/test_flops.py::test_ijepa_step_counts_its_target_encoder_forward_once",
                "the same counter on a small I-JEPA; the harness itself runs in the MAE benchmark test"),
    "python benchmarks/train_step.py --config=configs/ijepa_vit_h14.py --config.batch_size=8 "
    "--config.method.mask_group=8 --config.model.variant=B/16 --config.model.dtype=float32 --steps=5":
        Covered("tests/test_methods.py::test_full_scale_config_builds_and_lowers_at_its_batch",
                "the full-scale I-JEPA step traced and lowered at its own batch"),
    "python benchmarks/train_step.py --config=configs/tiny/data2vec.py --steps=20":
        Covered("tests/test_flops.py::test_data2vec_step_counts_its_teacher_forward_once",
                "the same counter on a small data2vec; the harness itself runs in the MAE benchmark test"),
    "python benchmarks/train_step.py --config=configs/tiny/beit.py --steps=20":
        Covered("tests/test_fault_matrix.py::test_faults_in_sequence_end_as_the_uninterrupted_run",
                "the tiny BEiT config's step, shrunk, through the trainer; the harness runs in the MAE benchmark test"),
    "python benchmarks/train_step.py --config=configs/data2vec_vit_b.py --config.batch_size=8 "
    "--config.model.dtype=float32 --steps=5":
        Covered("tests/test_methods.py::test_full_scale_config_builds_and_lowers_at_its_batch",
                "the full-scale data2vec step traced and lowered at its own batch"),
    "python benchmarks/train_step.py --config=configs/beit_vit_b.py --config.batch_size=8 "
    "--config.model.dtype=float32 --steps=5":
        Covered("tests/test_methods.py::test_full_scale_config_builds_and_lowers_at_its_batch",
                "the full-scale BEiT step traced and lowered at its own batch"),
    "python benchmarks/train_step.py --config=configs/tiny/vq_tokenizer.py --steps=20":
        Covered("tests/test_fault_matrix.py::test_faults_in_sequence_end_as_the_uninterrupted_run",
                "the tiny tokenizer's step, shrunk, through the trainer; the harness runs in the MAE benchmark test"),
    "python benchmarks/train_step.py --config=configs/vqvae_tokenizer.py --config.batch_size=8 "
    "--config.model.dtype=float32 --steps=5":
        Covered("tests/test_methods.py::test_full_scale_config_builds_and_lowers_at_its_batch",
                "the full-scale tokenizer step traced and lowered at its own batch"),
    "python benchmarks/compare_torch.py --method=clip --batch_size=8 --steps=3":
        Run("ratio", append=" --steps=1 --batch_size=1", package="open_clip", install="pip install -e '.[bench]'"),
    "python benchmarks/compare_torch.py --method=siglip --batch_size=8 --steps=3":
        Run("ratio", append=" --steps=1 --batch_size=1", package="open_clip", install="pip install -e '.[bench]'"),
    "XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/pair_loss.py":
        Run('"benchmark": "pair_loss"', append=" --batch_sizes=64 --run_up_to=64 --dim=8"),
    "python benchmarks/train_step.py --config=configs/tiny/dinov2.py --steps=20":
        Covered("tests/test_fault_matrix.py::test_faults_in_sequence_end_as_the_uninterrupted_run",
                "the tiny DINOv2 config's step, shrunk, through the trainer; the harness runs in the MAE benchmark "
                "test"),
    "python benchmarks/train_step.py --config=configs/dinov2_vit_l16.py --config.batch_size=8 "
    "--config.method.group_size=4 --config.model.variant=B/16 --config.model.dtype=float32 --steps=5":
        Covered("tests/test_methods.py::test_full_scale_config_builds_and_lowers_at_its_batch",
                "the full-scale DINOv2 step traced and lowered at its own batch"),
    "python benchmarks/compare_torch.py --batch_size=8 --dtype=float32 --steps=10":
        Run("ratio", append=" --steps=2", **_TORCH),
    "python benchmarks/compare_torch.py --method=gpt --batch_size=4 --length=256 --steps=5":
        Run("ratio", append=" --steps=1 --batch_size=1 --length=32", package="transformers",
            install="pip install -e '.[bench,export]'"),
    "python benchmarks/compare_torch.py --method=bert --batch_size=16 --length=128 --steps=5":
        Run("ratio", append=" --steps=1 --batch_size=2 --length=32", package="transformers",
            install="pip install -e '.[bench,export]'"),
    "python benchmarks/train_step.py --config=configs/tiny/wav2vec2.py --steps=20":
        Covered("tests/test_fault_matrix.py::test_faults_in_sequence_end_as_the_uninterrupted_run",
                "the tiny wav2vec 2.0 config's step, shrunk, through the trainer; the harness runs in the MAE "
                "benchmark test"),
    "python benchmarks/compare_torch.py --method=wav2vec2 --batch_size=4 --seconds=4 --steps=3":
        Run("ratio", append=" --steps=1 --batch_size=1 --seconds=1", package="transformers",
            install="pip install -e '.[bench,export]'"),
    "python benchmarks/compare_torch.py --method=simclr --batch_size=8 --steps=3":
        Run("ratio", append=" --steps=1 --batch_size=1", package="torchvision", install="pip install -e '.[bench]'"),
    "XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution python benchmarks/compare_torch.py "
    "--method=simclr --batch_size=8 --steps=3":
        Run("ratio", append=" --steps=1 --batch_size=1", package="torchvision", install="pip install -e '.[bench]'"),
    "python benchmarks/input_pipeline.py --config=configs/tiny/mae.py --batches=30": Run("examples/s", append=_FEW),
    "python benchmarks/input_pipeline.py --config=configs/mae_vit_b.py --config.batch_size=8 "
    "--config.data.name=image_folder --config.data.data_dir=/tmp/jpegs --config.data.num_workers=0 --batches=30":
        Run("examples/s", append=_FEW + _NO_STEP),
    "python benchmarks/input_pipeline.py --config=configs/dino_vit_s16.py --config.batch_size=8 "
    "--config.data.name=image_folder --config.data.data_dir=/tmp/jpegs --batches=20":
        Run("examples/s", append=_FEW + _NO_STEP + _TWO_WORKERS),
}


def documented_commands() -> list[tuple[str, str, list[str]]]:
  """(doc, command, the `export` lines before it in its block) for every shell line of the docs' code blocks but
  those `export` lines."""
  found = []
  for doc in DOCS:
    text = (ROOT / doc).read_text()
    for language, block in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
      lines = [l.strip() for l in block.replace("\\\n", " ").splitlines()]
      prompts = [l[2:] for l in lines if l.startswith("$ ")]
      if language != "bash" and not prompts:
        continue
      exports = []
      for line in prompts or lines:
        line = re.sub(r"\s+#.*$", "", line)             # a trailing comment
        line = re.sub(r"\s+", " ", line).strip()
        if not line or line.startswith("#"):
          continue
        if line.startswith("export "):               # the environment of the block's later lines
          exports.append(line)
        else:
          found.append((doc, line, list(exports)))
  return found


def test_links_between_the_docs_resolve_inside_the_repository():
  """Every relative link of the docs names a file of this repository (and a heading of it, for `#anchor` links)."""
  broken = []
  for doc in DOCS:
    for target in re.findall(r"\]\(([^)]+)\)", (ROOT / doc).read_text()):
      if re.match(r"\w+://", target):
        continue
      path, _, anchor = target.partition("#")
      file = ((ROOT / doc).parent / path).resolve() if path else ROOT / doc
      if not file.is_relative_to(ROOT) or not file.exists():
        broken.append(f"{doc}: {target}")
      elif anchor and anchor not in {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-")
                                     for h in re.findall(r"^#+ (.*)$", file.read_text(), re.M)}:
        broken.append(f"{doc}: {target} (no such heading)")
  assert not broken, broken


def test_every_documented_command_has_a_check():
  commands = [c for _, c, _ in documented_commands()]
  missing = [c for c in commands if c not in CHECKS]
  assert not missing, f"commands in {DOCS} without an entry in CHECKS (say how each is checked): {missing}"
  assert not set(CHECKS) - set(commands), f"CHECKS has commands the docs no longer show: {set(CHECKS) - set(commands)}"
  for check in CHECKS.values():
    if isinstance(check, Covered):
      path, name = check.test.split("::")
      assert f"def {name}(" in (ROOT / path).read_text(), f"{check.test} does not exist"


def _jpegs(folder, n=32):
  """An image folder (`train/class/file.jpg`) of `n` small random JPEGs in 2 classes, for the input-pipeline
  commands."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for i in range(n):
    (folder / "train" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "train" / f"c{i % 2}" / f"{i}.jpg")


@pytest.fixture(scope="module")
def checkout(mae_workdir, tmp_path_factory):
  """A directory laid out like a checkout whose `workdirs/mae_tiny` is a finished tiny MAE run, and a `/tmp`
  stand-in holding the JPEG folder the benchmarks' commands read."""
  root = tmp_path_factory.mktemp("checkout")
  for name in ("main.py", "configs", "launch", "benchmarks"):
    (root / name).symlink_to(ROOT / name)
  (root / "workdirs").mkdir()
  (root / "workdirs" / "mae_tiny").symlink_to(mae_workdir[0])
  tmp = root / "tmp"
  _jpegs(tmp / "jpegs")
  return root, tmp


_RUNS = [(doc, command, exports) for doc, command, exports in documented_commands()
         if isinstance(CHECKS.get(command), Run)]


@pytest.mark.parametrize("doc,command,exports", _RUNS, ids=[c[:60] for _, c, _ in _RUNS])
def test_documented_command_runs_as_written(doc, command, exports, checkout):
  check = CHECKS[command]
  if check.package and importlib.util.find_spec(check.package) is None:
    pytest.skip(f"{command!r} needs {check.package}: {check.install}")
  root, tmp = checkout
  script = "\n".join(exports + [command + check.append]).replace("/tmp/", f"{tmp}/")
  env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", PYTHONUNBUFFERED="1",
             **dict(check.env))
  env["XLA_FLAGS"] = " ".join(f for f in one_device_xla_flags().split()
                              if not (check.users_compile and f in TEST_COMPILE_FLAGS))
  done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, env=env, capture_output=True, text=True,
                        timeout=900)
  out = done.stdout + done.stderr
  assert done.returncode == 0, f"{doc}: {command}\nexit {done.returncode}\n{out[-4000:]}"
  assert check.expect in out, f"{doc}: {command}\n{check.expect!r} not in its output:\n{out[-4000:]}"
  if check.workdir:
    records = (pathlib.Path(check.workdir.replace("/tmp/", f"{tmp}/")) / "metrics.jsonl").read_text().splitlines()
    losses = [(r["step"], r["loss"]) for r in map(json.loads, records) if "loss" in r]
    assert [s for s, _ in losses] == list(range(1, check.steps + 1)) and np.isfinite([l for _, l in losses]).all()

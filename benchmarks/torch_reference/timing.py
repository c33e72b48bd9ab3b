"""How the PyTorch references time a training step, the way `benchmarks/harness.py` times ours: warm-up steps, then
steps synced one at a time (median, min), an optional profile of three more (`torch.profiler`, top kernels to
stderr), then steps back to back with one sync at the end, as a training loop runs."""

import argparse
import statistics
import sys
import time

import torch


def time_step(step, device: torch.device, *, steps: int, warmup: int, profile: bool = False) -> dict:
  """`{step_time_s (back to back), step_time_blocking_s (median), step_time_min_s, threads, torch}` of `step()`
  (which returns the loss tensor) on `device`."""
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  for _ in range(warmup):
    step().item()
  times = []
  for _ in range(steps):
    sync()
    start = time.perf_counter()
    step().item()
    sync()
    times.append(time.perf_counter() - start)
  if profile:
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
      for _ in range(3):
        step().item()
      sync()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=80), file=sys.stderr)
  sync()
  start = time.perf_counter()
  for _ in range(steps):   # as a training loop runs: no host sync between steps
    step()
  sync()
  return dict(step_time_s=(time.perf_counter() - start) / steps, step_time_blocking_s=statistics.median(times),
              step_time_min_s=min(times), threads=torch.get_num_threads(), torch=torch.__version__)


def parser(doc: str, *, batch_size: int, steps: int) -> argparse.ArgumentParser:
  """The flags every reference takes: --batch_size, --steps, --warmup, --compile, --profile, --dtype (bfloat16:
  mixed precision with torch.autocast), --device."""
  p = argparse.ArgumentParser(description=doc.split("\n")[0])
  p.add_argument("--batch_size", type=int, default=batch_size)
  p.add_argument("--steps", type=int, default=steps)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--compile", action="store_true", help="torch.compile the model")
  p.add_argument("--profile", action="store_true",
                 help="after timing, profile 3 steps and print the top kernels (torch.profiler) to stderr")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                 help="bfloat16: mixed precision with torch.autocast")
  p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  return p

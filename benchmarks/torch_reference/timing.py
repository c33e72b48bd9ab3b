"""How the PyTorch references time a training step, the way `benchmarks/harness.py` times ours: warm-up steps, then
steps synced one at a time (median, min), an optional profile of three more (`torch.profiler`, top kernels to
stderr), then steps back to back with one sync at the end, as a training loop runs."""

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

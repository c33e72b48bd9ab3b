"""Where the device time of a profiled train step goes: kernels grouped by kind and by the model code they run.

    python benchmarks/profile_summary.py --trace=DIR/trace.json.gz --hlo=DIR/step.hlo.txt[.gz] --steps=3

Reads the Perfetto trace (`DIR/plugins/profile/*/*.trace.json.gz`) and the compiled HLO that `train_step.py
--profile_dir=DIR` (or `gpu.sh` with PROFILE=1) writes, from a GPU/TPU or from XLA:CPU (whose operations run in host
threads: their times are summed over the threads, so "busy" can exceed the span). Each kernel is tied to its HLO
instruction by name (the trace's `loop_add_fusion_7` is the HLO's `%loop_add_fusion.7`) and, through the
instruction's `op_name` metadata, to the JAX code that produced it; block indices are folded (`block*`), so the
twelve encoder blocks add up in one row. Prints, per step: busy time and span, time by kind (matmul, attention,
reduction fusion, element-wise fusion, copy) and the top rows by source.
"""

import argparse
import collections
import gzip
import json
import re


def _open(path):
  return gzip.open(path, "rt") if path.endswith(".gz") else open(path)


# Host threads in which XLA:CPU runs the compiled program's operations, and the bookkeeping events among them.
_CPU_THREADS = ("tf_XLAEigen", "tf_XLAPjRtCpuClient")
_CPU_BOOKKEEPING = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "end: ", "$")


def kernel_events(trace_path: str) -> list[dict]:
  """The device kernels of a Perfetto trace, sorted by start: the "X" events of the GPU/TPU processes or, for a CPU
  trace, XLA's operations in its host threads (summed over the threads that run them in parallel)."""
  with _open(trace_path) as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  names = {(e["pid"], e.get("tid")): e.get("args", {}).get("name", "") for e in events
           if e.get("ph") == "M" and e.get("name") in ("process_name", "thread_name")}
  devices = {pid for (pid, tid), name in names.items() if tid is None and re.search(r"/device:(GPU|TPU)", name)}
  if devices:
    keep = lambda e: e["pid"] in devices
  else:
    threads = {key for key, name in names.items() if name.startswith(_CPU_THREADS)}
    keep = lambda e: (e["pid"], e.get("tid")) in threads and not e["name"].startswith(_CPU_BOOKKEEPING)
  return sorted((e for e in events if e.get("ph") == "X" and keep(e)), key=lambda e: e["ts"])


def hlo_sources(hlo_path: str) -> dict[str, str]:
  """HLO instruction name -> its `op_name` metadata (the JAX source path), for every instruction that has one."""
  pattern = re.compile(r"^\s*%?([\w.\-]+) = .*?op_name=\"([^\"]+)\"")
  sources = {}
  with _open(hlo_path) as f:
    for line in f:
      m = pattern.match(line)
      if m:
        sources[m.group(1)] = m.group(2)
  return sources


def kind(name: str) -> str:
  if name.startswith("nvjet") or "gemm" in name or "cutlass" in name or "convolution" in name:
    return "matmul"
  if name.startswith("ynn_fusion") or name.startswith("dot") or "onednn" in name or "xnn" in name:
    return "matmul"
  if "cudnn" in name or "sdpa" in name or "flash" in name:
    return "attention"
  if "memcpy" in name or "memset" in name or name.startswith("copy"):
    return "copy"
  return "reduction fusion" if "reduce" in name else "element-wise fusion"


def source(name: str, sources: dict[str, str]) -> str:
  """The folded JAX source of kernel `name` ("?" when the HLO does not name it, e.g. library kernels)."""
  op = sources.get(re.sub(r"_(\d+)$", r".\1", name)) or sources.get(name)
  if op is None:
    return "?"
  op = re.sub(r"block\d+", "block*", op)
  op = re.sub(r"^jit\([^)]*\)/", "", op)
  return op


def summarise(events: list[dict], sources: dict[str, str], steps: int, top: int = 30) -> str:
  if not events:
    raise SystemExit("No kernels in this trace: no /device: process and no XLA:CPU threads.")
  busy = sum(e["dur"] for e in events) / steps / 1e3
  span = (max(e["ts"] + e["dur"] for e in events) - events[0]["ts"]) / steps / 1e3
  lines = [f"per step: device busy {busy:.2f} ms, span {span:.2f} ms ({len(events) // steps} kernels)", ""]
  by_kind, by_source = collections.Counter(), collections.Counter()
  for e in events:
    by_kind[kind(e["name"])] += e["dur"]
    by_source[(kind(e["name"]), source(e["name"], sources))] += e["dur"]
  for k, t in by_kind.most_common():
    lines.append(f"  {t / steps / 1e3:8.2f} ms  {100 * t / steps / 1e3 / busy:5.1f}%  {k}")
  lines += ["", f"top {top} by source (ms per step, kind, JAX op):"]
  for (k, s), t in by_source.most_common(top):
    lines.append(f"  {t / steps / 1e3:8.2f}  {k:20s} {s[:150]}")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trace", required=True)
  parser.add_argument("--hlo", default=None)
  parser.add_argument("--steps", type=int, default=3, help="steps in the trace (train_step.py traces 3)")
  parser.add_argument("--top", type=int, default=30)
  args = parser.parse_args()
  sources = hlo_sources(args.hlo) if args.hlo else {}
  print(summarise(kernel_events(args.trace), sources, args.steps, args.top))


if __name__ == "__main__":
  main()

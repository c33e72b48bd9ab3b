"""Times the real train step of a config and reports model-FLOPs utilisation (MFU).

    python benchmarks/train_step.py --config=configs/mae_vit_b.py --config.batch_size=8 --steps=10

The step is built by `ssl_jax.train.build` — the code path of `main.py` — on the config's mesh, fed synthetic uint8
batches already on the devices (the input pipeline has its own benchmark, `input_pipeline.py`), warmed up, timed
step by step with `block_until_ready`, then timed as the trainer runs it: `--steps` steps dispatched back to back,
one wait at the end (on an accelerator the host's dispatch of the next step then overlaps the device's work: 7 ms
of a 58 ms step on an H200). Prints a table and, last, one JSON line with:

  step_time_s (back to back), step_time_blocking_s (median one at a time), step_time_min_s, examples_per_s,
  tokens_per_s (text: examples/s x window length; else null), audio_seconds_per_s (speech: seconds of audio per
  second, examples/s x crop length / sample rate; else null),
  model_flops_per_step (`benchmarks/flops.py`: matmuls, 2 FLOPs per MAC, 3 x forward), xla_flops_per_step (XLA's cost
  analysis of the compiled step, all devices: a cross-check that also counts elementwise work and the optimizer),
  achieved_flops_per_s, peak_flops_per_s and peak_source ("measured": a large matmul timed in this run, in the
  compute dtype; or "datasheet" for a known accelerator), mfu, compile_time_s, peak_memory_bytes and memory_source
  ("allocator" peak on GPU/TPU, else XLA's compiled-step estimate), device kind and count, host_memory (the paging of
  large host buffers: like main.py, the script restarts itself with glibc's huge-page tunable where that helps, see
  `ssl_jax/runtime/host_memory.py`), host_page_faults_per_step and host_system_s_per_step (the process's minor page faults
  and kernel time per back-to-back step).
"""

import pathlib
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from ssl_jax.runtime import host_memory  # noqa: E402

if __name__ == "__main__":
  host_memory.restart_with_huge_pages()   # before jax starts, as main.py (ssl_jax/runtime/host_memory.py)
import harness  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_PEAK = flags.DEFINE_string("peak", "auto", "Peak FLOP/s: 'auto' (datasheet for a known accelerator, else measured), "
                            "'measure', or a number.")
_JSON = flags.DEFINE_string("json_out", None, "Also write the JSON result to this file.")
_PROFILE = flags.DEFINE_string("profile_dir", None, "Trace 3 more steps there (jax.profiler, Perfetto JSON) and "
                               "write the compiled step's HLO (step.hlo.txt); `profile_summary.py` reads both.")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  result = harness.benchmark(_CONFIG.value, _STEPS.value, _WARMUP.value, _PEAK.value, _PROFILE.value)
  result["config"] = config_flags.get_config_filename(flags.FLAGS["config"])
  print(harness.table(result))
  harness.emit(result, _JSON.value)


if __name__ == "__main__":
  app.run(main)

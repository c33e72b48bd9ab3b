"""Times a config's Grain input pipeline alone and compares it with what its train step consumes.

    python benchmarks/input_pipeline.py --config=configs/tiny/mae.py
    python benchmarks/input_pipeline.py --config=configs/mae_vit_b.py --config.batch_size=8 \\
        --config.data.name=image_folder --config.data.data_dir=/path/to/jpegs --config.data.num_workers=2

The stream is the one `main.py` trains on (`ssl_jax.data.inputs.train_stream`: decode, crops, views, batching, Grain
worker processes per `config.data.num_workers`), read on the host until `--batches` batches have been produced after
`--warmup` (worker start-up). The train step's examples/s comes from `train_step.py` in the same run (skip it with
`--step_examples_per_s=<number>`), and the ratio says how many times faster the data comes than the step eats it.
Prints a table and a final JSON line.
"""

import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from ssl_jax.runtime import host_memory  # noqa: E402

if __name__ == "__main__":
  host_memory.restart_with_huge_pages()   # before jax starts, as main.py (ssl_jax/runtime/host_memory.py)
import harness  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_BATCHES = flags.DEFINE_integer("batches", 20, "Timed batches.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed batches first (worker start-up).")
_STEP_RATE = flags.DEFINE_float("step_examples_per_s", None, "The train step's examples/s; None: measure it here "
                                "with train_step.py's benchmark (5 steps).")
_JSON = flags.DEFINE_string("json_out", None, "Also write the JSON result to this file.")
flags.mark_flags_as_required(["config"])


def pipeline_rate(config, batches: int = 20, warmup: int = 3) -> dict:
  """Examples/s of `config`'s training stream on this host (one process's share of each global batch)."""
  from ssl_jax.data import inputs
  source = inputs.open_source(config.data, config.data.train_split)
  it = iter(inputs.train_stream(config.data, source, seed=config.seed, global_batch_size=config.batch_size))
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  examples = 0
  for _ in range(batches):
    batch = next(it)
    examples += len(batch["index"])
  elapsed = time.perf_counter() - start
  return dict(pipeline_examples_per_s=examples / elapsed, batches=batches, workers=config.data.num_workers,
              data=config.data.name, views={k: (g.count, g.size) for k, g in config.data.image.views.items()})


def main(argv):
  del argv
  config = _CONFIG.value
  result = pipeline_rate(config, _BATCHES.value, _WARMUP.value)
  if _STEP_RATE.value is None:
    step = harness.benchmark(config, steps=5, warmup=1)
    result.update(step_examples_per_s=step["examples_per_s"], step_device=f"{step['devices']} x {step['device_kind']}")
  else:
    result.update(step_examples_per_s=_STEP_RATE.value, step_device="given")
  result["ratio"] = result["pipeline_examples_per_s"] / result["step_examples_per_s"]
  print(f"  {'input pipeline':20s} {result['pipeline_examples_per_s']:.1f} examples/s ({result['data']}, "
        f"{result['workers']} workers, views {result['views'] or 'one crop'})\n"
        f"  {'train step':20s} {result['step_examples_per_s']:.1f} examples/s ({result['step_device']})\n"
        f"  {'ratio':20s} {result['ratio']:.2f} (>= 2: the step never waits for data)")
  harness.emit(result, _JSON.value)


if __name__ == "__main__":
  app.run(main)

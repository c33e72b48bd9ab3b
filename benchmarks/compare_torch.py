"""ssl_jax against the PyTorch reference users would otherwise run, on the same machine in the same invocation.

    python benchmarks/compare_torch.py --batch_size=8 --dtype=float32 --steps=10                 # MAE ViT-B/16
    python benchmarks/compare_torch.py --batch_size=256 --dtype=bfloat16 --attention_impl=cudnn  # on a GPU
    python benchmarks/compare_torch.py --method=gpt --batch_size=4 --length=256 --steps=5        # GPT-2 small
    python benchmarks/compare_torch.py --method=bert --batch_size=16 --length=128 --steps=5      # BERT-base
    python benchmarks/compare_torch.py --method=clip --batch_size=8 --steps=3                    # CLIP ViT-B/16
    python benchmarks/compare_torch.py --method=wav2vec2 --batch_size=4 --seconds=4 --steps=3    # wav2vec 2.0 BASE
    python benchmarks/compare_torch.py --method=simclr --batch_size=8 --steps=3                  # SimCLR ResNet-50

`--method=mae` runs `torch_reference/mae.py` (the official recipe on timm blocks: the same model sizes, batch, mask
ratio, optimizer and compute dtype — bf16 through `torch.autocast` — with PyTorch's fused attention); `gpt` and
`bert` run `torch_reference/language.py` (Hugging Face `GPT2LMHeadModel` / `BertForMaskedLM` of
`configs/gpt2_small.py` / `configs/bert_base.py`'s sizes and AdamW, windows of `--length` tokens); `clip` and `siglip`
run `torch_reference/image_text.py` (open_clip's `ViT-B-16` / `ViT-B-16-SigLIP` with its `ClipLoss` / `SigLipLoss`,
the sizes of `configs/clip_vit_b16.py` / `configs/siglip_vit_b16.py`); `wav2vec2` runs `torch_reference/speech.py`
(Hugging Face's `Wav2Vec2ForPreTraining` of `configs/wav2vec2_base.py`'s sizes and loss, crops of `--seconds`);
`simclr` runs `torch_reference/joint_embedding.py` (torchvision's ResNet-50 with `configs/simclr_resnet50.py`'s
projection head, online probe, NT-Xent and LARS; the views without the photometric augmentation that ssl_jax's step
runs on the device). The reference runs in a subprocess of the same Python, then `train_step.py`'s benchmark of the
matching config (batch, dtype, length as given), and both step times and the ratio ssl_jax / PyTorch (below 1:
ssl_jax is faster) are printed. Needs the `bench` extra (torch, timm with torchvision, open_clip; `transformers` from
the `export` extra for gpt, bert and wav2vec2). Final line: JSON.
"""

import json
import pathlib
import subprocess
import sys

from absl import app
from absl import flags

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ssl_jax.runtime import host_memory  # noqa: E402

if __name__ == "__main__":
  host_memory.restart_with_huge_pages()   # before jax starts, as main.py (ssl_jax/runtime/host_memory.py)
import harness  # noqa: E402

_METHOD = flags.DEFINE_enum("method", "mae", ["mae", "gpt", "bert", "clip", "siglip", "wav2vec2", "simclr"],
                            "Which model and reference.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Global batch.")
_LENGTH = flags.DEFINE_integer("length", 256, "gpt and bert: tokens per window.")
_SECONDS = flags.DEFINE_float("seconds", 4.0, "wav2vec2: seconds of audio per example (16 kHz).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of both.")
_ATTENTION = flags.DEFINE_enum("attention_impl", None, ["einsum", "xla", "cudnn"], "ssl_jax's attention "
                               "implementation (default: the config's: cuDNN on GPUs in bf16, else 'einsum').")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps of each.")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", False, "Run the reference under torch.compile (instead of eager).")
_JSON = flags.DEFINE_string("json_out", None, "Also write the JSON result to this file.")
_PROFILE = flags.DEFINE_string("profile_dir", None, "Profile ssl_jax's step there (see train_step.py) "
                               "and write the PyTorch reference's top kernels to torch_profile.txt.")


def main(argv):
  del argv
  from ssl_jax import config as config_lib  # noqa: F401 -- the config file imports it
  import importlib.util
  name = {"mae": "mae_vit_b", "gpt": "gpt2_small", "bert": "bert_base", "clip": "clip_vit_b16",
          "siglip": "siglip_vit_b16", "wav2vec2": "wav2vec2_base", "simclr": "simclr_resnet50"}[_METHOD.value]
  spec = importlib.util.spec_from_file_location(name, HERE.parent / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.unlock()
  config.batch_size = _BATCH.value
  config.model.dtype = _DTYPE.value
  if _ATTENTION.value:
    config.model.attention_impl = _ATTENTION.value
  # PyTorch first, before JAX initialises the device: XLA keeps most of an accelerator's memory once it has started.
  if _METHOD.value == "mae":
    cmd = [sys.executable, str(HERE / "torch_reference" / "mae.py")]
  elif _METHOD.value == "wav2vec2":
    config.data.audio.max_length = int(16000 * _SECONDS.value)
    cmd = [sys.executable, str(HERE / "torch_reference" / "speech.py"), f"--seconds={_SECONDS.value}"]
  elif _METHOD.value == "simclr":
    cmd = [sys.executable, str(HERE / "torch_reference" / "joint_embedding.py")]
  elif _METHOD.value in ("clip", "siglip"):
    config.method.text = dict(config.method.text, dtype=_DTYPE.value)
    cmd = [sys.executable, str(HERE / "torch_reference" / "image_text.py"), f"--model={_METHOD.value}"]
  else:
    config.data.text.length = _LENGTH.value
    cmd = [sys.executable, str(HERE / "torch_reference" / "language.py"), f"--length={_LENGTH.value}",
           f"--model={'gpt2' if _METHOD.value == 'gpt' else 'bert'}"]
  cmd += [f"--batch_size={_BATCH.value}", f"--steps={_STEPS.value}", f"--dtype={_DTYPE.value}"]
  cmd += (["--compile"] if _TORCH_COMPILE.value else []) + (["--profile"] if _PROFILE.value else [])
  out = subprocess.run(cmd, capture_output=True, text=True, check=True)
  if _PROFILE.value:
    pathlib.Path(_PROFILE.value).mkdir(parents=True, exist_ok=True)
    pathlib.Path(_PROFILE.value, "torch_profile.txt").write_text(out.stderr)
  torch_result = json.loads(out.stdout.strip().splitlines()[-1])
  ours = harness.benchmark(config, steps=_STEPS.value, warmup=2, profile_dir=_PROFILE.value)
  ratio = ours["step_time_s"] / torch_result["step_time_s"]
  print(harness.table(ours))
  print(f"  {'PyTorch reference':20s} {torch_result['step_time_s'] * 1e3:.1f} ms (torch {torch_result['torch']}, "
        f"{torch_result['device']}, {torch_result['threads']} threads, compiled={torch_result['compiled']}; "
        f"MFU {ours['model_flops_per_step'] / torch_result['step_time_s'] / ours['peak_flops_per_s']:.3f})")
  print(f"  {'ratio ssl_jax/torch':20s} {ratio:.3f} (step time; below 1: ssl_jax is faster)")
  harness.emit(dict(ssl_jax=ours, torch=torch_result, ratio=ratio), _JSON.value)


if __name__ == "__main__":
  app.run(main)

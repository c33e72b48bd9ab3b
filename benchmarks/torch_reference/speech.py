"""The PyTorch reference for wav2vec 2.0: what users would otherwise run (Hugging Face's `Wav2Vec2ForPreTraining`, as
its `run_wav2vec2_pretraining_no_trainer.py` example trains it).

    python benchmarks/torch_reference/speech.py --batch_size=4 --seconds=4 --steps=3
    python benchmarks/torch_reference/speech.py --batch_size=32 --seconds=15 --dtype=bfloat16   # on a GPU

BASE as `configs/wav2vec2_base.py` (Hugging Face's default `Wav2Vec2Config`: 7 x 512 convolutions with GroupNorm,
12 x 768 post-LayerNorm blocks, 2 x 320 codewords; dropout 0.1, attention dropout 0.1, LayerDrop 0.05, input and
feature dropout 0.1), its loss with fairseq's settings (mask_prob 0.65 in spans of 10, 100 distractors from the
utterance, kappa 0.1, diversity weight 0.1; Hugging Face has no feature penalty), masks and distractors drawn on the
host every step by its `_compute_mask_indices` / `_sample_negative_indices` as the example does, Adam (lr 5e-4,
betas (0.9, 0.98), eps 1e-6, weight decay 0.01), no weights loaded. Random waveforms of `--seconds` already on the
device. `--dtype=bfloat16` runs under `torch.autocast`. Prints one JSON line as `language.py` does, with
`audio_seconds_per_s`. Needs `pip install -e '.[bench]'` (torch, transformers).
"""

import json
import sys

import torch

import timing


def main():
  import transformers
  from transformers.models.wav2vec2 import modeling_wav2vec2 as hf
  parser = timing.parser(__doc__, batch_size=4, steps=3)
  parser.add_argument("--seconds", type=float, default=4.0, help="length of every waveform (16 kHz)")
  args = parser.parse_args()
  torch.manual_seed(0)
  device = torch.device(args.device)
  config = transformers.Wav2Vec2Config(
      mask_time_prob=0.65, mask_time_length=10, num_negatives=100, contrastive_logits_temperature=0.1,
      diversity_loss_weight=0.1, layerdrop=0.05, hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.0,
      feat_proj_dropout=0.1, feat_quantizer_dropout=0.1)
  model = transformers.Wav2Vec2ForPreTraining(config).to(device).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01,
                                fused=device.type == "cuda")
  forward = torch.compile(model) if args.compile else model
  samples = int(16000 * args.seconds)
  waves = torch.randn(args.batch_size, samples, device=device) * 0.1
  frames = int(model._get_feat_extract_output_lengths(samples))

  def step():
    mask = hf._compute_mask_indices((args.batch_size, frames), mask_prob=0.65, mask_length=10, min_masks=2)
    negatives = hf._sample_negative_indices((args.batch_size, frames), 100, mask_time_indices=mask)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
      loss = forward(waves, mask_time_indices=torch.from_numpy(mask).to(device),
                     sampled_negative_indices=torch.from_numpy(negatives).to(device)).loss
    loss.backward()
    optimizer.step()
    return loss

  result = timing.time_step(step, device, steps=args.steps, warmup=args.warmup, profile=args.profile)
  print(json.dumps(dict(result, examples_per_s=args.batch_size / result["step_time_s"],
                        audio_seconds_per_s=args.batch_size * args.seconds / result["step_time_s"],
                        device=str(device), compiled=args.compile, dtype=args.dtype, batch_size=args.batch_size,
                        seconds=args.seconds, parameters=sum(p.numel() for p in model.parameters()))), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""The PyTorch reference for CLIP and SigLIP: what users would otherwise run (open_clip).

    python benchmarks/torch_reference/image_text.py --model=clip --batch_size=8 --steps=3
    python benchmarks/torch_reference/image_text.py --model=siglip --batch_size=8 --steps=3 --dtype=bfloat16

open_clip's `ViT-B-16` (the same sizes as `configs/clip_vit_b16.py`: ViT-B/16 at 224 with `ln_pre`, a 12 x 512 causal
text tower over 77 tokens of a 49,408 vocabulary, a 512-dimensional joint space, exact GELU) trained with its
`ClipLoss`, or `ViT-B-16-SigLIP` (timm's `vit_base_patch16_siglip_224` with attention pooling, a 12 x 768 text tower
over 64 tokens of 32,000, as `configs/siglip_vit_b16.py`) with its `SigLipLoss`; AdamW with the configs' learning
rate, betas, eps and weight decay (not on biases, gains and the logit scale), no weights loaded. Random images and
token ids already on the device (each caption ends with the end-of-text token at a random length). `--dtype=bfloat16`
runs under `torch.autocast`. Prints one JSON line as `language.py` does, with `pairs_per_s`. Needs
`pip install -e '.[bench]'` (torch, timm, open_clip_torch).
"""

import json
import sys

import torch

import timing

# open_clip model name, context length, vocabulary, end-of-text id, AdamW (lr, betas, eps, weight decay).
MODELS = {"clip": ("ViT-B-16", 77, 49_408, 49_407, dict(lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)),
          "siglip": ("ViT-B-16-SigLIP", 64, 32_000, 1, dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=1e-4))}


def main():
  import open_clip
  parser = timing.parser(__doc__, batch_size=8, steps=3)
  parser.add_argument("--model", default="clip", choices=sorted(MODELS))
  args = parser.parse_args()
  torch.manual_seed(0)
  device = torch.device(args.device)
  name, length, vocab, end, opt = MODELS[args.model]
  model = open_clip.create_model(name, pretrained=None, device=device).train()
  decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "logit" not in n]
  other = [p for n, p in model.named_parameters() if p.ndim <= 1 or "logit" in n]
  optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt.pop("weight_decay")},
                                 {"params": other, "weight_decay": 0.0}], **opt, fused=device.type == "cuda")
  loss_fn = open_clip.loss.SigLipLoss() if args.model == "siglip" else open_clip.loss.ClipLoss()
  forward = torch.compile(model) if args.compile else model
  images = torch.randn(args.batch_size, 3, 224, 224, device=device)
  lengths = torch.randint(4, length, (args.batch_size, 1), device=device)
  tokens = torch.randint(2, vocab - 2, (args.batch_size, length), device=device)
  tokens = torch.where(torch.arange(length, device=device)[None] >= lengths, end, tokens)

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
      out = forward(images, tokens)
      if isinstance(out, dict):
        out = (out["image_features"], out["text_features"], out["logit_scale"]) + (
            (out["logit_bias"],) if "logit_bias" in out else ())
      loss = loss_fn(*out)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
      model.logit_scale.clamp_(0, 4.6052)          # log 100, as open_clip's training loop
    return loss

  result = timing.time_step(step, device, steps=args.steps, warmup=args.warmup, profile=args.profile)
  print(json.dumps(dict(result, examples_per_s=args.batch_size / result["step_time_s"],
                        pairs_per_s=args.batch_size / result["step_time_s"], device=str(device),
                        compiled=args.compile, dtype=args.dtype, batch_size=args.batch_size,
                        parameters=sum(p.numel() for p in model.parameters()))), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

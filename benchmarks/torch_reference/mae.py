"""The PyTorch reference for MAE: what users would otherwise run (the official MAE recipe on timm blocks).

    python benchmarks/torch_reference/mae.py --batch_size=8 --steps=10 [--compile] [--dtype=bfloat16]

ViT-B/16 encoder (timm `Block`s: qkv bias, LayerNorm eps 1e-6, exact GELU, mlp ratio 4) on the visible 25% of the
patches of 224-px images, [CLS] token, fixed 2-D sin-cos position embeddings; decoder 512 wide, 8 blocks, 16 heads;
per-patch normalised pixel targets, MSE on the masked patches; AdamW (betas 0.9, 0.95, weight decay 0.05 except
biases and norms) — the sizes and optimizer of `configs/mae_vit_b.py`. Random uint8 images on the device, cast and
normalised inside the timed step, as the JAX step does. `--dtype=bfloat16` runs the step under `torch.autocast`
(bf16 matmuls and attention, float32 parameters and optimizer: the official code's mixed precision, in bf16, which
needs no loss scaling), the counterpart of `--config.model.dtype=bfloat16`. Prints one JSON line: step_time_s
(steps back to back, one sync at the end, as a training loop runs), step_time_blocking_s (median of steps synced
one at a time), step_time_min_s, examples_per_s, threads, device, compiled, dtype. Needs `pip install -e
'.[bench]'` (torch, timm).
"""

import json

import numpy as np
import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

import timing

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def sincos_table(width: int, grid: int) -> np.ndarray:
  """`[1 + grid**2, width]`: a zero row for [CLS], then half the channels for the column, half for the row."""
  omega = 1.0 / 10000 ** (np.arange(width // 4) / (width / 4.0))
  cols, rows = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
  halves = []
  for pos in (cols.reshape(-1), rows.reshape(-1)):
    angle = pos[:, None] * omega[None]
    halves.append(np.concatenate([np.sin(angle), np.cos(angle)], axis=1))
  return np.concatenate([np.zeros((1, width)), np.concatenate(halves, axis=1)]).astype(np.float32)


class MAE(nn.Module):
  def __init__(self, image_size=224, patch=16, width=768, depth=12, heads=12, dec_width=512, dec_depth=8,
               dec_heads=16, mask_ratio=0.75):
    super().__init__()
    self.patch, self.mask_ratio = patch, mask_ratio
    grid = image_size // patch
    norm = lambda d, **kw: nn.LayerNorm(d, eps=1e-6, **kw)
    self.embed = PatchEmbed(image_size, patch, 3, width)
    self.cls = nn.Parameter(torch.zeros(1, 1, width))
    self.register_buffer("pos", torch.from_numpy(sincos_table(width, grid))[None])
    self.blocks = nn.ModuleList(Block(width, heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth))
    self.norm = norm(width)
    self.dec_embed = nn.Linear(width, dec_width)
    self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_width))
    self.register_buffer("dec_pos", torch.from_numpy(sincos_table(dec_width, grid))[None])
    self.dec_blocks = nn.ModuleList(Block(dec_width, dec_heads, 4.0, qkv_bias=True, norm_layer=norm)
                                    for _ in range(dec_depth))
    self.dec_norm = norm(dec_width)
    self.pred = nn.Linear(dec_width, patch * patch * 3)
    nn.init.normal_(self.cls, std=0.02)
    nn.init.normal_(self.mask_token, std=0.02)
    for m in self.modules():
      if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)

  def patchify(self, images):          # [B, 3, H, W] -> [B, T, p*p*3] (row-major patches, pixels (y, x, c))
    b, c, h, w = images.shape
    p = self.patch
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)

  def forward(self, images):
    x = self.embed(images) + self.pos[:, 1:]
    b, t, d = x.shape
    keep = int(t * (1 - self.mask_ratio))
    order = torch.argsort(torch.rand(b, t, device=x.device), dim=1)
    restore = torch.argsort(order, dim=1)
    kept = order[:, :keep]
    x = torch.gather(x, 1, kept[..., None].expand(-1, -1, d))
    x = torch.cat([(self.cls + self.pos[:, :1]).expand(b, -1, -1), x], dim=1)
    for blk in self.blocks:
      x = blk(x)
    x = self.dec_embed(self.norm(x))
    filler = self.mask_token.expand(b, t - keep, -1)
    y = torch.cat([x[:, 1:], filler], dim=1)
    y = torch.gather(y, 1, restore[..., None].expand(-1, -1, y.shape[-1]))
    x = torch.cat([x[:, :1], y], dim=1) + self.dec_pos
    for blk in self.dec_blocks:
      x = blk(x)
    pred = self.pred(self.dec_norm(x))[:, 1:]
    target = self.patchify(images)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6) ** 0.5
    mask = torch.ones(b, t, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, restore)
    return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def main():
  parser = timing.parser(__doc__, batch_size=8, steps=10)
  args = parser.parse_args()
  torch.manual_seed(0)
  device = torch.device(args.device)
  model = MAE().to(device)
  decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in ("cls", "mask_token")]
  other = [p for n, p in model.named_parameters() if not (p.ndim > 1 and n not in ("cls", "mask_token"))]
  # MAE decays the [CLS] and mask tokens too (timm's add_weight_decay skips 1-D tensors only): keep them decayed.
  decay += [model.cls, model.mask_token]
  other = [p for p in other if p is not model.cls and p is not model.mask_token]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                          lr=1.5e-4 * args.batch_size / 256, betas=(0.9, 0.95))
  net = torch.compile(model) if args.compile else model
  images = torch.randint(0, 256, (args.batch_size, 3, 224, 224), dtype=torch.uint8, device=device)
  mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
  std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

  autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")

  def step():
    with autocast:
      loss = net((images.float() / 255.0 - mean) / std)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  result = timing.time_step(step, device, steps=args.steps, warmup=args.warmup, profile=args.profile)
  print(json.dumps(dict(result, examples_per_s=args.batch_size / result["step_time_s"], device=str(device),
                        compiled=args.compile, dtype=args.dtype, batch_size=args.batch_size)), flush=True)

if __name__ == "__main__":
  main()

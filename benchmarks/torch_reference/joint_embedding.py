"""The PyTorch reference for SimCLR ResNet-50: what users would otherwise run (torchvision's ResNet-50 and the SimCLR
recipe written in PyTorch).

    python benchmarks/torch_reference/joint_embedding.py --batch_size=8 --steps=3
    python benchmarks/torch_reference/joint_embedding.py --batch_size=256 --dtype=bfloat16 --steps=20   # a GPU

The sizes and recipe of `configs/simclr_resnet50.py`: torchvision's `resnet50` (v1.5 strides, the last BatchNorm of
each residual branch zero-initialised), its classifier removed; the projection head Linear(2048, 2048, no bias)-BN-
ReLU-Linear(2048, 128, no bias)-BN without shift (SimCLR's TF code); NT-Xent at temperature 0.1 over both views of
the batch (one forward pass of the 2B views, so BatchNorm sees all of them); LARS (momentum 0.9, trust coefficient
0.001, weight decay 1e-6, biases and BatchNorm excluded from both, as SimCLR's TF `LARSOptimizer`); the online linear
probe (1,000 classes on the detached features) trained by Adam at 1e-3, as ssl_jax trains it (`optim.make`).
`tests/test_flops.py` checks the parameter counts, the loss and two LARS steps against ssl_jax's. No weights loaded.
Random views and labels already on the device: the photometric augmentation is not in the step here (PyTorch users
run it in the data loader's workers), while ssl_jax's step runs it on the device (`ssl_jax.ops.augment`).
`--dtype=bfloat16` runs under `torch.autocast`. Prints one JSON line as `language.py` does. Needs
`pip install -e '.[bench]'` (torch, and torchvision through timm).
"""

import json
import sys

import torch
from torch import nn
import torch.nn.functional as F

import timing

TEMPERATURE, NUM_CLASSES, BASE_LR, MOMENTUM, WEIGHT_DECAY, TRUST, PROBE_LR = 0.1, 1000, 0.3, 0.9, 1e-6, 0.001, 1e-3


class SimCLR(nn.Module):
  """ResNet-50 encoder, SimCLR's projection head and the online probe: `forward(views [2B, 3, H, W], labels [2B])`
  -> the loss (NT-Xent + the probe's cross-entropy)."""

  def __init__(self):
    super().__init__()
    import torchvision
    self.encoder = torchvision.models.resnet50(weights=None, zero_init_residual=True)
    self.encoder.fc = nn.Identity()
    last_bn = nn.BatchNorm1d(128)
    last_bn.bias.requires_grad_(False)            # no shift (SimCLR's TF code: center=False)
    del last_bn.bias
    last_bn.register_buffer("bias", torch.zeros(128))
    self.projector = nn.Sequential(nn.Linear(2048, 2048, bias=False), nn.BatchNorm1d(2048), nn.ReLU(),
                                   nn.Linear(2048, 128, bias=False), last_bn)
    self.probe = nn.Linear(2048, NUM_CLASSES)
    nn.init.zeros_(self.probe.weight)
    nn.init.zeros_(self.probe.bias)

  def forward(self, views, labels):
    feats = self.encoder(views)
    z = F.normalize(self.projector(feats).float(), dim=1)
    return nt_xent(z, TEMPERATURE) + F.cross_entropy(self.probe(feats.detach()).float(), labels)


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
  """The mean NT-Xent over `z` `[2B, D]` (L2-normalised; rows i and i + B are the two views of image i): each row's
  cross-entropy against its other view, every other row of the batch a negative, itself left out."""
  n = z.shape[0]
  logits = z @ z.T / temperature
  logits = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
  positives = (torch.arange(n, device=z.device) + n // 2) % n
  return F.cross_entropy(logits, positives)


class LARS(torch.optim.Optimizer):
  """SimCLR's LARS (its TF `LARSOptimizer`): for a parameter in the `adapt` group, `g += wd * w`, then the learning
  rate is scaled by `trust * |w| / |g|` (1 where either norm is 0); heavy-ball momentum on the scaled step."""

  def __init__(self, groups, lr: float, momentum: float):
    super().__init__(groups, dict(lr=lr, momentum=momentum, weight_decay=0.0, adapt=False))

  @torch.no_grad()
  def step(self):
    for group in self.param_groups:
      for p in group["params"]:
        if p.grad is None:
          continue
        g = p.grad
        lr = group["lr"]
        if group["adapt"]:
          g = g.add(p, alpha=group["weight_decay"])
          w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
          lr = lr * torch.where((w_norm > 0) & (g_norm > 0), TRUST * w_norm / g_norm, torch.ones_like(w_norm))
        buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
        buf.mul_(group["momentum"]).add_(g * lr)
        p.sub_(buf)


def main():
  parser = timing.parser(__doc__, batch_size=8, steps=3)
  parser.add_argument("--size", type=int, default=224, help="the views' side in pixels")
  args = parser.parse_args()
  torch.manual_seed(0)
  device = torch.device(args.device)
  model = SimCLR().to(device).train()
  trained = list(model.encoder.parameters()) + [p for p in model.projector.parameters() if p.requires_grad]
  lars = LARS([dict(params=[p for p in trained if p.ndim > 1], weight_decay=WEIGHT_DECAY, adapt=True),
               dict(params=[p for p in trained if p.ndim <= 1])],
              lr=BASE_LR * args.batch_size / 256, momentum=MOMENTUM)     # the config's linear scaling
  adam = torch.optim.Adam(model.probe.parameters(), lr=PROBE_LR)
  forward = torch.compile(model) if args.compile else model
  views = torch.randn(2 * args.batch_size, 3, args.size, args.size, device=device)
  labels = torch.randint(0, NUM_CLASSES, (2 * args.batch_size,), device=device)

  def step():
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
      loss = forward(views, labels)
    loss.backward()
    lars.step()
    adam.step()
    return loss

  result = timing.time_step(step, device, steps=args.steps, warmup=args.warmup, profile=args.profile)
  print(json.dumps(dict(result, examples_per_s=args.batch_size / result["step_time_s"], device=str(device),
                        compiled=args.compile, dtype=args.dtype, batch_size=args.batch_size,
                        parameters=sum(p.numel() for p in model.parameters()))), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

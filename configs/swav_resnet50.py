"""SwAV ResNet-50 pretraining on ImageNet-1k (Caron et al. 2020, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments").

    python main.py --config=configs/swav_resnet50.py --workdir=gs://bucket/swav_r50            # 800 epochs, batch 4096
    python main.py --config=configs/swav_resnet50.py:200ep_bs256 --workdir=...     # batch 256 with the queue

Sized as the paper: global batch 4096 at 224 + 96 px on 64 V100s (a TPU v3-128, or 32-64 A100/H100 GPUs); the
`200ep_bs256` variant is the official 4-GPU recipe with the queue. Expected (paper Table 1 and the official README):
75.3% linear-evaluation top-1 after 800 epochs at batch 4096; 72.7% after 200 epochs at batch 256 with the queue.
Not yet measured with this code.

Hyperparameters (paper section 4 and appendix A; official code facebookresearch/swav main_swav.py and
scripts/swav_800ep_pretrain.sh, scripts/swav_200ep_bs256_pretrain.sh):
  ResNet-50, BatchNorm over the global batch, one encoder pass per crop size; head Linear(2048)-BN-ReLU-Linear(128),
  l2-normalised, 3000 prototypes kept at unit norm
  multi-crop: 2 x 224 (scale 0.14-1) + 6 x 96 (scale 0.05-0.14), flip, colour distortion of strength 1 (0.8, 0.8,
  0.8, 0.2) p 0.8, greyscale p 0.2, blur p 0.5, on every crop
  codes of the 2 global crops by Sinkhorn-Knopp (epsilon 0.05, 3 iterations) over the global batch, predicted by
  every other crop at temperature 0.1; the prototypes frozen for the first epoch (313 iterations at 4096)
  LARC (trust coefficient 1e-3, no clipping, every parameter adapted and decayed) over SGD (momentum 0.9), weight
  decay 1e-6; lr 4.8, warmed up linearly from 0.3 over 10 epochs, then cosine to 0.0048. At batch 256 (variant):
  lr 0.6 to 0.0006 without warm-up, a queue of 3840 embeddings from epoch 15, prototypes frozen for 5005 iterations.
Deviations: LARC's trust ratio is `eta |p| / |g + wd p|` (apex: `eta |p| / (|g| + wd |p| + eps)`; equal to within
wd = 1e-6 relative); `optim.base_lr`, `warmup_base_lr` and `min_lr` give the official absolute rates at the config's
batch (base_lr scales linearly, min_lr does not: set them again if you change the batch); the final evaluation is
the quick kNN / L-BFGS probe on a 50k-image subset of train, not the 100-epoch linear evaluation; an online linear
probe (stop-gradient, its own Adam) is trained alongside for monitoring; the blur's kernel is 10% of the view's
side, zero-padded (the official code: PIL's GaussianBlur).

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  if arg not in (None, "", "800ep", "200ep_bs256"):
    raise ValueError(f"configs/swav_resnet50.py takes '800ep' or '200ep_bs256', got {arg!r}.")
  small = arg == "200ep_bs256"
  c = config_lib.base_config()
  c.batch_size = 256 if small else 4096
  c.total_epochs = 200.0 if small else 800.0
  c.log_every = 100
  c.ckpt_every = 2000
  c.eval_every, c.eval_every_epochs = None, 50.0

  c.data = config_lib.image_data("imagenet2012", size=224, num_workers=16, views=dict(
      global_crops=dict(count=2, size=224, scale=(0.14, 1.0), flip=True, photometric=("simclr",)),
      local_crops=dict(count=6, size=96, scale=(0.05, 0.14), flip=True, photometric=("simclr",))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", depth=50, width=64, stem="imagenet",
                                           zero_init_residual=False, dtype="bfloat16"))

  c.method.name = "swav"
  c.method.head = dict(hidden_dim=2048, dim=128, num_prototypes=3000)
  c.method.temperature = 0.1
  c.method.epsilon = 0.05
  c.method.sinkhorn_iterations = 3
  c.method.queue_length = 3840 if small else 0
  c.method.queue_start_epochs = 15.0
  c.method.freeze_prototypes_epochs = 1.0
  c.method.online_probe = True

  c.optim.name = "lars"
  c.optim.lr_in_momentum = False        # LARC over torch SGD: the momentum over the adapted gradients, then lr
  c.optim.decay_biases_and_norms = True  # LARC decays and adapts every parameter
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-6
  c.optim.schedule = "cosine"
  if small:
    c.optim.base_lr = 0.6                # 0.6 at batch 256
    c.optim.warmup_steps = 0
    c.optim.min_lr = 0.0006
  else:
    c.optim.base_lr = 4.8 * 256 / 4096   # 4.8 at batch 4096
    c.optim.warmup_epochs = 10.0
    c.optim.warmup_base_lr = 0.3 * 256 / 4096
    c.optim.min_lr = 0.0048

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

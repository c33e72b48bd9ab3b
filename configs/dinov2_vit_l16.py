"""DINOv2 ViT-L/16 pretraining on ImageNet-1k (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without
Supervision"): the official repository's ImageNet-1k recipe (`dinov2/configs/train/vitl16_short.yaml`, which is
`ssl_default_config.yaml`).

    python main.py --config=configs/dinov2_vit_l16.py --workdir=gs://bucket/dinov2_vit_l16

Sized as the official "fast setup": 4 nodes of 8 A100-80GB (batch 64 per GPU, global batch 2048), 100 DINOv2
"epochs" of 1250 iterations = 125,000 steps (200 passes over ImageNet-1k). On TPUs: `--dry_run --topology=v5p:4x4x4
--config.mesh.data=1 --config.mesh.fsdp=-1` (64 chips, 32 images each) compiles, with XLA's estimate of 103.6 GiB of
temporaries per chip (2026-12-01), more than a v5p's 95 GB: add `--config.model.remat=full` or
`--config.grad_accum_steps=2` there (not yet compiled here); a v5e:4x4 (16 chips of 16 GB) is refused as too small.
Expected (official README, "about 1 day"): 81.6% k-NN and 82.9% linear top-1 on ImageNet-1k, on the teacher. Not yet
measured with this code.

Why ViT-L/16 and not S/14 or B/14: this is the one recipe the official code gives for training on ImageNet-1k, with
published numbers to compare against; DINOv2's released S/14, B/14 and L/14 are distilled from its g/14 trained on
LVD-142M, which cannot be reproduced here. Other sizes are one flag away (`--config.model.variant=B/16`); the
ImageNet-22k recipe (`vitl14.yaml`) differs by Sinkhorn-Knopp centring, a separate iBOT head, 131072 prototypes,
drop path 0.4, SwiGLU, momentum 0.994, layer decay 1.0 and 500 epochs.

Hyperparameters (`ssl_default_config.yaml`, `train/ssl_meta_arch.py`, `train/train.py`, `data/collate.py`,
`utils/param_groups.py`):
  student ViT-L/16 with a [CLS] token and a [MASK] embedding, LayerScale 1e-5, stochastic depth 0.3 in every block
  (`drop_path_uniform`), linear maps N(0, 0.02); the teacher the same without stochastic depth
  heads: one DINO head for the [CLS] and the masked patch tokens (`ibot.separate_head: false`): 3-layer GELU MLP
  (2048 hidden) -> 256 bottleneck -> l2-norm -> weight-normalised prototypes (65536) with a trained gain
  losses: DINO (student temperature 0.1, teacher 0.04 -> 0.07 linearly per step over 30 epochs = 37,500 steps,
  centre momentum 0.9, `centering: centering`) + iBOT on the masked patches (weight 1, its own centre) + KoLeo 0.1
  on the student's [CLS] tokens of each global crop within each GPU's 64 images
  iBOT masks: half of each GPU batch's 128 global crops, with ratios stratified in [0.1, 0.5], BEiT's block-wise
  generator (blocks of >= 4 patches, at most half the grid, aspect 0.3 - 3.3)
  multi-crop: 2 global crops 224 px scale (0.32, 1) + 8 local crops 96 px scale (0.05, 0.32); flip, colour jitter
  (0.4, 0.4, 0.2, 0.1) p 0.8, greyscale p 0.2; global crop 1 blur p 1.0, global crop 2 blur p 0.1 and solarisation
  p 0.2, local crops blur p 0.5 (DINO's `DataAugmentationDINO`)
  teacher EMA 0.992 -> 1 (cosine)
  AdamW (0.9, 0.999), lr 4e-3 x sqrt(2048 / 1024) = 5.66e-3 (`sqrt_wrt_1024`), 10 epochs (12,500 steps) of linear
  warm-up from 0, cosine to 1e-6; weight decay 0.04 -> 0.4 (cosine), not on biases, norms and LayerScale; layer-wise
  lr decay 0.9 (patch embedding, tokens: 0.9^25; block i: 0.9^(24 - i); heads: 1), patch embedding lr x 0.2; the
  prototypes at lr 0 for the first epoch (1250 steps) while AdamW's moments accumulate; gradient norm clipped at
  3.0 for the backbone and the head separately.
Deviations: fixed 2-D sin-cos position embeddings (DINOv2 learns a table, the [CLS] token's included, and
interpolates it for the local crops); the [CLS] and [MASK] tokens start at N(0, 0.02) (DINOv2: N(0, 1e-6) and 0);
the prototypes' gain gets no weight decay (DINOv2 decays `weight_g`); the learning rate reaches its peak at the end
of the warm-up (`np.linspace`: one step earlier); bfloat16 instead of fp16 with a loss scaler; iBOT's masks and
KoLeo's neighbourhoods are groups of 64 images of the global batch (`method.group_size`), the official code's GPU
batches, whatever the number of devices. The final evaluation is the quick kNN / L-BFGS probe on a 50k-image subset
of train, on the teacher's [CLS] features.

tests/test_dinov2_reference.py checks the losses, centres and gradients against a PyTorch transcription of the
official `forward_backward` (both centrings, several GPUs) and the mask counts against `collate_data_and_cast`.

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.method.group_size=4 --config.total_steps=2 --config.eval.data_name=digits
--config.eval.train_split='train[:64]' --config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

from ssl_jax import config as config_lib

EPOCH = 1250    # DINOv2's OFFICIAL_EPOCH_LENGTH: its "epoch" is 1250 iterations, whatever the batch


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 2048
  c.total_steps = 100 * EPOCH
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = 10 * EPOCH, None

  c.data = config_lib.image_data("imagenet2012", size=224, num_workers=16, views=dict(
      global_crops=dict(count=2, size=224, scale=(0.32, 1.0), flip=True, photometric=("byol1", "byol2")),
      local_crops=dict(count=8, size=96, scale=(0.05, 0.32), flip=True, photometric=("dino_local",))))

  c.model = config_lib.vit("L/16", posemb="sincos2d", dtype="bfloat16", pool="cls", mask_token=True,
                           layer_scale=1e-5, drop_path=0.3, drop_path_uniform=True, init_std=0.02)

  c.method.name = "dinov2"
  c.method.dino_head = dict(out_dim=65536, hidden_dim=2048, bottleneck_dim=256, num_layers=3, norm_last_layer=False)
  c.method.separate_ibot_head = False
  c.method.dino_weight = 1.0
  c.method.ibot_weight = 1.0
  c.method.koleo_weight = 0.1
  c.method.mask_probability = 0.5
  c.method.mask_ratio = (0.1, 0.5)
  c.method.min_mask_patches_per_block = 4
  c.method.mask_aspect = 0.3
  c.method.group_size = 64
  c.method.student_temp = 0.1
  c.method.teacher_temp = (0.04, 0.07)
  c.method.teacher_temp_warmup_steps = 30 * EPOCH
  c.method.center_momentum = 0.9
  c.method.centering = "center"
  c.method.momentum_base = 0.992
  c.method.freeze_last_layer_steps = 1 * EPOCH
  c.method.online_probe = True

  c.optim.name = "adamw"
  c.optim.base_lr = 4e-3
  c.optim.lr_batch_base = 1024
  c.optim.lr_scaling = "sqrt"
  c.optim.min_lr = 1e-6
  c.optim.warmup_steps = 10 * EPOCH
  c.optim.schedule = "cosine"
  c.optim.weight_decay = 0.04
  c.optim.weight_decay_end = 0.4
  c.optim.layer_decay = 0.9
  c.optim.lr_multipliers = (("net/vit/embedding/", 0.2),)
  c.optim.grad_clip = 3.0
  c.optim.grad_clip_mode = "per_module"

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

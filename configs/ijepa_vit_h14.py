"""I-JEPA ViT-H/14 pretraining on ImageNet-1k (Assran et al. 2023, "Self-Supervised Learning from Images with a
Joint-Embedding Predictive Architecture").

    python main.py --config=configs/ijepa_vit_h14.py --workdir=gs://bucket/ijepa_vit_h14

Sized as the paper: global batch 2048 on 16 A100 GPUs (128 per GPU) or a TPU v4-64 / v5p-64 slice, 300 epochs
(the paper: under 72 hours on 16 A100s for ViT-H/14; not yet measured with this code). Expected: 79.3% linear-probe
top-1 on ImageNet-1k (paper Table 1, ViT-H/14 at 224 px, 300 epochs), 1% low-shot 73.3%.

Hyperparameters (official `configs/in1k_vith14_ep300.yaml`, `src/train.py`, `src/helper.py`):
  encoder ViT-H/14 (1280 wide, 32 blocks, 16 heads) without [CLS] token, fixed 2-D sin-cos positions, LayerNorm eps
  1e-6, qkv bias, every linear map and the mask token N(0, 0.02) (truncated at +-2); no stochastic depth
  predictor: 384 wide, 12 blocks, 16 heads (the encoder's), mlp 1536, its own sin-cos positions
  masks: 4 target blocks of scale (0.15, 0.2), aspect (0.75, 1.5); one context block of scale (0.85, 1.0), square,
  minus the targets; min_keep 10; all of one per-GPU batch truncated to its smallest context (mask_group 128)
  targets: the EMA target encoder's output, layer-normalised; loss smooth L1 (beta 1)
  data: random resized crop 224 px, scale (0.3, 1.0), no flip, no colour jitter, no blur
  AdamW (betas 0.9, 0.999), lr 2e-4 -> 1e-3 linearly over 40 epochs, then cosine to 1e-6; weight decay 0.04 -> 0.4
  (cosine), not on biases and 1-D parameters; EMA momentum 0.996 -> 1.0 linear over the run; bfloat16 compute.
Deviations: static shapes (`ssl_jax.methods.ijepa`): contexts are gathered into 115 slots (context_capacity 0.45 of
the 256 patches), padding masked out of attention and loss, which equals the official truncation whenever a
group's smallest context fits: over 2000 sampled groups of 128 the smallest context averaged 68.8 patches and never
exceeded 103 (`mask/context_truncated` logs it if it ever does); the encoder therefore computes about 115/69 = 1.7x
the official context tokens. The learning rate schedule is per step and starts one step earlier (the official
scheduler steps before the first update). The mask sampler draws all of a context's 20 x 5 candidate placements at
once and keeps the first acceptable one, the same distribution as the official loop (tests/test_ijepa_reference.py
compares its statistics, and one loss and its gradients with a PyTorch transcription of the official step). The
final evaluation is the quick kNN / L-BFGS probe on a 50k-image subset of train, on the average-pooled output of
the target encoder (the paper's linear probe averages the last layer's tokens too, with its own protocol).

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.method.mask_group=8 --config.eval.data_name=digits
--config.eval.train_split='train[:64]' --config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 2048
  c.total_epochs = 300.0
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 50.0

  c.data = config_lib.image_data("imagenet2012", size=224, crop_scale=(0.3, 1.0), flip=False, num_workers=16)

  c.model = config_lib.vit("H/14", posemb="sincos2d", dtype="bfloat16", class_token=False, init_std=0.02,
                           pool="gap")

  c.method.name = "ijepa"
  c.method.predictor = dict(width=384, depth=12, num_heads=16, mlp_dim=1536)
  c.method.num_targets = 4
  c.method.target_scale = (0.15, 0.2)
  c.method.target_aspect = (0.75, 1.5)
  c.method.context_scale = (0.85, 1.0)
  c.method.min_keep = 10
  c.method.context_capacity = 0.45
  c.method.mask_group = 128
  c.method.momentum = (0.996, 1.0)

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3
  c.optim.lr_batch_base = 2048                 # the paper's learning rates are for batch 2048
  c.optim.warmup_base_lr = 2e-4
  c.optim.min_lr = 1e-6
  c.optim.warmup_epochs = 40.0
  c.optim.weight_decay = 0.04
  c.optim.weight_decay_end = 0.4
  c.optim.schedule = "cosine"

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

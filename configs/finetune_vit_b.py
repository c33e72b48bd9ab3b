"""End-to-end fine-tuning of a pretrained ViT-B/16 on ImageNet-1k: the MAE recipe (He et al. 2022, appendix A.3,
Table 9; official `main_finetune.py`).

    python main.py --config=configs/finetune_vit_b.py --config.init_from=gs://bucket/mae_vit_b --workdir=...

The encoder's architecture and weights come from the pretraining workdir (`init_from`: any method that releases a
ViT encoder: MAE, MoCo v3, DINO...). Expected: 83.6% top-1 on ImageNet-1k val from MAE's 1600-epoch ViT-B (83.3% after
800 epochs; the paper's Table 3 / repository). Sized for 32-64 accelerators (batch 1024); not yet measured with this
code at full scale.

Hyperparameters (Table 9):
  AdamW b1=0.9, b2=0.999, weight decay 0.05 (not on biases, norms, position embedding, [CLS] token)
  lr = 5e-4 x batch / 256 with batch 1024, 5 warm-up epochs, half-cycle cosine to 1e-6, 100 epochs
  layer-wise lr decay 0.65, drop path 0.1
  RandAugment (9, 0.5) [timm rand-m9-mstd0.5-inc1], label smoothing 0.1, mixup 0.8, CutMix 1.0, random erasing 0.25
  global-average-pooled patch tokens with a fresh LayerNorm (`fc_norm`) instead of [CLS] after the final norm
  classifier initialised N(0, 2e-5); random-resized crop (0.08, 1) + flip; evaluation: resize 256, centre crop 224.
Deviations: bf16 compute where the official code uses fp16 autocast; RandAugment on the host with Pillow as timm
does, random erasing and mixup/CutMix on the device (same distributions).
"""

from ml_collections import config_dict

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.init_from = config_dict.placeholder(str)
  c.batch_size = 1024
  c.total_epochs = 100.0
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 10.0

  c.data = config_lib.image_data("imagenet2012", size=224, crop_scale=(0.08, 1.0), flip=True, rand_augment=(2, 9, 0.5),
                                 eval_crop_pct=0.875, num_workers=16)

  # Only what fine-tuning changes; the rest (variant, patch size, position embeddings) comes from init_from.
  c.model = config_dict.ConfigDict(dict(drop_path=0.1, pool="gap_fc_norm", dtype="bfloat16"))
  config_lib.add_vit_execution_options(c.model, remat=None, scan=None)

  c.method.name = "classify"
  c.method.head_init_std = 2e-5
  c.method.label_smoothing = 0.1
  c.method.mixup = 0.8
  c.method.cutmix = 1.0
  c.method.random_erasing = 0.25

  c.optim.name = "adamw"
  c.optim.base_lr = 5e-4
  c.optim.b1, c.optim.b2 = 0.9, 0.999
  c.optim.weight_decay = 0.05
  c.optim.no_decay = ("pos_embedding", "cls")
  c.optim.layer_decay = 0.65
  c.optim.warmup_epochs = 5.0
  c.optim.min_lr = 1e-6

  c.eval.batch_size = 1024
  c.eval.init_baseline = False
  c.eval.evaluators = config_dict.ConfigDict()      # the classifier's own top-1 / top-5 is the result
  c.lock()
  return c

"""Fine-tuning a tiny pretrained ViT on the embedded digits with the MAE fine-tuning recipe (configs/finetune_vit_b.py).

    python main.py --config=configs/tiny/mae.py --workdir=/tmp/mae_tiny
    python main.py --config=configs/tiny/finetune.py --config.init_from=/tmp/mae_tiny --workdir=/tmp/mae_tiny_ft

Without init_from it trains the same ViT from scratch (the baseline: add the architecture, e.g.
`--config.model.width=128 --config.model.depth=4 --config.model.num_heads=4 --config.model.mlp_dim=512
--config.model.patch_size=4`). The README lists the measured accuracies.

The recipe as at full scale (layer decay 0.65, drop path 0.1, label smoothing 0.1, mixup 0.8 / CutMix 1.0, random
erasing 0.25, AdamW with no decay on the position embedding and [CLS] token, global-average pooling with fc_norm);
deviations for 8x8-pixel digits at 16 px: no flip, crop scale (0.5, 1), RandAugment with 1 operation at magnitude 5
(2 at 9 destroy 16-pixel digits), base lr 1e-3 at batch 128, 30 epochs with 3 of warm-up.
"""

from ml_collections import config_dict

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.init_from = config_dict.placeholder(str)
  c.batch_size = 128
  c.total_epochs = 30.0
  c.log_every = 50
  c.ckpt_every = 500

  c.data = config_lib.image_data("digits", size=16, crop_scale=(0.5, 1.0), flip=False, rand_augment=(1, 5, 0.5),
                                 eval_crop_pct=1.0)

  c.model = config_dict.ConfigDict(dict(
      drop_path=0.1, pool="gap_fc_norm", dtype="float32",
      # None: from init_from; set them to train from scratch.
      variant=config_dict.placeholder(str), patch_size=config_dict.placeholder(int),
      width=config_dict.placeholder(int), depth=config_dict.placeholder(int),
      num_heads=config_dict.placeholder(int), mlp_dim=config_dict.placeholder(int),
      posemb=config_dict.placeholder(str)))
  config_lib.add_vit_execution_options(c.model, remat=None, scan=None)

  c.method.name = "classify"
  c.method.head_init_std = 2e-5
  c.method.label_smoothing = 0.1
  c.method.mixup = 0.8
  c.method.cutmix = 1.0
  c.method.random_erasing = 0.25

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3 * 256 / 128
  c.optim.b1, c.optim.b2 = 0.9, 0.999
  c.optim.weight_decay = 0.05
  c.optim.no_decay = ("pos_embedding", "cls")
  c.optim.layer_decay = 0.65
  c.optim.warmup_epochs = 3.0
  c.optim.min_lr = 1e-6

  c.eval.data_name = "digits"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.init_baseline = False
  c.eval.evaluators = config_dict.ConfigDict()
  c.lock()
  return c

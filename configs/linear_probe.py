"""Linear probing of a pretrained encoder on ImageNet-1k: the MAE protocol (He et al. 2022, appendix A.2, Table 8;
official `main_linprobe.py`).

    python main.py --config=configs/linear_probe.py --config.init_from=gs://bucket/mae_vit_b --workdir=...

The encoder (architecture, weights, pooled feature: MAE's [CLS] token after the final norm) comes from the
pretraining workdir and stays frozen: in evaluation mode, under a stop-gradient, and excluded from the optimizer.
Expected: 68.0% top-1 on ImageNet-1k val for MAE ViT-B (1600 epochs; 67.8% in the repository's table); not yet
measured with this code at full scale.

Hyperparameters (Table 8):
  BatchNorm without affine parameters (eps 1e-6) before the linear classifier, initialised N(0, 0.01)
  LARS, momentum 0.9, weight decay 0, lr = 0.1 x batch / 256 with batch 16384, 10 warm-up epochs, cosine, 90 epochs
  random-resized crop (0.08, 1) + flip; evaluation: resize 256, centre crop 224.
For a quicker number on cached features see the `linear_lars` and `linear_lbfgs` evaluators (`configs/knn.py`).
"""

from ml_collections import config_dict

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.init_from = config_dict.placeholder(str)
  c.batch_size = 16384
  c.total_epochs = 90.0
  c.log_every = 20
  c.ckpt_every = 500
  c.eval_every, c.eval_every_epochs = None, 10.0

  c.data = config_lib.image_data("imagenet2012", size=224, crop_scale=(0.08, 1.0), flip=True, eval_crop_pct=0.875,
                                 num_workers=16)

  # The architecture and pooled feature come from init_from.
  c.model = config_dict.ConfigDict(dict(pool=config_dict.placeholder(str), dtype="bfloat16"))
  config_lib.add_vit_execution_options(c.model, remat=None, scan=None)

  c.method.name = "classify"
  c.method.freeze_encoder = True
  c.method.head_batchnorm = True
  c.method.head_init_std = 0.01

  c.optim.name = "lars"
  c.optim.base_lr = 0.1
  c.optim.momentum = 0.9
  c.optim.weight_decay = 0.0
  c.optim.warmup_epochs = 10.0
  c.optim.frozen = ("encoder/.*",)

  c.eval.batch_size = 1024
  c.eval.init_baseline = False
  c.eval.evaluators = config_dict.ConfigDict()
  c.lock()
  return c

"""MoCo v3 on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/mocov3.py --workdir=/tmp/mocov3_tiny
    python main.py --config=configs/tiny/mocov3.py:emoji --workdir=/tmp/mocov3_tiny_emoji   # the colour set

A small ViT (width 128, 4 blocks, 4 heads, patch 4) on digits at 16x16 with a frozen random patch projection, a
3-layer projector and 2-layer predictor (256 hidden, 64 out, BatchNorm), InfoNCE at t = 0.2, momentum 0.99 -> 1,
AdamW. See the README table for the measured time and accuracies.

Deviations from the ImageNet recipe (configs/mocov3_vit_b.py), for 8x8-pixel digits and a 100-epoch run: crop scale
(0.3, 1), no flip, base lr 5e-4 with 10 warm-up epochs, weight decay 0.05, mean-pooled patch tokens as the feature.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.batch_size = 256
  c.total_epochs = 100.0
  c.log_every = 50
  c.ckpt_every = 500

  c.data = config_lib.image_data("digits", size=16, eval_crop_pct=1.0, views=dict(
      global_crops=dict(count=2, size=16, scale=(0.3, 1.0), flip=False, photometric=("byol1", "byol2"))))

  c.model = config_lib.vit(patch_size=4, width=128, depth=4, num_heads=4, mlp_dim=512, posemb="sincos2d",
                           dtype="float32", pool="gap")

  c.method.name = "mocov3"
  c.method.projector = dict(dims=(256, 256, 64), hidden_bn=True, last_bn="plain", use_bias=False)
  c.method.predictor = dict(dims=(256, 64), hidden_bn=True, last_bn="plain", use_bias=False)
  c.method.temperature = 0.2
  c.method.momentum_base = 0.99
  c.method.online_probe = True

  c.optim.name = "adamw"
  c.optim.base_lr = 5e-4
  c.optim.b1, c.optim.b2 = 0.9, 0.999
  c.optim.weight_decay = 0.05
  c.optim.warmup_epochs = 10.0
  c.optim.decay_biases_and_norms = True          # MoCo v3's AdamW(model.parameters()) decays every parameter
  c.optim.frozen = ("net/encoder/vit/embedding/.*",)     # MoCo v3: the random patch projection stays fixed

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True   # the evaluators on the raw pixels too: the baseline to beat
  config_lib.tiny_on(c, arg)      # `:emoji`: the colour set, the same steps
  c.lock()
  return c

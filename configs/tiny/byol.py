"""BYOL on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/byol.py --workdir=/tmp/byol_tiny
    python main.py --config=configs/tiny/byol.py:emoji --workdir=/tmp/byol_tiny_emoji   # the colour set

The small ResNet of configs/tiny/simclr.py, projector and predictor MLPs 256 -> 64 with global BatchNorm, BYOL's
asymmetric photometric recipes, target decay 0.99 -> 1 (cosine), LARS. See the README table for the measured time and
accuracies.

Deviations from the ImageNet recipe (configs/byol_resnet50.py), for 8x8-pixel digits and a 100-epoch run: crop scale
(0.3, 1), no flip, tau_base 0.99 (the paper's 0.996 is for runs of 300-1000 epochs of 5000 steps), base lr 1.0.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.batch_size = 256
  c.total_epochs = 100.0
  c.log_every = 50
  c.ckpt_every = 500

  c.data = config_lib.image_data("digits", size=16, eval_crop_pct=1.0, views=dict(
      global_crops=dict(count=2, size=16, scale=(0.3, 1.0), flip=False, photometric=("byol1", "byol2"))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", stages=(1, 1, 1), block="basic", width=32, stem="small",
                                           zero_init_residual=False, dtype="float32"))

  c.method.name = "byol"
  c.method.projector = dict(dims=(256, 64), hidden_bn=True, last_bn="")
  c.method.predictor = dict(dims=(256, 64), hidden_bn=True, last_bn="")
  c.method.tau_base = 0.99
  c.method.online_probe = True

  c.optim.name = "lars"
  c.optim.lr_in_momentum = False        # BYOL's LARS: the momentum accumulates gradients; lr scales its output
  c.optim.base_lr = 1.0
  c.optim.weight_decay = 1.5e-6
  c.optim.warmup_epochs = 10.0

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True   # the evaluators on the raw pixels too: the baseline to beat
  config_lib.tiny_on(c, arg)      # `:emoji`: the colour set, the same steps
  c.lock()
  return c

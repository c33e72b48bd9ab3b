"""Barlow Twins on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/barlow_twins.py --workdir=/tmp/barlow_twins_tiny
    python main.py --config=configs/tiny/barlow_twins.py:emoji --workdir=/tmp/barlow_twins_tiny_emoji   # the colour set

The small ResNet of configs/tiny/simclr.py, projector 512-512-512 (Linear-BN-ReLU x 2, Linear; no biases), BYOL's
asymmetric photometric recipes, lambda 0.0051, the official LARS with its lower learning rate for biases and
BatchNorm. See the README table for the measured time and accuracies.

Deviations from the ImageNet recipe (configs/barlow_twins_resnet50.py), for 8x8-pixel digits and a 100-epoch run:
crop scale (0.3, 1), no flip (mirrored digits are other symbols), a 512-wide projector, batch 256, cosine to 0.
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
                                           zero_init_residual=True, dtype="float32"))

  c.method.name = "barlow_twins"
  c.method.projector = dict(dims=(512, 512, 512), hidden_bn=True, last_bn="", use_bias=False)
  c.method.lambda_offdiag = 0.0051
  c.method.online_probe = True

  c.optim.name = "lars"
  c.optim.lr_in_momentum = False        # the official LARS: momentum over the adapted gradients, then lr
  c.optim.base_lr = 0.2
  c.optim.lr_multipliers = (("(bias|scale)$", 0.0048 / 0.2),)
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

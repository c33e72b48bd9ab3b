"""SimSiam on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/simsiam.py --workdir=/tmp/simsiam_tiny
    python main.py --config=configs/tiny/simsiam.py:emoji --workdir=/tmp/simsiam_tiny_emoji   # the colour set

The small ResNet of configs/tiny/simclr.py, projector 256-256-256 (Linear-BN-ReLU x 2, Linear-BN without affine
parameters; no biases), predictor 64 -> 256 (the paper's 4x bottleneck), MoCo v2's photometric recipe, SGD with
weight decay on every parameter and the predictor at the constant initial lr. See the README table for the measured
time and accuracies.

Deviations from the ImageNet recipe (configs/simsiam_resnet50.py), for 8x8-pixel digits and a 100-epoch run: crop
scale (0.3, 1), no flip (mirrored digits are other symbols), a 256-wide projector, batch 256.
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
      global_crops=dict(count=2, size=16, scale=(0.3, 1.0), flip=False, photometric=("mocov2",))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", stages=(1, 1, 1), block="basic", width=32, stem="small",
                                           zero_init_residual=True, dtype="float32"))

  c.method.name = "simsiam"
  c.method.projector = dict(dims=(256, 256, 256), hidden_bn=True, last_bn="plain", use_bias=False)
  c.method.predictor = dict(dims=(64, 256), hidden_bn=True, last_bn="", use_bias=True)
  c.method.online_probe = True

  c.optim.name = "sgd"
  c.optim.base_lr = 0.05
  c.optim.weight_decay = 1e-4
  c.optim.decay_biases_and_norms = True
  c.optim.warmup_steps = 0
  c.optim.constant_lr = ("net/predictor/.*",)

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True   # the evaluators on the raw pixels too: the baseline to beat
  config_lib.tiny_on(c, arg)      # `:emoji`: the colour set, the same steps
  c.lock()
  return c

"""SimCLR on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/simclr.py --workdir=/tmp/simclr_tiny
    python main.py --config=configs/tiny/simclr.py:emoji --workdir=/tmp/simclr_tiny_emoji   # the colour set

A small ResNet (basic blocks, 3 stages of widths 32-64-128, small stem) on digits at 16x16, two views per image with
SimCLR's photometric recipe, projector 128 -> 64 with global BatchNorm, NT-Xent at temperature 0.2, LARS with the
paper's exclusions. See the README table for the measured time and accuracies.

Deviations from the ImageNet recipe (configs/simclr_resnet50.py), for 8x8-pixel digits: crop scale (0.3, 1), no
flip (mirrored digits are other symbols), temperature 0.2 at batch 256, a small ResNet with the CIFAR-style stem.
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
      global_crops=dict(count=2, size=16, scale=(0.3, 1.0), flip=False, photometric=("simclr",))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", stages=(1, 1, 1), block="basic", width=32, stem="small",
                                           zero_init_residual=True, dtype="float32"))

  c.method.name = "simclr"
  c.method.projector = dict(dims=(128, 64), hidden_bn=True, last_bn="scale")
  c.method.temperature = 0.2
  c.method.online_probe = True

  c.optim.name = "lars"
  c.optim.base_lr = 0.3
  c.optim.weight_decay = 1e-6
  c.optim.warmup_epochs = 10.0

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True   # the evaluators on the raw pixels too: the baseline to beat
  config_lib.tiny_on(c, arg)      # `:emoji`: the colour set, the same steps
  c.lock()
  return c

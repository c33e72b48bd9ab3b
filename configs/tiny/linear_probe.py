"""The MAE linear-probe protocol (configs/linear_probe.py) on the embedded digits, for a tiny pretrained encoder.

    python main.py --config=configs/tiny/linear_probe.py --config.init_from=/tmp/mae_tiny --workdir=/tmp/mae_tiny_lin

The encoder is frozen (evaluation mode, stop-gradient, no optimizer updates); BatchNorm without affine parameters and
a linear layer are trained by LARS on random-resized crops. Deviations for digits: crop scale (0.5, 1), no flip,
batch 128 with base lr 16 (LARS moves a zero-mean N(0, 0.01) head very slowly at small batches), 30 epochs.
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

  c.data = config_lib.image_data("digits", size=16, crop_scale=(0.5, 1.0), flip=False, eval_crop_pct=1.0)

  c.model = config_dict.ConfigDict(dict(pool=config_dict.placeholder(str)))
  config_lib.add_vit_execution_options(c.model, remat=None, scan=None)

  c.method.name = "classify"
  c.method.freeze_encoder = True
  c.method.head_batchnorm = True
  c.method.head_init_std = 0.01

  c.optim.name = "lars"
  c.optim.base_lr = 16.0
  c.optim.weight_decay = 0.0
  c.optim.warmup_epochs = 3.0
  c.optim.frozen = ("encoder/.*",)

  c.eval.data_name = "digits"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.init_baseline = False
  c.eval.evaluators = config_dict.ConfigDict()
  c.lock()
  return c

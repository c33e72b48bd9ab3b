"""Jigsaw puzzles on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/jigsaw.py --workdir=/tmp/jigsaw_tiny
    python main.py --config=configs/tiny/jigsaw.py:emoji --workdir=/tmp/jigsaw_tiny_emoji   # the colour set

The small ResNet of configs/tiny/simclr.py on the tiles: digits at 18 x 18 cut into 3 x 3 cells of 6 pixels, a
5-pixel tile cropped in each, each tile colour-jittered and standardised on its own; 100 permutations of maximal
Hamming distance; the classifier fc6 (64 per tile) - fc7 (256) - fc8 with dropout 0.5; SGD with momentum 0.9 and
weight decay 5e-4 on every parameter, the lr x0.1 at 70% and at 90% of the run. See the README table for the
measured time and accuracies.

Deviations from the ImageNet recipe (configs/jigsaw_resnet50.py) for 8x8-pixel digits and a short run: 100
permutations instead of 1000, the narrower classifier, crop scale (0.6, 1) of the 18-pixel image instead of the
centre crop, no flip (mirrored digits are other symbols), lr 0.1, batch 256, 60 epochs (x0.1 at 42 and 54).
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.batch_size = 256
  c.total_epochs = 60.0
  c.log_every = 25
  c.ckpt_every = 500

  c.data = config_lib.image_data("digits", size=18, crop_scale=(0.6, 1.0), flip=False, eval_crop_pct=1.0)

  c.model = ml_collections.ConfigDict(dict(arch="resnet", stages=(1, 1, 1), block="basic", width=32, stem="small",
                                           zero_init_residual=True, dtype="float32"))

  c.method.name = "jigsaw"
  c.method.head = dict(tile_dim=64, hidden_dim=256, dropout=0.5)
  c.method.num_permutations = 100
  c.method.tile_size = 5
  c.method.jitter = True
  c.method.online_probe = True

  c.optim.name = "sgd"
  c.optim.momentum = 0.9
  c.optim.base_lr = 0.1
  c.optim.weight_decay = 5e-4
  c.optim.decay_biases_and_norms = True          # PyTorch's SGD decays every parameter it is given
  c.optim.warmup_steps = 0
  c.optim.schedule = "step"
  c.optim.decay_epochs = (42.0, 54.0)
  c.optim.decay_factor = 0.1

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True   # the evaluators on the raw pixels too: the baseline to beat
  config_lib.tiny_on(c, arg)      # `:emoji`: the colour set, the same steps
  c.lock()
  return c

"""Barlow Twins ResNet-50 pretraining on ImageNet-1k (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning
via Redundancy Reduction").

    python main.py --config=configs/barlow_twins_resnet50.py --workdir=gs://bucket/barlow_r50          # 1000 epochs
    python main.py --config=configs/barlow_twins_resnet50.py:300ep --workdir=...      # the paper's ablation schedule

Sized as the paper: global batch 2048 at 224 px on 32 V100s (about 124 hours for 1000 epochs), or a TPU v3-64 / 16
A100/H100 GPUs. Expected (paper Table 1): 73.2% linear-evaluation top-1 after 1000 epochs. Not yet measured with this
code.

Hyperparameters (paper section 2 and appendix; official code facebookresearch/barlowtwins main.py):
  ResNet-50 (zero-initialised last BatchNorm of each residual branch), BatchNorm over the global batch, each view its
  own batch; projector Linear(8192)-BN-ReLU-Linear(8192)-BN-ReLU-Linear(8192), no biases
  two views with BYOL's asymmetric augmentation: random-resized-crop (0.08, 1), flip, colour jitter (0.4, 0.4, 0.2,
  0.1) p 0.8, greyscale p 0.2, blur p 1.0 / 0.1, solarisation p 0.0 / 0.2
  loss: cross-correlation of the batch-standardised projections to the identity, lambda 0.0051
  LARS (momentum 0.9, trust coefficient 1e-3, the momentum over the adapted gradients and the step's learning rate
  applied to it), biases and BatchNorm parameters excluded from weight decay and adaptation; learning rate
  0.2 x batch / 256 for the weights and 0.0048 x batch / 256 for the biases and BatchNorm parameters (the 0.024
  multiplier below); weight decay 1.5e-6; 10 warm-up epochs from 0, then cosine decay to 0.001 x the peak.
Deviations: weight decay 1.5e-6 as the paper (the official script's default is 1e-6); `optim.min_lr` is the paper's
end learning rate for batch 2048 (0.001 x 1.6): set it again if you change the batch; the final evaluation is the
quick kNN / L-BFGS probe on a 50k-image subset of train, not the 100-epoch linear evaluation; an online linear probe
(stop-gradient, its own Adam) is trained alongside for monitoring; the blur's kernel is 10% of the view's side,
zero-padded (the official code: PIL's GaussianBlur).

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  epochs = {None: 1000, "": 1000, "300ep": 300, "1000ep": 1000}
  if arg not in epochs:
    raise ValueError(f"configs/barlow_twins_resnet50.py takes '300ep' or '1000ep', got {arg!r}.")
  c = config_lib.base_config()
  c.batch_size = 2048
  c.total_epochs = float(epochs[arg])
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 50.0

  c.data = config_lib.image_data("imagenet2012", size=224, num_workers=16, views=dict(
      global_crops=dict(count=2, size=224, scale=(0.08, 1.0), flip=True, photometric=("byol1", "byol2"))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", depth=50, width=64, stem="imagenet",
                                           zero_init_residual=True, dtype="bfloat16"))

  c.method.name = "barlow_twins"
  c.method.projector = dict(dims=(8192, 8192, 8192), hidden_bn=True, last_bn="", use_bias=False)
  c.method.lambda_offdiag = 0.0051
  c.method.online_probe = True

  c.optim.name = "lars"
  c.optim.lr_in_momentum = False        # the official LARS: momentum over the adapted gradients, then lr
  c.optim.base_lr = 0.2
  c.optim.lr_multipliers = (("(bias|scale)$", 0.0048 / 0.2),)    # biases and BatchNorm: lr 0.0048 x batch / 256
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1.5e-6
  c.optim.warmup_epochs = 10.0
  c.optim.schedule = "cosine"
  c.optim.min_lr = 0.001 * 0.2 * 2048 / 256

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

"""SimCLR ResNet-50 pretraining on ImageNet-1k (Chen et al. 2020, "A Simple Framework for Contrastive Learning").

    python main.py --config=configs/simclr_resnet50.py --workdir=gs://bucket/simclr_r50
    python main.py --config=configs/simclr_resnet50.py:1000ep --workdir=...       # the paper's best schedule

Sized for a TPU v3-128 pod or 32-64 A100/H100 GPUs (global batch 4096 at 224 px). Expected (paper Table 6 and the
official repository): 69.3% linear-evaluation top-1 after 1000 epochs; about 64.5-66.5% after 100 epochs at batch
4096 (Figure 9, Table B.1). Not yet measured with this code.

Hyperparameters (paper section 2.3, appendix A and B.1, official TF code):
  ResNet-50 (v1.5 strides, last BatchNorm of each residual branch zero-initialised), global BatchNorm over the
  2 x 4096 views; projection head Linear(2048)-BN-ReLU-Linear(128)-BN (no shift), the representation before it
  two views: random-resized-crop scale (0.08, 1), flip, colour distortion strength 1 (brightness, contrast,
  saturation 0.8, hue 0.2, p 0.8), greyscale p 0.2, Gaussian blur p 0.5 (sigma 0.1-2, kernel 10% of the side)
  NT-Xent, temperature 0.1; LARS (momentum 0.9, trust coefficient 0.001), lr 0.3 x batch / 256 = 4.8,
  weight decay 1e-6, biases and BatchNorm excluded from weight decay and LARS adaptation;
  10 warm-up epochs, then cosine decay without restarts; 100 epochs (or 1000).
Deviations: the linear-evaluation numbers above are the paper's 90-epoch protocol; this run's final evaluation is
the quick kNN / L-BFGS probe on a 50k-image subset of train; the online linear probe (stop-gradient, trained with
the same LARS optimizer) is an addition for monitoring, as in solo-learn; the blur pads with zeros at the border.

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  epochs = {None: 100, "": 100, "100ep": 100, "1000ep": 1000}
  if arg not in epochs:
    raise ValueError(f"configs/simclr_resnet50.py takes '100ep' or '1000ep', got {arg!r}.")
  c = config_lib.base_config()
  c.batch_size = 4096
  c.total_epochs = float(epochs[arg])
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 10.0

  c.data = config_lib.image_data("imagenet2012", size=224, num_workers=16, views=dict(
      global_crops=dict(count=2, size=224, scale=(0.08, 1.0), flip=True, photometric=("simclr",))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", depth=50, width=64, stem="imagenet",
                                           zero_init_residual=True, dtype="bfloat16"))

  c.method.name = "simclr"
  c.method.projector = dict(dims=(2048, 128), hidden_bn=True, last_bn="scale")
  c.method.temperature = 0.1
  c.method.online_probe = True

  c.optim.name = "lars"
  c.optim.base_lr = 0.3
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-6
  c.optim.warmup_epochs = 10.0
  c.optim.schedule = "cosine"

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

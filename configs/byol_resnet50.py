"""BYOL ResNet-50 pretraining on ImageNet-1k (Grill et al. 2020, "Bootstrap Your Own Latent").

    python main.py --config=configs/byol_resnet50.py --workdir=gs://bucket/byol_r50            # 300 epochs
    python main.py --config=configs/byol_resnet50.py:1000ep --workdir=...

Sized for a TPU v3-512 pod in the paper (batch 4096 at 224 px; 8 hours for 300 epochs), or 64 A100/H100 GPUs.
Expected (paper Table 1 and appendix): 74.3% linear-evaluation top-1 after 1000 epochs, 72.5% after 300. Not yet
measured with this code.

Hyperparameters (paper section 3.3 and appendices B, C; official JAX code byol/configs/byol.py):
  ResNet-50, global BatchNorm; projector and predictor Linear(4096)-BN-ReLU-Linear(256)
  two views with asymmetric augmentation (paper Table 6): random-resized-crop (0.08, 1), flip, colour jitter
  (0.4, 0.4, 0.2, 0.1) p 0.8, greyscale p 0.2, blur p 1.0 / 0.1, solarisation p 0.0 / 0.2
  target decay tau = 1 - (1 - 0.996)(cos(pi k / K) + 1) / 2
  LARS (momentum 0.9, trust coefficient 1e-3), lr 0.2 x batch / 256 = 3.2, weight decay 1.5e-6, biases and
  BatchNorm excluded from weight decay and LARS adaptation, the momentum over the adapted gradients and the step's
  learning rate applied to it (`byol/utils/optimizers.py`); 10 warm-up epochs, then cosine decay.
Deviations: the final evaluation is the quick kNN / L-BFGS probe on a 50k-image subset of train, not the 80-epoch
SGD linear evaluation; an online linear probe (stop-gradient) is trained alongside for monitoring.

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  epochs = {None: 300, "": 300, "300ep": 300, "1000ep": 1000}
  if arg not in epochs:
    raise ValueError(f"configs/byol_resnet50.py takes '300ep' or '1000ep', got {arg!r}.")
  c = config_lib.base_config()
  c.batch_size = 4096
  c.total_epochs = float(epochs[arg])
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 20.0

  c.data = config_lib.image_data("imagenet2012", size=224, num_workers=16, views=dict(
      global_crops=dict(count=2, size=224, scale=(0.08, 1.0), flip=True, photometric=("byol1", "byol2"))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", depth=50, width=64, stem="imagenet",
                                           zero_init_residual=False, dtype="bfloat16"))

  c.method.name = "byol"
  c.method.projector = dict(dims=(4096, 256), hidden_bn=True, last_bn="")
  c.method.predictor = dict(dims=(4096, 256), hidden_bn=True, last_bn="")
  c.method.tau_base = 0.996
  c.method.online_probe = True

  c.optim.name = "lars"
  c.optim.lr_in_momentum = False        # BYOL's LARS: the momentum accumulates gradients; lr scales its output
  c.optim.base_lr = 0.2
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1.5e-6
  c.optim.warmup_epochs = 10.0
  c.optim.schedule = "cosine"

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

"""SimSiam ResNet-50 pretraining on ImageNet-1k (Chen & He 2021, "Exploring Simple Siamese Representation Learning").

    python main.py --config=configs/simsiam_resnet50.py --workdir=gs://bucket/simsiam_r50             # 100 epochs
    python main.py --config=configs/simsiam_resnet50.py:800ep --workdir=...

Sized as the paper: global batch 512 at 224 px on 8 V100s (SGD, no LARS: the paper's point is that SimSiam needs no
large batch). Expected (official README and paper Table 4): 68.1% linear-evaluation top-1 after 100 epochs (68.3%
at batch 256), 71.3% after 800. Not yet measured with this code.

Hyperparameters (paper section 4 and appendix A; official code facebookresearch/simsiam main_simsiam.py, with the
`--fix-pred-lr` of its README's command, the last row of the paper's Table 1):
  ResNet-50 (zero-initialised last BatchNorm of each residual branch), BatchNorm over the global batch, each view its
  own batch; projector Linear(2048)-BN-ReLU-Linear(2048)-BN-ReLU-Linear(2048)-BN (no affine), no biases; predictor
  Linear(512)-BN-ReLU-Linear(2048) with a bias on the last layer
  two views with MoCo v2's augmentation: random-resized-crop (0.2, 1), colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8,
  greyscale p 0.2, blur p 0.5, flip
  loss: -cos(p1, stopgrad(z2)) / 2 - cos(p2, stopgrad(z1)) / 2
  SGD (momentum 0.9), lr 0.05 x batch / 256 = 0.1 with a cosine decay and no warm-up, the predictor at the constant
  initial lr; weight decay 1e-4 on every parameter (BatchNorm and biases included, as PyTorch's SGD over
  `model.parameters()`).
Deviations: the cosine is per step (the official code sets the lr once per epoch); the final evaluation is the quick
kNN / L-BFGS probe on a 50k-image subset of train, not the 90-epoch LARS linear evaluation; an online linear probe
(stop-gradient, its own Adam) is trained alongside for monitoring; the blur's kernel is 10% of the view's side,
zero-padded (the official code: PIL's GaussianBlur).

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  epochs = {None: 100, "": 100, "100ep": 100, "200ep": 200, "400ep": 400, "800ep": 800}
  if arg not in epochs:
    raise ValueError(f"configs/simsiam_resnet50.py takes one of {sorted(k for k in epochs if k)}, got {arg!r}.")
  c = config_lib.base_config()
  c.batch_size = 512
  c.total_epochs = float(epochs[arg])
  c.log_every = 100
  c.ckpt_every = 2000
  c.eval_every, c.eval_every_epochs = None, 20.0

  c.data = config_lib.image_data("imagenet2012", size=224, num_workers=16, views=dict(
      global_crops=dict(count=2, size=224, scale=(0.2, 1.0), flip=True, photometric=("mocov2",))))

  c.model = ml_collections.ConfigDict(dict(arch="resnet", depth=50, width=64, stem="imagenet",
                                           zero_init_residual=True, dtype="bfloat16"))

  c.method.name = "simsiam"
  c.method.projector = dict(dims=(2048, 2048, 2048), hidden_bn=True, last_bn="plain", use_bias=False)
  c.method.predictor = dict(dims=(512, 2048), hidden_bn=True, last_bn="", use_bias=True)
  c.method.online_probe = True

  c.optim.name = "sgd"
  c.optim.base_lr = 0.05
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.optim.decay_biases_and_norms = True          # PyTorch's SGD decays every parameter it is given
  c.optim.warmup_steps = 0
  c.optim.schedule = "cosine"
  c.optim.constant_lr = ("net/predictor/.*",)    # --fix-pred-lr

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

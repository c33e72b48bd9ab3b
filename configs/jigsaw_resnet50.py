"""Jigsaw-puzzle pretraining of a ResNet-50 on ImageNet-1k (Noroozi & Favaro 2016, "Unsupervised Learning of Visual
Representations by Solving Jigsaw Puzzles").

    python main.py --config=configs/jigsaw_resnet50.py --workdir=gs://bucket/jigsaw_r50

The recipe of the paper and of its PyTorch reimplementation (bbrattoli/JigsawPuzzlePytorch: `JigsawTrain.py`,
`JigsawNetwork.py`, `Dataset/JigsawImageLoader.py`, `run_jigsaw_training.sh`; the authors' code is Caffe), on a
ResNet-50 instead of the paper's AlexNet context-free network:
  a 225 x 225 crop cut into 3 x 3 cells of 75 pixels, a random 64 x 64 tile in each; each tile colour-jittered
  (a factor in U(0.8, 1.2) per channel, a shift of up to 5 / 255) and standardised on its own; the nine shuffled by
  one of 1000 permutations of maximal Hamming distance
  the shared encoder on each tile, then fc6 (1024, per tile) - ReLU - dropout 0.5, the nine concatenated, fc7 (4096) -
  ReLU - dropout 0.5, fc8 (1000), cross-entropy over the permutations
  SGD (momentum 0.9), weight decay 5e-4 on every parameter, batch 128, lr 0.001 x0.1 every 20 epochs, 70 epochs
Expected: the paper's numbers are for AlexNet (PASCAL VOC 2007 classification 67.6% mAP fine-tuned; ImageNet linear
probes per conv layer); with a ResNet-50, Goyal et al. 2019 ("Scaling and Benchmarking Self-Supervised Visual
Representation Learning") and Kolesnikov et al. 2019 report jigsaw baselines. Not yet measured with this code.
Deviations: the ResNet-50 (BatchNorm over the global batch) instead of AlexNet, fc6 on its 2048 pooled features;
the training crop is a random 225-pixel square of about the centre crop's area (scale 0.77, ratio 1) instead of
the centre crop of the image resized to 256 (the reimplementation's `Resize(256)`, `CenterCrop(225)`), and the
64-pixel tiles are not resized to 75 as the reimplementation does (the encoder pools globally); the jitter is applied
in floating point and clipped (the reimplementation casts to uint8, which wraps); the step schedule is per step; the
final evaluation is the quick kNN / L-BFGS probe on a 50k-image subset of train; an online linear probe of the mean
tile feature (stop-gradient, its own Adam) is trained alongside for monitoring.

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 128
  c.total_epochs = 70.0
  c.log_every = 100
  c.ckpt_every = 5000
  c.eval_every, c.eval_every_epochs = None, 10.0

  c.data = config_lib.image_data("imagenet2012", size=225, crop_scale=(0.77, 0.77), crop_ratio=(1.0, 1.0),
                                 flip=False, eval_crop_pct=225 / 256, num_workers=16)

  c.model = ml_collections.ConfigDict(dict(arch="resnet", depth=50, width=64, stem="imagenet",
                                           zero_init_residual=False, dtype="bfloat16"))

  c.method.name = "jigsaw"
  c.method.head = dict(tile_dim=1024, hidden_dim=4096, dropout=0.5)
  c.method.num_permutations = 1000
  c.method.tile_size = 64
  c.method.jitter = True
  c.method.online_probe = True

  c.optim.name = "sgd"
  c.optim.momentum = 0.9
  c.optim.base_lr = 0.001
  c.optim.lr_batch_base = 128                    # lr 0.001 at the reimplementation's batch of 128
  c.optim.weight_decay = 5e-4
  c.optim.decay_biases_and_norms = True          # PyTorch's SGD decays every parameter it is given
  c.optim.warmup_steps = 0
  c.optim.schedule = "step"
  c.optim.decay_epochs = (20.0, 40.0, 60.0)
  c.optim.decay_factor = 0.1

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1000
  c.lock()
  return c

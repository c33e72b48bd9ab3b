"""Context-encoder (inpainting) pretraining of a ViT-B/16 on ImageNet-1k (Pathak et al. 2016, "Context Encoders:
Feature Learning by Inpainting").

    python main.py --config=configs/inpainting_vit_b16.py --workdir=gs://bucket/inpainting_vitb

The official centre-region recipe (pathak22/context-encoder `train.lua`, its README's command `wtl2=0.999
overlapPred=4`) on a ViT-B/16 instead of its DCGAN-style encoder-decoder:
  128 x 128 random crops; the central 64 x 64 square removed and filled with the mean colour (117, 104, 123) but
  for a 4-pixel ring that stays visible; the whole square predicted, the ring's squared error weighted 10 times
  the generator's loss 0.999 reconstruction + 0.001 adversarial, the DCGAN discriminator (64-128-256-512 4 x 4
  stride-2 convolutions, BatchNorm, LeakyReLU 0.2) on the predicted square
  Adam (beta1 0.5), lr 2e-3 for the generator and 2e-4 for the discriminator (`train.lua`: 10x for the generator
  when 0 < wtl2 < 1), batch 64, 25 epochs
Expected: the paper's feature-learning numbers are for an AlexNet encoder trained with random-region masks (PASCAL
VOC 2007 classification 56.5% mAP fine-tuned); set `method.mask="random_block"` (and `adversarial=False`) for that
setting. Not yet measured with this code.
Deviations: the ViT-B/16 with a linear per-token pixel head (as SimMIM) instead of the convolutional encoder, the
channel-wise fully connected bottleneck and the up-convolution decoder; the discriminator and the generator updated
together from one loss (see ssl_jax/methods/inpainting.py); pixels in the normalised space without the tanh;
random-resized crops (0.2, 1) instead of the resize to 350 and random crop; the final evaluation is the quick kNN /
L-BFGS probe on a 50k-image subset of train; an online linear probe (stop-gradient, its own Adam) is trained
alongside for monitoring.

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 64
  c.total_epochs = 25.0
  c.log_every = 500
  c.ckpt_every = 10_000
  c.eval_every = 0

  c.data = config_lib.image_data("imagenet2012", size=128, crop_scale=(0.2, 1.0), flip=True, num_workers=16)

  c.model = config_lib.vit("B/16", posemb="sincos2d", class_token=False, pool="gap", dtype="bfloat16")

  c.method.name = "inpainting"
  c.method.pixels_per_token = 16
  c.method.mask = "center"
  c.method.fraction = 0.25
  c.method.overlap = 4
  c.method.overlap_weight = 10.0
  c.method.adversarial = True
  c.method.adversarial_weight = 0.001
  c.method.discriminator_width = 64
  c.method.online_probe = True

  c.optim.name = "adamw"
  c.optim.base_lr = 2e-3
  c.optim.lr_batch_base = 64                     # the generator's 2e-3 at the official batch of 64
  c.optim.lr_multipliers = (("discriminator/.*", 0.1),)   # the discriminator's 2e-4
  c.optim.b1, c.optim.b2 = 0.5, 0.999
  c.optim.weight_decay = 0.0
  c.optim.warmup_steps = 0
  c.optim.schedule = "constant"

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1000
  c.lock()
  return c

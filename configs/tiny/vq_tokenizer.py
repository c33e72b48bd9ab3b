"""A VQ visual tokenizer on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/vq_tokenizer.py --workdir=/tmp/vq_tokenizer_tiny

A small ViT encoder without [CLS] token (width 128, 4 blocks, patch 4: 16 tokens per digit at 16x16), a 1-block
decoder, a codebook of 512 codes of 32 dimensions (k-means initialised, EMA 0.99), trained to reconstruct the pixels
from the codes. See the README table for the measured time and accuracies.

Deviations from configs/vqvae_tokenizer.py, for 8x8-pixel digits: patch 4 at 16 px, 4 encoder blocks 128 wide, a
1-block decoder, 512 codes (8192), lr 1e-3 at batch 128 over 60 epochs with 5 of warm-up, crop scale (0.5, 1), no
flip.

What it learns (2026-12-01, 60 epochs, 3.1 min): kNN top-1 0.7194 against 0.6333 at random init, linear 0.8889
against 0.9056; the reconstruction error falls from 0.29 (step 100) to 0.164 (normalised pixels), and the batches
use about 8% of the codes (`tokenizer/usage` 0.08, `tokenizer/perplexity` 31 at the end): 16-pixel digits need few
patch shapes. `reconstructions.png` shows each digit rebuilt from its 16 codes.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 128
  c.total_epochs = 60.0
  c.log_every = 100
  c.ckpt_every = 500
  c.eval_every = 0

  c.data = config_lib.image_data("digits", size=16, crop_scale=(0.5, 1.0), flip=False, eval_crop_pct=1.0)

  c.model = config_lib.vit(patch_size=4, width=128, depth=4, num_heads=4, mlp_dim=512, posemb="sincos2d",
                           class_token=False, dtype="float32", pool="gap")

  c.method.name = "vq_tokenizer"
  c.method.decoder = dict(width=128, depth=1, num_heads=4, mlp_dim=512)
  c.method.vocab_size = 512
  c.method.code_dim = 32
  c.method.decay = 0.99
  c.method.beta = 1.0

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3
  c.optim.lr_batch_base = 128
  c.optim.b1, c.optim.b2 = 0.9, 0.99
  c.optim.min_lr = 1e-5
  c.optim.warmup_epochs = 5.0
  c.optim.weight_decay = 1e-4

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True
  c.lock()
  return c

"""A VQ visual tokenizer for BEiT-style pretraining, trained on ImageNet-1k with ssl_jax (BEiT v2's VQ-KD architecture
and quantizer, Peng et al. 2022, with a pixel-reconstruction target; `ssl_jax.methods.vq_tokenizer`).

    python main.py --config=configs/vqvae_tokenizer.py --workdir=gs://bucket/vq_tokenizer

Sized as VQ-KD's official command (microsoft/unilm `beit2/README` "VQ-KD Training": 8 GPUs x 64 = batch 512, 100
epochs; not yet measured with this code). Its codes stand in for DALL-E's in `configs/beit_vit_b.py`, whose numbers
the paper reports with DALL-E's tokenizer: no published BEiT number uses this tokenizer.

Hyperparameters (VQ-KD's, `modeling_vqkd.py` `vqkd_encoder_base_decoder_3x768x12`, `norm_ema_quantizer.py`,
`run_vqkd_training.py`):
  encoder ViT-B/16 without [CLS] token, fixed 2-D sin-cos positions; `to_code` Linear(768, 768), Tanh, Linear(768, 32); the code l2-normalised
  codebook 8192 x 32, l2-normalised, k-means initialised on the first batch (10 iterations), EMA decay 0.99;
  straight-through estimator; commitment weight 1
  decoder: 3 blocks, 768 wide, 12 heads, its own sin-cos positions, then Linear(768, 16 x 16 x 3)
  data: random resized crop 224 px, scale (0.08, 1.0), horizontal flip, ImageNet mean and std
  AdamW (betas 0.9, 0.99), lr 5e-5 for batch 512, linear warm-up over 10 epochs, cosine to 1e-5, weight decay 1e-4,
  bfloat16 compute.
Deviations: the decoder reconstructs each patch's pixels (mean squared error), where VQ-KD's regresses a CLIP
teacher's features (cosine), whose weights cannot be downloaded here; the encoder's positions are fixed sin-cos.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 512
  c.total_epochs = 100.0
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 20.0

  c.data = config_lib.image_data("imagenet2012", size=224, crop_scale=(0.08, 1.0), flip=True, num_workers=16)

  c.model = config_lib.vit("B/16", posemb="sincos2d", class_token=False, dtype="bfloat16", pool="gap")

  c.method.name = "vq_tokenizer"
  c.method.decoder = dict(width=768, depth=3, num_heads=12, mlp_dim=3072)
  c.method.vocab_size = 8192
  c.method.code_dim = 32
  c.method.decay = 0.99
  c.method.beta = 1.0

  c.optim.name = "adamw"
  c.optim.base_lr = 5e-5
  c.optim.lr_batch_base = 512
  c.optim.b1, c.optim.b2 = 0.9, 0.99
  c.optim.min_lr = 1e-5
  c.optim.warmup_epochs = 10.0
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "cosine"

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

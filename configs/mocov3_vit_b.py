"""MoCo v3 ViT-B/16 pretraining on ImageNet-1k (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised
Vision Transformers").

    python main.py --config=configs/mocov3_vit_b.py --workdir=gs://bucket/mocov3_vit_b

Sized for a TPU v3-256 pod or 64 A100/H100 GPUs (global batch 4096 at 224 px). Expected (paper Table 1 / official
repository CONFIG.md): 76.7% linear-probing top-1 after 300 epochs. Not yet measured with this code.

Hyperparameters (paper section 4 and appendix, official `main_moco.py` with the ViT-B settings of CONFIG.md):
  ViT-B/16, fixed 2-D sin-cos position embeddings, patch projection frozen at its random (Xavier-uniform)
  initialisation; projector 3 layers (4096 hidden, 256 out) and predictor 2 layers (4096 hidden, 256 out), linear
  layers without bias, BatchNorm on every layer, the last without affine; representation: the [CLS] token
  two views, BYOL's augmentation: random-resized-crop (0.08, 1), flip, colour jitter (0.4, 0.4, 0.2, 0.1) p 0.8,
  greyscale p 0.2, blur p 1.0 / 0.1, solarisation p 0.0 / 0.2
  InfoNCE temperature 0.2 (loss x 2t), symmetrised; momentum 0.99 -> 1 (cosine)
  AdamW (0.9, 0.999), lr 1.5e-4 x batch / 256 = 2.4e-3, weight decay 0.1 on every parameter (biases and LayerNorm /
  BatchNorm parameters too: the official code builds `AdamW(model.parameters(), ...)` without parameter groups),
  40 warm-up epochs, cosine, 300 epochs.
Deviations: the final evaluation is the quick kNN / L-BFGS probe on a 50k-image subset of train, not the 90-epoch
SGD linear probe; an online linear probe (stop-gradient) is trained alongside for monitoring.

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 4096
  c.total_epochs = 300.0
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 20.0

  c.data = config_lib.image_data("imagenet2012", size=224, num_workers=16, views=dict(
      global_crops=dict(count=2, size=224, scale=(0.08, 1.0), flip=True, photometric=("byol1", "byol2"))))

  c.model = config_lib.vit("B/16", posemb="sincos2d", dtype="bfloat16", pool="cls")

  c.method.name = "mocov3"
  c.method.projector = dict(dims=(4096, 4096, 256), hidden_bn=True, last_bn="plain", use_bias=False)
  c.method.predictor = dict(dims=(4096, 256), hidden_bn=True, last_bn="plain", use_bias=False)
  c.method.temperature = 0.2
  c.method.momentum_base = 0.99
  c.method.online_probe = True

  c.optim.name = "adamw"
  c.optim.base_lr = 1.5e-4
  c.optim.b1, c.optim.b2 = 0.9, 0.999
  c.optim.weight_decay = 0.1
  c.optim.warmup_epochs = 40.0
  c.optim.schedule = "cosine"
  c.optim.decay_biases_and_norms = True          # MoCo v3's AdamW(model.parameters()) decays every parameter
  c.optim.frozen = ("net/encoder/vit/embedding/.*",)

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

"""BEiT ViT-B/16 pretraining on ImageNet-1k (Bao et al. 2022, "BEiT: BERT Pre-Training of Image Transformers").

    python main.py --config=configs/beit_vit_b.py --workdir=gs://bucket/beit_vit_b

Sized as the paper: global batch 2048 (16 GPUs of 128, or a TPU v4-32 / v5p-32 slice), 800 epochs (not yet measured
with this code). The paper's 83.2% ImageNet-1k top-1 after fine-tuning (Table 1, ViT-B, 800 epochs) is with DALL-E's
tokenizer, which cannot be downloaded here. With `method.tokenizer="random_projection"` (the default here;
`ssl_jax.methods.beit`) the targets are BEST-RQ codes of each patch's pixels; with `method.tokenizer="vq_tokenizer"`
and `method.tokenizer_workdir` set to a run of `configs/vqvae_tokenizer.py` (8192 codes, 16 x 16 patches at 224 px)
they are that trained tokenizer's codes. No published number applies to either; compare with this code's own MAE
runs (`configs/mae_vit_b.py`), whose pixel targets the first discretises.

Hyperparameters (official `run_beit_pretraining.py` with the README's ImageNet-1k command, `modeling_pretrain.py`,
`modeling_finetune.py`, `masking_generator.py`, `datasets.py`):
  encoder ViT-B/16 with a [CLS] token and a [MASK] embedding, no absolute position embedding, one relative position
  bias table shared by all blocks (zero-initialised), LayerScale 0.1, stochastic depth 0.1, LayerNorm eps 1e-6; every
  linear map, the patch embedding and both tokens N(0, 0.02) truncated at +-1 std, block i's output projections
  divided by sqrt(2 i); `lm_head` a linear map 768 -> 8192 on the final tokens of the masked patches
  masks: block-wise, 75 of 196 patches (40%), blocks of at least 16 patches, aspect ratios in (0.3, 1 / 0.3)
  loss: cross-entropy against the masked patches' visual tokens (8192 codes), averaged over the masked patches
  data: random resized crop 224 px, scale (0.08, 1.0), bicubic, horizontal flip, ColorJitter(0.4, 0.4, 0.4), ImageNet
  mean and std (`--imagenet_default_mean_and_std`)
  AdamW (betas 0.9, 0.999, eps 1e-8), lr 1.5e-3 for the batch of 2048 (not scaled), linear warm-up over 10 epochs
  then cosine to 1e-5, weight decay 0.05, not on biases, 1-D parameters and the [CLS] token, gradient norm clipped at
  3.0; mixed precision (bfloat16 here).
Deviations: the visual tokens (above; the official code tokenizes a second 112-pixel view of the same crop with
DALL-E's dVAE, 14 x 14 tokens; the quantizer here reads the 224-pixel crop's 16 x 16 patches, one token each); the
attention's k projection has a bias, which changes neither the function nor any other gradient (see
configs/data2vec_vit_b.py); the loss is averaged over the masked patches of the global batch, the official over
those of each GPU's batch; the learning-rate schedule is per step. The final evaluation is the quick kNN / L-BFGS
probe on a 50k-image subset of train, on the average-pooled patch tokens (the paper's linear probe averages the
tokens of an intermediate block; its headline number is fine-tuning).

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

from ml_collections import config_dict

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 2048
  c.total_epochs = 800.0
  c.log_every = 100
  c.ckpt_every = 1000
  c.eval_every, c.eval_every_epochs = None, 100.0

  c.data = config_lib.image_data("imagenet2012", size=224, crop_scale=(0.08, 1.0), flip=True, photometric="beit",
                                 num_workers=16)

  c.model = config_lib.vit("B/16", posemb="none", relative_position_bias=True, mask_token=True, layer_scale=0.1,
                           drop_path=0.1, init_std=0.02, init_truncation=1.0, depth_scaled_init=True,
                           dtype="bfloat16", pool="gap")

  c.method.name = "beit"
  c.method.num_mask_patches = 75
  c.method.min_mask_patches_per_block = 16
  c.method.tokenizer = "random_projection"
  c.method.vocab_size = 8192
  c.method.tokenizer_dim = 16
  c.method.tokenizer_workdir = config_dict.placeholder(str)   # with tokenizer="vq_tokenizer": the tokenizer's run

  c.optim.name = "adamw"
  c.optim.base_lr = 1.5e-3
  c.optim.lr_batch_base = 2048                 # the official learning rate is for the batch of 2048, unscaled
  c.optim.min_lr = 1e-5
  c.optim.warmup_epochs = 10.0
  c.optim.weight_decay = 0.05
  c.optim.grad_clip = 3.0
  c.optim.no_decay = ("pos_embedding", "cls")
  c.optim.schedule = "cosine"

  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "validation"
  c.eval.batch_size = 1024
  c.lock()
  return c

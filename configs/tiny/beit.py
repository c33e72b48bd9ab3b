"""BEiT on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/beit.py --workdir=/tmp/beit_tiny

A small BEiT ViT (width 128, 4 blocks, 4 heads; a [CLS] token, a [MASK] embedding, a shared relative position bias,
LayerScale 0.1, no absolute position embedding) on digits at 16x16 in patches of 4 (16 patches), 40% of the patches
masked block-wise, the visual tokens those of a frozen random-projection quantizer (512 codes) of each patch's
pixels. See the README table for the measured time and accuracies.

Deviations from the ImageNet recipe (configs/beit_vit_b.py), for 8x8-pixel digits: patch 4 at 16 px (with patches
of 2, each patch is nearly one grey level, and a normalised random projection of it keeps little more than the sign
of its brightness), 6 of 16 patches masked (ViT-B: 75 of 196) in blocks of 2 or more (16), 512 visual tokens
(8192; the digits' patches use about 90 of them: `tokenizer/usage` 0.18, `tokenizer/perplexity` about 30), no
stochastic depth, no colour jitter, crop scale (0.5, 1), no flip, lr 1.5e-3 at batch 128 over 100 epochs with 10 of
warm-up.

What it learns (2026-12-01, 100 epochs): kNN top-1 0.6333 against 0.4028 at random init, linear 0.8667 against
0.6972; `masked_token_accuracy` rises from 0.25 (step 200) to about 0.4. With the codes of a trained tokenizer
instead (`configs/tiny/vq_tokenizer.py`'s run, 512 codes on the same 4x4 grid: add
`--config.method.tokenizer=vq_tokenizer --config.method.tokenizer_workdir=<its workdir>`): kNN 0.6861, linear 0.8750,
`masked_token_accuracy` about 0.35 (5 min 0 s: the tokenizer's encoder runs in every step; its own training took
3 min 3 s).
"""

from ml_collections import config_dict

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 128
  c.total_epochs = 100.0
  c.log_every = 100
  c.ckpt_every = 500
  c.eval_every = 0

  c.data = config_lib.image_data("digits", size=16, crop_scale=(0.5, 1.0), flip=False, eval_crop_pct=1.0)

  c.model = config_lib.vit(patch_size=4, width=128, depth=4, num_heads=4, mlp_dim=512, posemb="none",
                           relative_position_bias=True, mask_token=True, layer_scale=0.1, init_std=0.02,
                           init_truncation=1.0, depth_scaled_init=True, dtype="float32", pool="gap")

  c.method.name = "beit"
  c.method.num_mask_patches = 0.4              # 6 of the 16 patches (ViT-B/16: 75 of 196)
  c.method.min_mask_patches_per_block = 2
  c.method.tokenizer = "random_projection"
  c.method.vocab_size = 512
  c.method.tokenizer_dim = 16
  c.method.tokenizer_workdir = config_dict.placeholder(str)   # with tokenizer="vq_tokenizer": the tokenizer's run

  c.optim.name = "adamw"
  c.optim.base_lr = 1.5e-3
  c.optim.lr_batch_base = 128
  c.optim.min_lr = 1e-5
  c.optim.warmup_epochs = 10.0
  c.optim.weight_decay = 0.05
  c.optim.grad_clip = 3.0
  c.optim.no_decay = ("pos_embedding", "cls")

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True
  c.lock()
  return c

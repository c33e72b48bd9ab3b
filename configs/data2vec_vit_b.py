"""data2vec ViT-B/16 pretraining on ImageNet-1k (Baevski et al. 2022, "data2vec: A General Framework for
Self-supervised Learning in Speech, Vision and Language"), the official vision recipe.

    python main.py --config=configs/data2vec_vit_b.py --workdir=gs://bucket/data2vec_vit_b

Sized as the official command (facebookresearch/data2vec_vision, `beit/README.md`): global batch 2048 on 16 GPUs
(128 each) or a TPU v4-32 / v5p-32 slice, 800 epochs (not yet measured with this code). Expected: 84.2% ImageNet-1k
top-1 after fine-tuning (paper Table 1, ViT-B, 800 epochs; `configs/finetune_vit_b.py` with `init_from` is this
code's fine-tuning, the paper fine-tunes 100 epochs at lr 4e-3, layer decay 0.65, drop path 0.2).

Hyperparameters (official `run_cyclical.py` with the README's arguments, `engine_for_cyclical.py`,
`modeling_cyclical.py`, `modeling_finetune.py`):
  student ViT-B/16 with a [CLS] token and a [MASK] embedding, no absolute position embedding, one relative position
  bias table shared by all blocks (zero-initialised), LayerScale 1e-4, stochastic depth 0.25, LayerNorm eps 1e-6;
  every linear map, the patch embedding and both tokens N(0, 0.02) truncated at +-1 std, block i's output
  projections divided by sqrt(2 i); `lm_head` a linear map 768 -> 768 on the final tokens
  masks: BEiT's block-wise masking, 120 of 196 patches, blocks of at least 16 patches, no per-block limit, aspect
  ratios in (0.3, 1 / 0.3)
  teacher: an EMA of the student, momentum 0.9998 from the first step (`--ema_decay 0.9998 --ema_start_at 0`), no
  stochastic depth; targets: the residual stream after each of blocks 6..11 (`--target_layers [6..11]`,
  `--layer_results end`), each layer-normalised without affine parameters, averaged, layer-normalised again
  (`--post_target_layer_norm`); eps 1e-5
  loss: smooth L1 with beta 2 (`--l1_beta 2.0`), averaged over every element of every masked patch
  data: random resized crop 224 px, scale (0.08, 1.0), bicubic, horizontal flip, ColorJitter(0.4, 0.4, 0.4),
  ImageNet mean and std
  AdamW (betas 0.9, 0.999, eps 1e-8), lr 2e-3 for the batch of 2048 (not scaled), linear warm-up over 10 epochs
  then cosine to 1e-5, weight decay 0.05 constant, not on biases, 1-D parameters and the [CLS] token (the [MASK]
  token and the relative position bias table are decayed, as the official parameter groups do), gradient norm
  clipped at 3.0; mixed precision (bfloat16 here).
Deviations: no attention dropout (the official `--attn_drop_rate 0.05`: `ssl_jax.models.attention` drops no
attention probabilities); the attention's k projection has a bias (the official code has q and v biases only; a k
bias adds q . b_k to every logit of a query, which the softmax ignores, so the function and every other gradient are
the same: tests/test_data2vec_reference.py); the loss is averaged over the masked patches of the global batch, the
official over those of each GPU's batch (equal when every image gets 120, as almost all do); the learning-rate
schedule is per step. The final evaluation is the quick kNN / L-BFGS probe on a 50k-image subset of train, on the
student's average-pooled patch tokens; the paper reports fine-tuning only.

Smoke-run the full-scale model on a laptop: add `--config.data.name=digits --config.batch_size=8
--config.total_steps=2 --config.eval.data_name=digits --config.eval.train_split='train[:64]'
--config.eval.test_split='test[:64]' --config.eval.batch_size=8`.
"""

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

  c.model = config_lib.vit("B/16", posemb="none", relative_position_bias=True, mask_token=True, layer_scale=1e-4,
                           drop_path=0.25, init_std=0.02, init_truncation=1.0, depth_scaled_init=True,
                           dtype="bfloat16", pool="gap")

  c.method.name = "data2vec"
  c.method.num_mask_patches = 120
  c.method.min_mask_patches_per_block = 16
  c.method.max_mask_patches_per_block = 196
  c.method.top_k = 6
  c.method.layer_norm_targets = "layer"
  c.method.final_norm_targets = "layer"
  c.method.loss = "smooth_l1"
  c.method.beta = 2.0
  c.method.momentum = (0.9998, 0.9998)

  c.optim.name = "adamw"
  c.optim.base_lr = 2e-3
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

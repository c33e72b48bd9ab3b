"""CLIP on the embedded colour emoji captioned by their Unicode names and subgroups: a laptop-CPU quick start of
image-text pretraining.

    python main.py --config=configs/tiny/clip.py --workdir=/tmp/clip_tiny
    python main.py --config=configs/tiny/clip.py:digits --workdir=/tmp/clip_tiny_digits   # templated digit captions

A small ViT (16 x 16 images, 4 x 4 patches, width 96, 3 blocks, CLIP's LayerNorm before them, [CLS] pooling) and CLIP's
causal text transformer (width 64, 2 blocks, captions of at most 24 tokens from a byte-level BPE of 1,024 tokens trained
on the training captions, pooled at the end-of-text token), projected to a 64-dimensional joint space; CLIP's symmetric
InfoNCE with the learned temperature (1 / 0.07 at the start, clamped at 100), AdamW with CLIP's betas (0.9, 0.98), eps
1e-6 and weight decay 0.2. Evaluated on the held-out emoji (whole near-duplicate clusters never seen in training):
zero-shot classification among the 99 Unicode subgroups ("face smiling", "animal mammal", ...; chance 1/99, the largest
subgroup 20% of the test split), image <-> caption retrieval among the 768 test pairs (chance of recall@5: 5/768), and
kNN / linear probes of each tower's features on the subgroups, against the same towers at random initialisation and the
raw pixels. See the README table for the measured time and accuracies.

Deviations from CLIP (configs/clip_vit_b16.py), for a 2-core CPU: tiny towers, images and vocabulary; batch 256
(CLIP: 32,768); a random-resized crop of scale (0.5, 1) as augmentation (CLIP: none; open_clip (0.9, 1)).
"""

import ml_collections

from ssl_jax import config as config_lib

TEMPLATES = ("an emoji of {}.", "{}", "a drawing of {}.", "a {} emoji.")


def get_config(arg=None):
  data = arg or "emoji"
  if data not in ("emoji", "digits"):
    raise ValueError(f"configs/tiny/clip.py runs on 'emoji' or 'digits', not {data!r}.")
  c = config_lib.base_config()
  c.batch_size = 256
  c.total_steps = 1500
  c.log_every = 100
  c.ckpt_every = 500

  c.data = config_lib.image_text_data(data, size=16, length=24, tokenizer="bpe:1024", start_token=True,
                                      crop_scale=(0.5, 1.0), flip=False, eval_crop_pct=1.0)

  c.model = config_lib.vit(patch_size=4, width=96, depth=3, num_heads=3, mlp_dim=384, posemb="learn", pool="cls",
                           pre_norm=True)

  c.method.name = "clip"
  c.method.text = dict(width=64, depth=2, num_heads=4, mlp_dim=256, style="clip")
  c.method.embed_dim = 64
  c.method.logit_scale_init = 1 / 0.07
  c.method.logit_scale_max = 100.0
  c.method.loss_impl = "plain"

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3
  c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.98, 1e-6
  c.optim.weight_decay = 0.2
  c.optim.warmup_steps = 100

  c.eval.data_name = "emoji_subgroups" if data == "emoji" else "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 256
  c.eval.evaluators.zero_shot = dict(type="zero_shot", templates=TEMPLATES if data == "emoji" else (
      "a handwritten {}.", "the digit {}."))
  c.eval.evaluators.retrieval = dict(type="retrieval")
  c.eval.raw_baseline = True
  c.lock()
  return c

"""SigLIP on the embedded colour emoji captioned by their Unicode names and subgroups: a laptop-CPU quick start of
the pairwise sigmoid loss.

    python main.py --config=configs/tiny/siglip.py --workdir=/tmp/siglip_tiny
    python main.py --config=configs/tiny/siglip.py:digits --workdir=/tmp/siglip_tiny_digits   # templated captions

The towers of configs/tiny/clip.py with SigLIP's choices: the image tower with tanh GELU, no [CLS] token and
attention pooling (MAP), whose 96 outputs are the image embeddings; the text tower bidirectional over the whole
padded caption (sticky end-of-text padding, no start token), pooled at its last position and projected to those 96
dimensions with a bias; the sigmoid loss with the learned scale and bias initialised at 10 and -10
(Zhai et al. 2023); AdamW with weight decay 1e-4 as the paper's B/16 run. Evaluated as configs/tiny/clip.py
(zero-shot among the 99 subgroups, chance 1/99; retrieval among the 768 held-out pairs; kNN / linear probes).

The bias starts at the paper's -10, the log prior odds of a positive pair at its batch of 32k; at this batch of 256
the prior is -log(255) = -5.54 (`--config.method.logit_bias_init=-5.54`, or "prior" in the config). Both measured
(2026-12-02, 1,500 steps; kNN / linear on the subgroups, zero-shot top-1 / top-5, retrieval R@5 image -> text):
-10: 0.4622 / 0.4336, 0.0417 / 0.1536, 0.1849 (9.3 min); -5.54: 0.4349 / 0.4766, 0.0521 / 0.1862, 0.1823 (9.8 min):
no clear winner from one seed each, so the config keeps the paper's value.

Deviations from SigLIP (configs/siglip_vit_b16.py), for a 2-core CPU: tiny towers, images and vocabulary; batch 256
(SigLIP: 32k); a random-resized crop of scale (0.5, 1).
"""

from ssl_jax import config as config_lib

TEMPLATES = ("an emoji of {}.", "{}", "a drawing of {}.", "a {} emoji.")


def get_config(arg=None):
  data = arg or "emoji"
  if data not in ("emoji", "digits"):
    raise ValueError(f"configs/tiny/siglip.py runs on 'emoji' or 'digits', not {data!r}.")
  c = config_lib.base_config()
  c.batch_size = 256
  c.total_steps = 1500
  c.log_every = 100
  c.ckpt_every = 500

  c.data = config_lib.image_text_data(data, size=16, length=24, tokenizer="bpe:1024", start_token=False,
                                      crop_scale=(0.5, 1.0), flip=False, eval_crop_pct=1.0)

  c.model = config_lib.vit(patch_size=4, width=96, depth=3, num_heads=3, mlp_dim=384, posemb="learn",
                           class_token=False, pool="map", tanh_gelu=True)

  c.method.name = "siglip"
  c.method.text = dict(width=64, depth=2, num_heads=4, mlp_dim=256, style="siglip")
  c.method.logit_scale_init = 10.0
  c.method.logit_bias_init = -10.0
  c.method.loss_impl = "plain"

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3
  c.optim.b1, c.optim.b2 = 0.9, 0.95
  c.optim.weight_decay = 1e-4
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

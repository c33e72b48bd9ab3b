"""Context encoders (inpainting) on the embedded digits data set: a laptop-CPU quick start.

    python main.py --config=configs/tiny/inpainting.py --workdir=/tmp/inpainting_tiny
    python main.py --config=configs/tiny/inpainting.py:emoji --workdir=/tmp/inpainting_tiny_emoji   # the colour set

The small ViT of configs/tiny/mae.py on digits at 16 x 16 with the central 8 x 8 square removed (a quarter of the
area, as the paper's 64 of 128) but for a visible ring of 1 pixel that is predicted with 10 times the weight; a
linear layer from each patch token to its 4 x 4 pixels; the reconstruction loss alone (`adversarial=False`: the
paper's L2 ablation; set it to add the discriminator). AdamW as configs/tiny/mae.py. See the README table for the
measured time and accuracies, and the report's inpaintings.png for the pictures.

Deviations from the ImageNet recipe (configs/inpainting_vit_b16.py) for 8x8-pixel digits and a short run: the 1-pixel
ring (4 of 64 officially), no adversarial term, crop scale (0.5, 1) and no flip (mirrored digits are other symbols),
AdamW at the small ViT's lr with a cosine schedule, batch 128, 150 epochs.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.batch_size = 128
  c.total_epochs = 150.0
  c.log_every = 100
  c.ckpt_every = 500
  c.eval_every = 0

  c.data = config_lib.image_data("digits", size=16, crop_scale=(0.5, 1.0), flip=False, eval_crop_pct=1.0)

  c.model = config_lib.vit(patch_size=4, width=128, depth=4, num_heads=4, mlp_dim=512, posemb="sincos2d",
                           class_token=False, pool="gap", dtype="float32")

  c.method.name = "inpainting"
  c.method.pixels_per_token = 4
  c.method.mask = "center"
  c.method.fraction = 0.25
  c.method.overlap = 1
  c.method.overlap_weight = 10.0
  c.method.adversarial = False
  c.method.online_probe = True

  c.optim.name = "adamw"
  c.optim.base_lr = 1.5e-4 * 8
  c.optim.b1, c.optim.b2 = 0.9, 0.95
  c.optim.weight_decay = 0.05
  c.optim.warmup_epochs = 10.0

  c.eval.data_name = "digits"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 360
  c.eval.raw_baseline = True   # the evaluators on the raw pixels too: the baseline to beat
  config_lib.tiny_on(c, arg)      # `:emoji`: the colour set, the same steps
  c.lock()
  return c

"""Standalone evaluation of a pretrained encoder on frozen features, no training (`total_steps = 0`).

    python main.py --config=configs/knn.py --config.init_from=gs://bucket/dino_vit_s16 --workdir=...
    python main.py --config=configs/knn.py:digits --config.init_from=/tmp/mae_tiny --workdir=/tmp/mae_tiny_knn

Runs DINO's weighted kNN (k=20, T=0.07; Caron et al. 2021, appendix) with the bank (ImageNet train, 1.28M images)
sharded over the devices, a majority-vote kNN, big_vision's few-shot least squares (1, 5, 10, 25 shots, 3 draws)
and the MAE-protocol LARS probe on cached centre-crop features; then the representation report. The encoder and
its pooled feature come from the pretraining run (DINO: the teacher's [CLS] token). Expected for DINO ViT-S/16:
74.5% weighted 20-NN on ImageNet (the paper's Table 2; measured with this code only on digits so far).

`:digits` evaluates on the embedded digits (train / test splits) at 16 px, for the tiny configs.
"""

from ml_collections import config_dict

from ssl_jax import config as config_lib


def get_config(arg=None):
  if arg not in (None, "", "digits"):
    raise ValueError(f"configs/knn.py takes '' or 'digits', got {arg!r}.")
  c = config_lib.base_config()
  c.init_from = config_dict.placeholder(str)
  c.total_steps = 0
  c.batch_size = 1024

  # The architecture and pooled feature come from init_from; set pool here to evaluate another feature.
  c.model = config_dict.ConfigDict(dict(pool=config_dict.placeholder(str), dtype=config_dict.placeholder(str)))
  config_lib.add_vit_execution_options(c.model, remat=None, scan=None)
  c.method.name = "classify"
  c.method.freeze_encoder = True

  c.eval.init_baseline = True                     # the same encoder at random initialisation, for scale
  c.eval.evaluators = config_dict.ConfigDict(dict(
      knn=dict(type="knn", k=20, temperature=0.07, vote="weighted"),
      knn_majority=dict(type="knn", k=20, vote="majority"),
      fewshot=dict(type="fewshot", shots=(1, 5, 10, 25), l2=2.0 ** 10),
      linear_lars=dict(type="linear_lars", epochs=90, batch_size=16384, base_lr=0.1, warmup_epochs=10),
  ))
  if arg == "digits":
    c.batch_size = 128
    # The report's alignment views as in configs/tiny.
    c.data = config_lib.image_data("digits", size=16, crop_scale=(0.5, 1.0), flip=False, eval_crop_pct=1.0)
    c.eval.test_split = "test"
    c.eval.batch_size = 360
    c.eval.evaluators.fewshot.l2 = 32.0
    c.eval.evaluators.linear_lars.update(dict(epochs=60, batch_size=128, base_lr=16.0, warmup_epochs=5))
  else:
    c.data = config_lib.image_data("imagenet2012", size=224)
    c.eval.batch_size = 1024
  c.lock()
  return c

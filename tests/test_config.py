"""Invalid configs fail with a message naming the key and the fix, before anything is compiled or written."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from conftest import load_config
from ssl_jax import config as config_lib
from ssl_jax import train


@pytest.mark.parametrize("edit,message", [
    (lambda c: setattr(c, "total_steps", None), "set config.total_steps or config.total_epochs"),
    (lambda c: setattr(c, "batch_size", 0), "config.batch_size must be positive"),
    (lambda c: setattr(c, "batch_size", 12), r"batch_size=12 is not divisible by the 8 batch shards"),
    (lambda c: c.mesh.update(dict(data=3, fsdp=1, tensor=1)), "needs 3 devices but 8 are available"),
    (lambda c: setattr(c, "mesh_preset", "zero3"), "mesh_preset='zero3' is unknown; use one of"),
    (lambda c: setattr(c, "mesh_preset", "fsdp_tp"), "takes the tensor-parallel size from config.mesh.tensor"),
    (lambda c: setattr(c, "grad_accum_steps", 0), "grad_accum_steps=0 must be >= 1"),
    (lambda c: c.method.update(dict(mask_ratio=1.0)), "mask_ratio must be in"),
    (lambda c: c.model.update(dict(patch_size=5)), "not divisible by the patch size 5"),
    (lambda c: c.optim.update(dict(name="adam_typo")), "config.optim.name='adam_typo' is unknown"),
    (lambda c: c.data.image.update(dict(crop_scale=(0.5, 0.2))), "config.data.image.crop_scale must satisfy"),
    (lambda c: c.method.update(dict(name=None)), r"config.method.name is not set; set it to a method of"),
    (lambda c: c.update(dict(batch_size=None)), r"config.batch_size is not set"),
    (lambda c: setattr(c, "data", config_lib.data_block("digits")), r"config.data has no modality block .*image_data"),
    (lambda c: c.model.update(dict(width=None)), r"set `variant` .* or all of \['width'\]"),
    (lambda c: c.data.update(dict(name="digits", train_split="val")), "digits has splits"),
    (lambda c: c.data.update(dict(name="imagenet2012", data_dir="/nonexistent/tfds")), "tfds build imagenet2012"),
    (lambda c: c.eval.evaluators.update(dict(knn=dict(type="knn", kk=5))), r"evaluators.knn has unknown arguments"),
    (lambda c: c.eval.evaluators.update(dict(svm=dict(type="svm"))), r"evaluators.svm.type='svm'; use one of"),
    (lambda c: c.data.image.update(dict(rand_augment=(2, 11, 0.5))), r"config.data.image.rand_augment=\(2, 11, 0.5\)"),
    (lambda c: c.optim.update(dict(layer_decay=1.5)), r"config.optim.layer_decay must be in \(0, 1\]"),
    (lambda c: c.optim.update(dict(lr_scaling="cube")), r"config.optim.lr_scaling='cube': use one of"),
    (lambda c: c.optim.update(dict(grad_clip_mode="per_layer")), r"grad_clip_mode='per_layer': use 'global', "),
    (lambda c: c.optim.update(dict(decay_epochs=(10, 20))), r"decay_epochs=\(10, 20\) is read only by the 'step'"),
    (lambda c: c.optim.update(dict(schedule="step", decay_epochs=(20, 10))), r"must be positive and increasing"),
    (lambda c: c.optim.update(dict(nesterov=True)), r"config.optim.nesterov is for SGD; config.optim.name is"),
    (lambda c: c.optim.update(dict(lr_multipliers=(("embedding",),))),
     r"optim.lr_multipliers: \('embedding',\) is not"),
    (lambda c: c.optim.update(dict(lr_multipliers=(("patch_embed/", 0.2),))), r"\['patch_embed/'\] match no parameter"),
    (lambda c: c.optim.update(dict(constant_lr=(3,))), r"optim.constant_lr must be a tuple of parameter-path regexes"),
    (lambda c: c.optim.update(dict(constant_lr=("net/predictr/.*",))),
     r"config.optim.constant_lr: \['net/predictr/\.\*'\] match no parameter"),
    (lambda c: setattr(c, "init_from", "/nonexistent/run"), "method 'mae' cannot start from a pretrained"),
])
def test_invalid_config_fails_before_writing(tiny_config, tmp_path, edit, message):
  edit(tiny_config)
  workdir = tmp_path / "run"
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    train.run(tiny_config, str(workdir))
  assert not workdir.exists()


def test_epoch_durations_are_converted_once():
  c = load_config("configs/mae_vit_b.py")
  d = config_lib.resolve_durations(c, num_train_examples=1_281_167)
  assert d.steps_per_epoch == 312
  assert (d.total, d.warmup, d.eval_every) == (800 * 312, 40 * 312, 100 * 312)
  assert config_lib.resolve_durations(load_config("configs/mae_vit_b.py", "1600ep"), 1_281_167).total == 1600 * 312
  c.total_steps = 7           # a step value wins over the epoch value
  assert config_lib.resolve_durations(c, num_train_examples=1_281_167).total == 7


def test_tiny_configs_move_to_the_colour_set_with_the_same_steps():
  from ssl_jax.data import sources
  for name, n in config_lib.EMBEDDED_TRAIN_EXAMPLES.items():
    assert len(sources.make(name, "train")) == n
  digits, emoji = load_config("configs/tiny/dino.py"), load_config("configs/tiny/dino.py", "emoji")
  assert (emoji.data.name, emoji.eval.data_name) == ("emoji", "emoji")
  d = config_lib.resolve_durations(digits, config_lib.EMBEDDED_TRAIN_EXAMPLES["digits"])
  e = config_lib.resolve_durations(emoji, config_lib.EMBEDDED_TRAIN_EXAMPLES["emoji"])
  assert (d.steps_per_epoch, e.steps_per_epoch) == (5, 11)               # batch 256: 1437 // 256, 3005 // 256
  assert (e.total, e.warmup) == (d.total, d.warmup) == (500, 50)
  # The method's epoch-valued hyperparameters too: DINO's frozen prototypes last 5 steps on either set.
  assert emoji.method.freeze_last_layer_epochs * 11 == pytest.approx(digits.method.freeze_last_layer_epochs * 5)
  assert emoji.method.teacher_temp_warmup_epochs == 0
  with pytest.raises(ValueError, match="a tiny config runs on"):
    load_config("configs/tiny/simclr.py", "cifar10")


def test_paper_hyperparameters_of_mae_vit_b():
  c = load_config("configs/mae_vit_b.py")
  assert (c.batch_size, c.model.variant, c.model.dtype, c.model.posemb) == (4096, "B/16", "bfloat16", "sincos2d")
  assert c.method.decoder.to_dict() == dict(width=512, depth=8, num_heads=16, mlp_dim=2048)
  assert (c.method.mask_ratio, c.method.norm_pix_loss) == (0.75, True)
  assert (c.optim.name, c.optim.b1, c.optim.b2, c.optim.weight_decay) == ("adamw", 0.9, 0.95, 0.05)
  assert c.optim.base_lr * c.batch_size / c.optim.lr_batch_base == pytest.approx(2.4e-3)
  assert tuple(c.data.image.crop_scale) == (0.2, 1.0) and c.data.image.flip and c.data.image.size == 224


def _main(*args, workdir):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "main.py", "--config=configs/tiny/mae.py", f"--workdir={workdir}", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_main_rejects_unknown_keys_and_bad_values(tmp_path):
  out = _main("--config.batch_sise=8", workdir=tmp_path / "a")
  assert out.returncode != 0 and "batch_sise" in out.stderr
  out = _main("--config.method.mask_ratio=1.5", workdir=tmp_path / "b")
  assert out.returncode != 0 and "method.mask_ratio must be in [0, 1)" in out.stderr
  out = _main("--config.batch_size=abc", workdir=tmp_path / "c")
  assert out.returncode != 0 and "batch_size" in out.stderr
  assert not any((tmp_path / d).exists() for d in "abc")


def test_execution_keys_do_not_change_a_runs_identity():
  """A run may resume with remat/scan switched (same parameters and results), or from a run saved before those keys
  existed; any architecture key still counts."""
  from ssl_jax import checkpoint
  saved = dict(method=dict(name="mae"), model=dict(variant="B/16"), batch_size=8, seed=0,
               data=dict(name="digits", image_size=16))         # as runs of earlier versions saved it
  current = json.loads(json.dumps(saved))
  current["model"].update(remat="full", scan=True)
  assert checkpoint.identity_differences(saved, current) == []
  # A run saved before the image options moved under data.image, and before ViT configs named every field (unset
  # ones None) and their arch, is the same experiment.
  current["data"] = dict(name="digits", image=dict(size=16))
  current["model"].update(arch="vit", width=None)
  assert checkpoint.identity_differences(saved, current) == []
  current["data"]["image"]["size"] = 32
  assert checkpoint.identity_differences(saved, current) == ["data.image.size"]
  current["model"]["variant"] = "S/16"
  assert checkpoint.identity_differences(saved, current) == ["model", "data.image.size"]


def test_runs_saved_before_the_image_block_are_read_in_the_current_schema():
  """`config.upgrade`: a saved config whose image options sit in `config.data` (and `eval.crop_pct`) gets them under
  `config.data.image`, as `export` and `init_from` read it; a current one is returned as it is."""
  old = dict(method=dict(name="mae"), eval=dict(crop_pct=1.0, batch_size=8),
             data=dict(name="digits", image_size=16, crop_scale=[0.5, 1.0], crop_ratio=[0.75, 1.33], flip=False,
                       rand_augment=None, views={}, bad_images="skip", num_workers=0))
  new = config_lib.upgrade(old)
  assert new["data"] == dict(name="digits", num_workers=0, image=dict(
      size=16, crop_scale=[0.5, 1.0], crop_ratio=[0.75, 1.33], flip=False, rand_augment=None, views={},
      bad_images="skip", eval_crop_pct=1.0))
  current = load_config("configs/tiny/mae.py").to_dict()
  assert config_lib.upgrade(current) is current

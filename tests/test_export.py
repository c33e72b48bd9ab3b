"""Export to timm / Hugging Face / npz and import from timm: the conversions in numpy here, and against PyTorch,
timm and transformers when the optional `export` extra is installed (`pip install -e '.[export]'`)."""

import json
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import ROOT
from conftest import load_config
from ssl_jax import convert
from ssl_jax import export
from ssl_jax.ops import image
from ssl_jax import train
from ssl_jax.models import backbone

SPEC = dict(arch="vit", patch_size=4, width=32, depth=2, num_heads=4, mlp_dim=64, posemb="sincos2d")


def _encoder(pool, posemb="sincos2d", seed=0):
  """A randomly initialised encoder with non-trivial LayerNorm parameters, and its variables. Pool "gap_no_cls": a
  ViT without [CLS] token (I-JEPA's), average pooled; "cls_layer_scale": with LayerScale and a [MASK] token (BEiT's,
  data2vec's); "gap_rel_pos": data2vec's (a shared relative position bias, no absolute position embedding, LayerScale,
  average pooled); "cls_rel_pos": a relative position bias beside learned absolute positions; "cls_no_posemb": no
  position information at all; "cls_pre_norm_tanh": CLIP's LayerNorm before the blocks with SigLIP's tanh GELU."""
  spec = dict(SPEC, pool=pool, posemb=posemb)
  if pool == "gap_no_cls":
    spec.update(pool="gap", class_token=False)
  if pool == "cls_layer_scale":
    spec.update(pool="cls", layer_scale=0.1, mask_token=True)
  if pool == "gap_rel_pos":
    spec.update(pool="gap", posemb="none", relative_position_bias=True, layer_scale=0.1, mask_token=True)
  if pool == "cls_rel_pos":
    spec.update(pool="cls", posemb="learn", relative_position_bias=True)
  if pool == "cls_no_posemb":
    spec.update(pool="cls", posemb="none")
  if pool == "cls_pre_norm_tanh":
    spec.update(pool="cls", posemb="learn", pre_norm=True, tanh_gelu=True)
  model = backbone.create(**spec)
  variables = jax.device_get(nn.unbox(model.init(jax.random.key(seed), np.zeros((1, 16, 16, 3), np.float32))))
  rng = np.random.default_rng(seed)
  variables = jax.tree.map(lambda x: x + 0.1 * rng.normal(size=x.shape).astype(np.float32), variables)
  return spec, variables, model


def _images(n=3, seed=1):
  return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)


def test_timm_names_and_shapes():
  spec, variables, _ = _encoder("cls")
  sd, kw = convert.to_timm(spec, variables, 16)
  block = {f"blocks.{i}.{n}" for i in range(2) for n in (
      "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
      "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")}
  assert set(sd) == {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
                     "norm.bias"} | block
  assert sd["patch_embed.proj.weight"].shape == (32, 3, 4, 4) and sd["pos_embed"].shape == (1, 17, 32)
  assert sd["blocks.0.attn.qkv.weight"].shape == (96, 32) and sd["blocks.0.mlp.fc1.weight"].shape == (64, 32)
  assert np.all(sd["pos_embed"][0, 0] == 0)                      # no position embedding on [CLS]
  assert kw == dict(pretrained=False, num_classes=0, global_pool="token", fc_norm=False, img_size=16, patch_size=4,
                    embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, class_token=True, qkv_bias=True)
  # The conv weight applied to a patch equals the Dense kernel applied to the patch flattened (row, col, channel).
  patch = np.random.default_rng(0).normal(size=(4, 4, 3)).astype(np.float32)
  conv = np.einsum("dcij,ijc->d", sd["patch_embed.proj.weight"], patch)
  dense = patch.reshape(-1) @ np.asarray(variables["params"]["vit"]["embedding"]["kernel"])
  np.testing.assert_allclose(conv, dense, rtol=1e-5, atol=1e-5)
  _, kw_gap = convert.to_timm(dict(spec, pool="gap_fc_norm"), _encoder("gap_fc_norm")[1], 16)
  assert (kw_gap["global_pool"], kw_gap["fc_norm"]) == ("avg", True)


@pytest.mark.parametrize("pool", ["cls", "gap", "gap_fc_norm", "gap_no_cls", "cls_layer_scale"])
def test_timm_round_trip_gives_the_same_features(pool, tmp_path):
  from safetensors.numpy import save_file
  spec, variables, model = _encoder(pool)
  sd, _ = convert.to_timm(spec, variables, 16)
  save_file(sd, str(tmp_path / "m.safetensors"))
  spec2, variables2 = convert.load_timm_vit(str(tmp_path / "m.safetensors"), num_heads=4, pool=spec["pool"])
  variant = {"gap_no_cls": {"class_token": False}, "cls_layer_scale": {"layer_scale": 1.0}}.get(pool, {})
  assert spec2 == dict(arch="vit", pool=spec["pool"], patch_size=4, width=32, depth=2, num_heads=4, mlp_dim=64,
                       posemb="learn", **variant)
  # Fixed sin-cos positions came back as a learned table; the features are the same.
  x = image.normalize(_images())
  ours = model.apply(variables, x)["pooled"]
  back = backbone.create(**spec2).apply(variables2, x)["pooled"]
  np.testing.assert_allclose(np.asarray(back), np.asarray(ours), rtol=1e-5, atol=1e-5)


def test_hf_names_split_qkv_and_refuse_fc_norm():
  spec, variables, _ = _encoder("cls")
  sd, config = convert.to_hf(spec, variables, 16)
  timm_sd, _ = convert.to_timm(spec, variables, 16)
  q, k, v = (sd[f"encoder.layer.1.attention.attention.{n}.weight"] for n in ("query", "key", "value"))
  np.testing.assert_array_equal(np.concatenate([q, k, v]), timm_sd["blocks.1.attn.qkv.weight"])
  assert config["layer_norm_eps"] == 1e-6 and config["intermediate_size"] == 64 and config["num_attention_heads"] == 4
  assert len(sd) == 6 + 2 * 16
  with pytest.raises(ValueError, match="no Hugging Face ViTModel equivalent"):
    convert.to_hf(dict(spec, pool="gap_fc_norm"), _encoder("gap_fc_norm")[1], 16)
  spec, variables, _ = _encoder("gap_no_cls")
  with pytest.raises(ValueError, match="without a \\[CLS\\] token"):
    convert.to_hf(spec, variables, 16)
  spec, variables, _ = _encoder("cls_layer_scale")
  with pytest.raises(ValueError, match="LayerScale"):
    convert.to_hf(spec, variables, 16)
  spec, variables, _ = _encoder("gap_rel_pos")
  with pytest.raises(ValueError, match="relative position bias.*timm's Beit"):
    convert.to_hf(spec, variables, 16)
  with pytest.raises(ValueError, match="timm's Beit always has a \\[CLS\\] token"):
    convert.to_timm(dict(spec, class_token=False), variables, 16)


def _features(workdir, images):
  """ssl_jax's features of the released encoder of `workdir` (MAE tiny: mean patch token)."""
  from ssl_jax import pretrained
  source = pretrained.open_workdir(str(workdir))
  return np.asarray(backbone.create(**source.spec).apply(source.variables(), image.normalize(images))["pooled"])


def test_cli_exports_every_format(mae_workdir, tmp_path):
  mae_run, _ = mae_workdir
  run = lambda *a: subprocess.run([sys.executable, "-m", "ssl_jax.export", f"--workdir={mae_run}", *a],
                                  capture_output=True, text=True, cwd=ROOT)
  out = run("--format=timm", f"--out={tmp_path / 'm.safetensors'}")
  assert out.returncode == 0, out.stderr
  assert "timm.create_model('vit_base_patch16_224', pretrained=False, num_classes=0, global_pool='avg'" in out.stdout
  meta = json.loads((tmp_path / "m.safetensors.timm.json").read_text())
  assert meta["kwargs"]["embed_dim"] == 32 and meta["kwargs"]["fc_norm"] is False
  # Import the exported file: the same features as the workdir's encoder.
  spec, variables = convert.load_timm_vit(str(tmp_path / "m.safetensors"), num_heads=4, pool="gap")
  imgs = _images()
  np.testing.assert_allclose(backbone.create(**spec).apply(variables, image.normalize(imgs))["pooled"],
                             _features(mae_run, imgs), rtol=1e-5, atol=1e-5)
  assert run("--format=hf", f"--out={tmp_path / 'hf'}").returncode == 0
  assert json.loads((tmp_path / "hf" / "config.json").read_text())["hidden_size"] == 32
  assert run("--format=npz", f"--out={tmp_path / 'm.npz'}").returncode == 0
  z = np.load(tmp_path / "m.npz")
  assert json.loads(str(z["__spec__"]))["pool"] == "gap" and "params/vit/cls" in z.files
  bad = run("--format=npz", f"--out={tmp_path / 'x.npz'}", "--workdir=/nonexistent")
  assert bad.returncode == 2 and "holds no complete checkpoint" in bad.stderr


def test_fine_tuning_from_a_timm_file(tmp_path):
  from safetensors.numpy import save_file
  spec, variables, model = _encoder("cls", posemb="learn")
  sd, _ = convert.to_timm(spec, variables, 16)
  save_file(sd, str(tmp_path / "public.safetensors"))
  c = load_config("configs/tiny/finetune.py")
  c.init_from = str(tmp_path / "public.safetensors")
  c.model.pool, c.model.num_heads = "cls", 4      # timm files do not store the head count
  c.update(dict(batch_size=32, total_epochs=None, total_steps=1, log_every=1, ckpt_every=1))
  c.optim.warmup_epochs, c.optim.warmup_steps = None, 1
  c.eval.update(dict(train_split="train[:40]", test_split="test[:40]", batch_size=40, report=False))
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(-1, 1, 1), ("data", "fsdp", "tensor"))
  program = train.build(c, mesh, 1437, 10)
  state = train.load_pretrained(program, program.init())
  x = _images(8)
  np.testing.assert_allclose(program.represent(state.params, state.extra, {"image": x})["image"],
                             model.apply(variables, image.normalize(x))["pooled"], rtol=1e-5, atol=1e-5)


NO_EXTRA = "the optional `export` extra (torch, timm, transformers) is not installed: pip install -e '.[export]'"


@pytest.mark.parametrize("pool", ["cls", "gap", "gap_fc_norm", "gap_no_cls", "cls_layer_scale", "gap_rel_pos",
                                  "cls_rel_pos", "cls_no_posemb", "cls_pre_norm_tanh"])
def test_timm_model_gives_ssl_jax_features(pool):
  """The exported encoder loads strictly into timm (a `VisionTransformer`, or a `Beit` with a relative position
  bias: its k bias, absent from Beit, is non-zero here and dropped) and gives ssl_jax's features."""
  torch = pytest.importorskip("torch", reason=NO_EXTRA)
  timm = pytest.importorskip("timm", reason=NO_EXTRA)
  spec, variables, model = _encoder(pool)
  sd, kwargs = convert.to_timm(spec, variables, 16)
  assert convert.timm_model_name(kwargs) == ("beit_base_patch16_224" if "rel_pos" in pool else convert.TIMM_MODEL)
  net = timm.create_model(convert.timm_model_name(kwargs), **kwargs).eval()
  net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
  x = np.asarray(image.normalize(_images()))
  with torch.no_grad():
    theirs = net(torch.from_numpy(x.copy()).permute(0, 3, 1, 2)).numpy()
  ours = np.asarray(model.apply(variables, x)["pooled"])
  assert np.max(np.abs(theirs - ours)) <= 1e-4


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_hugging_face_vit_gives_ssl_jax_features(pool, tmp_path):
  torch = pytest.importorskip("torch", reason=NO_EXTRA)
  transformers = pytest.importorskip("transformers", reason=NO_EXTRA)
  from safetensors.numpy import save_file
  spec, variables, model = _encoder(pool)
  sd, config = convert.to_hf(spec, variables, 16)
  save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
  (tmp_path / "config.json").write_text(json.dumps(config))
  net = transformers.ViTModel.from_pretrained(str(tmp_path), add_pooling_layer=False).eval()
  x = np.asarray(image.normalize(_images()))
  with torch.no_grad():
    tokens = net(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2)).last_hidden_state.numpy()
  theirs = tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(1)
  ours = model.apply(variables, x)
  assert np.max(np.abs(theirs - np.asarray(ours["pooled"]))) <= 1e-4
  assert np.max(np.abs(tokens - np.asarray(ours["tokens"]))) <= 1e-4      # every token, [CLS] first


def test_exported_tiny_mae_loads_into_timm_with_matching_features(mae_workdir, tmp_path):
  mae_run, _ = mae_workdir
  torch = pytest.importorskip("torch", reason=NO_EXTRA)
  timm = pytest.importorskip("timm", reason=NO_EXTRA)
  from safetensors.torch import load_file
  assert export.main([f"--workdir={mae_run}", "--format=timm", f"--out={tmp_path / 'mae.safetensors'}"]) == 0
  kwargs = json.loads((tmp_path / "mae.safetensors.timm.json").read_text())["kwargs"]
  net = timm.create_model(convert.TIMM_MODEL, **kwargs).eval()
  net.load_state_dict(load_file(str(tmp_path / "mae.safetensors")), strict=True)
  imgs = _images(8)
  with torch.no_grad():
    theirs = net(torch.from_numpy(np.asarray(image.normalize(imgs))).permute(0, 3, 1, 2)).numpy()
  assert np.max(np.abs(theirs - _features(mae_run, imgs))) <= 1e-4

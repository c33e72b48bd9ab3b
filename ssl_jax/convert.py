"""Conversions between ssl_jax encoders and the formats of timm and Hugging Face, pure numpy (no PyTorch).

- `to_timm(spec, variables, image_size)`: timm `VisionTransformer` (class token, pre-norm blocks, LayerNorm eps 1e-6,
  exact GELU, qkv bias): the patch embedding kernel `[p*p*3, D]` (patches flattened row, column, channel) becomes the
  conv weight `[D, 3, p, p]`; the fused q/k/v kernel `[D, H, 3, d]` becomes `qkv.weight` `[3D, D]`; Linear kernels
  are transposed; fixed sin-cos position embeddings are written out as `pos_embed` `[1, 1 + T, D]` with a zero [CLS]
  slot (the [CLS] token carries no position embedding, as in MAE). The pooled feature maps to timm's `global_pool`:
  "cls" -> "token", "gap" -> "avg" without `fc_norm`, "gap_fc_norm" -> "avg" with `fc_norm`; `timm_call` writes the
  `timm.create_model(...)` call. A ViT without a [CLS] token (I-JEPA) is timm's `class_token=False`, average pooled;
  LayerScale (`layer_scale`) is timm's `init_values` (`ls1.gamma`, `ls2.gamma`); a pretraining [MASK] token is left
  out (the released encoder never sees one). A ViT with a relative position bias (BEiT, data2vec) is timm's `Beit`
  with `use_shared_rel_pos_bias=True` (`rel_pos_bias.relative_position_bias_table`; `q_bias` and `v_bias`: Beit's
  attention has no k bias, and ours is dropped exactly, since a k bias adds the same q . b_k to every logit of a
  query; LayerScale `gamma_1`, `gamma_2`; `use_abs_pos_emb` unless `posemb="none"`); `timm_model_name` names the
  architecture the keyword arguments override. CLIP's LayerNorm before the blocks (`pre_norm`) is timm's
  `pre_norm=True`, whose patch embedding has no bias (ours is folded into the patches' position embeddings), tanh GELU
  timm's `act_layer="gelu_tanh"`; SigLIP's attention pooling exports with the whole model (`to_hf_image_text`).
- `to_hf(spec, variables, image_size)`: Hugging Face `ViTModel` (`config.json` + `model.safetensors`): separate q/k/v
  projections, `layer_norm_eps=1e-6`, no pooler; the features are `last_hidden_state[:, 0]` ("cls") or the mean of
  the patch tokens ("gap"); "gap_fc_norm" has no ViTModel equivalent (its final LayerNorm is always applied).
- `to_hf_image_text(image_spec, text_spec, params, image_size, end_of_text_id=...)`: a CLIP or SigLIP run as a
  Hugging Face `CLIPModel` / `SiglipModel` (both towers, projections, logit scale and bias; see its docstring).
- `to_hf_wav2vec2(spec, params, ...)`: a wav2vec 2.0 run as a Hugging Face `Wav2Vec2ForPreTraining` (the encoder,
  the quantizer, both projections; see its docstring).
- `load_timm_vit(path)`: a timm ViT safetensors file back into ssl_jax variables (learned position embeddings, with
  timm's [CLS] position folded into the [CLS] token), for `config.init_from=<file>.safetensors`.

`ssl_jax.export` (the command line) and `ssl_jax.pretrained` (`init_from`) both use these; neither imports the other.
"""

import dataclasses
import re

import numpy as np

from ssl_jax.models import audio
from ssl_jax.models import vit

TIMM_POOL = {"cls": ("token", False), "gap": ("avg", False), "gap_fc_norm": ("avg", True)}


def _vit_sizes(spec: dict) -> dict:
  if spec.get("arch", "vit") != "vit":
    raise ValueError(f"only ViT encoders convert to timm/Hugging Face ViTs; this one is {spec.get('arch')!r} "
                     "(use --format=npz).")
  kw = vit.vit_kwargs(**{k: spec.get(k) for k in ("variant", "patch_size", "width", "depth", "num_heads",
                                                   "mlp_dim")})
  return {k: kw[k] for k in ("patch_size", "width", "depth", "num_heads", "mlp_dim")}


def _class_token(spec: dict) -> bool:
  return spec.get("class_token") is not False


def _pos_table(spec: dict, vit_params: dict, grid: int, width: int) -> np.ndarray:
  """`[1, 1 + grid*grid, D]`: the position embedding with a zero [CLS] slot (`[1, grid*grid, D]` without [CLS])."""
  if spec.get("posemb", "sincos2d") == "learn":
    table = np.asarray(vit_params["pos_embedding"])[0]
  else:
    table = vit.sincos_2d(width, grid, grid)
  slot = [np.zeros((1, width), np.float32)] if _class_token(spec) else []
  return np.concatenate(slot + [table.astype(np.float32)])[None]


def to_timm(spec: dict, variables: dict, image_size: int) -> tuple[dict[str, np.ndarray], dict]:
  """(timm state dict of float32 numpy arrays, keyword arguments of `timm.create_model`) of a ViT encoder: a timm
  `VisionTransformer`, or a `Beit` for a ViT with a relative position bias (see the module docstring)."""
  s = _vit_sizes(spec)
  p, d, h = s["patch_size"], s["width"], s["num_heads"]
  beit = bool(spec.get("relative_position_bias"))
  if beit and not _class_token(spec):
    raise ValueError("timm's Beit always has a [CLS] token; a ViT with a relative position bias and "
                     "model.class_token=False has no timm equivalent (use --format=npz).")
  if image_size % p:
    raise ValueError(f"image size {image_size} is not divisible by the patch size {p}.")
  pool = spec.get("pool", "cls")
  if pool == "map":
    raise ValueError("a ViT pooled by attention pooling (model.pool='map', SigLIP's) has no timm export here; export "
                     "the whole run with --format=hf (a SiglipModel) or --format=npz.")
  vp = variables["params"]["vit"]
  f32 = lambda x: np.asarray(x, np.float32)
  absolute = spec.get("posemb", "sincos2d") != "none"
  out = {
      **({"cls_token": f32(vp["cls"])} if _class_token(spec) else {}),
      **({"pos_embed": _pos_table(spec, vp, image_size // p, d)} if absolute else {}),
      "patch_embed.proj.weight": f32(vp["embedding"]["kernel"]).reshape(p, p, 3, d).transpose(3, 2, 0, 1),
      "patch_embed.proj.bias": f32(vp["embedding"]["bias"]),
  }
  if beit:
    out["rel_pos_bias.relative_position_bias_table"] = f32(vp["rel_pos_bias"]["relative_position_bias_table"])
  enc = vp["encoder"]
  for i in range(s["depth"]):
    b, t = enc[f"block{i}"], f"blocks.{i}."
    qkv_bias = f32(b["attn"]["qkv_bias"])                                   # [heads, 3, head_dim]
    out.update({
        t + "norm1.weight": f32(b["ln1"]["scale"]), t + "norm1.bias": f32(b["ln1"]["bias"]),
        # Ours: [D, heads, 3, head_dim]; timm's fused Linear(D, 3D): [3D, D] with outputs ordered (q|k|v, heads, dim).
        t + "attn.qkv.weight": f32(b["attn"]["qkv_kernel"]).transpose(0, 2, 1, 3).reshape(d, 3 * d).T,
        t + "attn.proj.weight": f32(b["attn"]["out_kernel"]).reshape(d, d).T,
        t + "attn.proj.bias": f32(b["attn"]["out_bias"]),
        t + "norm2.weight": f32(b["ln2"]["scale"]), t + "norm2.bias": f32(b["ln2"]["bias"]),
        t + "mlp.fc1.weight": f32(b["mlp"]["fc1"]["kernel"]).T, t + "mlp.fc1.bias": f32(b["mlp"]["fc1"]["bias"]),
        t + "mlp.fc2.weight": f32(b["mlp"]["fc2"]["kernel"]).T, t + "mlp.fc2.bias": f32(b["mlp"]["fc2"]["bias"]),
    })
    if beit:                         # q and v biases only (the k bias is dropped: see the module docstring)
      out.update({t + "attn.q_bias": qkv_bias[:, 0].reshape(d), t + "attn.v_bias": qkv_bias[:, 2].reshape(d)})
    else:
      out[t + "attn.qkv.bias"] = qkv_bias.transpose(1, 0, 2).reshape(3 * d)
    if "ls1" in b:                   # LayerScale (timm's `init_values`)
      names = ("gamma_1", "gamma_2") if beit else ("ls1.gamma", "ls2.gamma")
      out.update({t + names[0]: f32(b["ls1"]), t + names[1]: f32(b["ls2"])})
  if spec.get("pre_norm"):           # CLIP's ln_pre: timm's `pre_norm=True`, whose patch embedding has no bias
    if not absolute:
      raise ValueError("a ViT with model.pre_norm and no position embedding has no timm equivalent (timm's pre-norm "
                       "patch embedding has no bias, which is folded into the position embedding here).")
    bias = out.pop("patch_embed.proj.bias")
    out["pos_embed"][:, int(_class_token(spec)):] += bias
    out.update({"norm_pre.weight": f32(vp["pre_norm"]["scale"]), "norm_pre.bias": f32(vp["pre_norm"]["bias"])})
  global_pool, fc_norm = TIMM_POOL[pool]
  if fc_norm:
    fcn = variables["params"]["fc_norm"]
    out.update({"fc_norm.weight": f32(fcn["scale"]), "fc_norm.bias": f32(fcn["bias"])})
  else:
    out.update({"norm.weight": f32(enc["norm"]["scale"]), "norm.bias": f32(enc["norm"]["bias"])})
  layer_scale = float(spec["layer_scale"]) if spec.get("layer_scale") is not None else None
  kwargs = dict(pretrained=False, num_classes=0, global_pool=global_pool, img_size=image_size, patch_size=p,
                embed_dim=d, depth=s["depth"], num_heads=h, mlp_ratio=s["mlp_dim"] / d, qkv_bias=True)
  if beit:
    # init_values 0, not None, without LayerScale: timm.create_model drops None keywords, and Beit's default is 0.1.
    kwargs.update(use_fc_norm=fc_norm, use_abs_pos_emb=absolute, use_rel_pos_bias=False,
                  use_shared_rel_pos_bias=True, init_values=layer_scale or 0.0)
  else:
    if spec.get("pre_norm"):
      kwargs["pre_norm"] = True
    if spec.get("tanh_gelu"):
      kwargs["act_layer"] = "gelu_tanh"
    kwargs.update(fc_norm=fc_norm, class_token=_class_token(spec),
                  **({"init_values": layer_scale} if layer_scale is not None else {}),
                  **({} if absolute else {"pos_embed": "none"}))
  return {k: np.ascontiguousarray(v) for k, v in out.items()}, kwargs


# The timm architectures the keyword arguments of `to_timm` are passed to: they override all of their sizes.
TIMM_MODEL = "vit_base_patch16_224"
TIMM_BEIT_MODEL = "beit_base_patch16_224"


def timm_model_name(kwargs: dict) -> str:
  """The timm architecture `to_timm`'s keyword arguments `kwargs` build: a `VisionTransformer`, or a `Beit` for a ViT
  with a relative position bias."""
  return TIMM_BEIT_MODEL if kwargs.get("use_shared_rel_pos_bias") else TIMM_MODEL


def timm_call(kwargs: dict) -> str:
  """The `timm.create_model(...)` call, as Python source, that builds the exported encoder."""
  args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
  return f"timm.create_model({timm_model_name(kwargs)!r}, {args})"


def to_hf(spec: dict, variables: dict, image_size: int) -> tuple[dict[str, np.ndarray], dict]:
  """(Hugging Face `ViTModel` state dict, its `config.json` as a dict) of a ViT encoder."""
  pool = spec.get("pool", "cls")
  if spec.get("relative_position_bias"):
    raise ValueError("a ViT with a relative position bias (BEiT, data2vec) has no Hugging Face ViTModel equivalent; "
                     "export it with --format=timm (timm's Beit).")
  if spec.get("layer_scale") is not None:
    raise ValueError("a ViT with LayerScale (model.layer_scale) has no Hugging Face ViTModel equivalent; export it with "
                     "--format=timm.")
  if spec.get("pre_norm") or spec.get("tanh_gelu") or pool == "map":
    raise ValueError("a ViT with a LayerNorm before its blocks, tanh GELU or attention pooling (CLIP's, SigLIP's) has "
                     "no Hugging Face ViTModel equivalent; export the whole run with --format=hf (a CLIPModel or "
                     "SiglipModel) or its image tower with --format=timm.")
  if not _class_token(spec):
    raise ValueError("a ViT without a [CLS] token (model.class_token=False, e.g. I-JEPA) has no Hugging Face "
                     "ViTModel equivalent (ViTModel always prepends one); export it with --format=timm.")
  if pool == "gap_fc_norm":
    raise ValueError("a 'gap_fc_norm' encoder has no Hugging Face ViTModel equivalent (ViTModel always applies its "
                     "final LayerNorm to the tokens); export it with --format=timm.")
  timm_sd, kw = to_timm(spec, variables, image_size)
  d = kw["embed_dim"]
  out = {
      "embeddings.cls_token": timm_sd["cls_token"],
      "embeddings.position_embeddings": timm_sd["pos_embed"],
      "embeddings.patch_embeddings.projection.weight": timm_sd["patch_embed.proj.weight"],
      "embeddings.patch_embeddings.projection.bias": timm_sd["patch_embed.proj.bias"],
      "layernorm.weight": timm_sd["norm.weight"], "layernorm.bias": timm_sd["norm.bias"],
  }
  for i in range(kw["depth"]):
    t, l = f"blocks.{i}.", f"encoder.layer.{i}."
    qkv_w, qkv_b = timm_sd[t + "attn.qkv.weight"], timm_sd[t + "attn.qkv.bias"]
    for j, name in enumerate(("query", "key", "value")):
      out[l + f"attention.attention.{name}.weight"] = np.ascontiguousarray(qkv_w[j * d:(j + 1) * d])
      out[l + f"attention.attention.{name}.bias"] = np.ascontiguousarray(qkv_b[j * d:(j + 1) * d])
    for ours, theirs in (("attn.proj", "attention.output.dense"), ("norm1", "layernorm_before"),
                         ("norm2", "layernorm_after"), ("mlp.fc1", "intermediate.dense"),
                         ("mlp.fc2", "output.dense")):
      out[l + theirs + ".weight"] = timm_sd[t + ours + ".weight"]
      out[l + theirs + ".bias"] = timm_sd[t + ours + ".bias"]
  config = dict(model_type="vit", architectures=["ViTModel"], hidden_size=d, num_hidden_layers=kw["depth"],
                num_attention_heads=kw["num_heads"], intermediate_size=int(round(kw["mlp_ratio"] * d)),
                hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-6,
                image_size=image_size, patch_size=kw["patch_size"], num_channels=3, qkv_bias=True,
                ssl_jax_pool=pool)
  return out, config


def load_timm_vit(path: str, *, num_heads: int | None = None, pool: str = "cls") -> tuple[dict, dict]:
  """(spec, variables) of an ssl_jax ViT from a timm ViT safetensors file (learned positions; with or without a
  class token, the latter pooled by `pool`, which must then be "gap").

  `num_heads` cannot be read from the weights; default: width / 64 (every standard ViT but ViT-H, which has 16).
  """
  from safetensors.numpy import load_file
  sd = {k: np.asarray(v, np.float32) for k, v in load_file(path).items()}
  if "pos_embed" not in sd or "blocks.0.attn.qkv.weight" not in sd:
    raise ValueError(f"{path} is not a timm VisionTransformer state dict (no pos_embed / blocks.0.attn.qkv.weight).")
  d, _, p, _ = sd["patch_embed.proj.weight"].shape
  depth = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m)
  mlp = sd["blocks.0.mlp.fc1.weight"].shape[0]
  heads = num_heads or (16 if d == 1280 else max(1, d // 64))
  if d % heads:
    raise ValueError(f"width {d} is not divisible by num_heads={heads}; pass the model's head count.")
  hd = d // heads
  pos = sd["pos_embed"]
  has_cls = "cls_token" in sd
  vp = {
      # timm adds pos_embed[:, 0] to the [CLS] token; ours adds nothing.
      **({"cls": sd["cls_token"] + pos[:, :1]} if has_cls else {}),
      "pos_embedding": pos[:, 1:] if has_cls else pos,
      "embedding": {"kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0).reshape(p * p * 3, d),
                    "bias": sd["patch_embed.proj.bias"]},
  }
  enc = {}
  for i in range(depth):
    t = f"blocks.{i}."
    enc[f"block{i}"] = {
        "ln1": {"scale": sd[t + "norm1.weight"], "bias": sd[t + "norm1.bias"]},
        "ln2": {"scale": sd[t + "norm2.weight"], "bias": sd[t + "norm2.bias"]},
        "attn": {"qkv_kernel": sd[t + "attn.qkv.weight"].T.reshape(d, 3, heads, hd).transpose(0, 2, 1, 3),
                 "qkv_bias": sd[t + "attn.qkv.bias"].reshape(3, heads, hd).transpose(1, 0, 2),
                 "out_kernel": sd[t + "attn.proj.weight"].T.reshape(heads, hd, d),
                 "out_bias": sd[t + "attn.proj.bias"]},
        "mlp": {"fc1": {"kernel": sd[t + "mlp.fc1.weight"].T, "bias": sd[t + "mlp.fc1.bias"]},
                "fc2": {"kernel": sd[t + "mlp.fc2.weight"].T, "bias": sd[t + "mlp.fc2.bias"]}},
    }
    if t + "ls1.gamma" in sd:
      enc[f"block{i}"].update(ls1=sd[t + "ls1.gamma"], ls2=sd[t + "ls2.gamma"])
  params = {"vit": vp}
  if "norm.weight" in sd:
    enc["norm"] = {"scale": sd["norm.weight"], "bias": sd["norm.bias"]}
  if "fc_norm.weight" in sd:
    params["fc_norm"] = {"scale": sd["fc_norm.weight"], "bias": sd["fc_norm.bias"]}
  vp["encoder"] = enc
  spec = dict(arch="vit", pool=pool, patch_size=int(p), width=int(d), depth=depth, num_heads=heads, mlp_dim=int(mlp),
              posemb="learn", **({} if has_cls else {"class_token": False}),
              # LayerScale's initial value only shapes initialisation; any value builds the same parameters.
              **({"layer_scale": 1.0} if "blocks.0.ls1.gamma" in sd else {}))
  return spec, {"params": params}


def _text_blocks(params: dict, depth: int) -> list[dict]:
  """Each block's arrays of a `TextTransformer`'s params, as numpy float32: q/k/v kernels `[D, D]` and biases `[D]`
  (heads concatenated), the output kernel `[D, D]`, the MLP kernels, the two LayerNorms."""
  f32 = lambda x: np.asarray(x, np.float32)
  blocks = []
  for i in range(depth):
    b = params["encoder"][f"block{i}"]
    qkv, qkv_b = f32(b["attn"]["qkv_kernel"]), f32(b["attn"]["qkv_bias"])       # [D, H, 3, d], [H, 3, d]
    d = qkv.shape[0]
    blocks.append(dict(
        q=qkv[:, :, 0].reshape(d, d), k=qkv[:, :, 1].reshape(d, d), v=qkv[:, :, 2].reshape(d, d),
        q_b=qkv_b[:, 0].reshape(d), k_b=qkv_b[:, 1].reshape(d), v_b=qkv_b[:, 2].reshape(d),
        out=f32(b["attn"]["out_kernel"]).reshape(d, d), out_b=f32(b["attn"]["out_bias"]),
        ln1=(f32(b["ln1"]["scale"]), f32(b["ln1"]["bias"])), ln2=(f32(b["ln2"]["scale"]), f32(b["ln2"]["bias"])),
        fc1=f32(b["mlp"]["fc1"]["kernel"]), fc1_b=f32(b["mlp"]["fc1"]["bias"]),
        fc2=f32(b["mlp"]["fc2"]["kernel"]), fc2_b=f32(b["mlp"]["fc2"]["bias"])))
  return blocks


def to_hf_gpt2(spec: dict, variables: dict) -> tuple[dict[str, np.ndarray], dict]:
  """(Hugging Face `GPT2LMHeadModel` state dict, its `config.json` as a dict) of a GPT-2 `TextTransformer`
  (`spec`: its fields). GPT-2's `Conv1D` weights are `[in, out]`, as Flax kernels; `c_attn` is q|k|v, each with the
  heads concatenated; the output layer is tied to `wte`."""
  p = variables["params"]
  f32 = lambda x: np.asarray(x, np.float32)
  sd = {"transformer.wte.weight": f32(p["token_embedding"]), "transformer.wpe.weight": f32(p["position_embedding"]),
        "transformer.ln_f.weight": f32(p["encoder"]["norm"]["scale"]),
        "transformer.ln_f.bias": f32(p["encoder"]["norm"]["bias"])}
  for i, b in enumerate(_text_blocks(p, spec["depth"])):
    h = f"transformer.h.{i}."
    sd.update({h + "ln_1.weight": b["ln1"][0], h + "ln_1.bias": b["ln1"][1],
               h + "attn.c_attn.weight": np.concatenate([b["q"], b["k"], b["v"]], axis=1),
               h + "attn.c_attn.bias": np.concatenate([b["q_b"], b["k_b"], b["v_b"]]),
               h + "attn.c_proj.weight": b["out"], h + "attn.c_proj.bias": b["out_b"],
               h + "ln_2.weight": b["ln2"][0], h + "ln_2.bias": b["ln2"][1],
               h + "mlp.c_fc.weight": b["fc1"], h + "mlp.c_fc.bias": b["fc1_b"],
               h + "mlp.c_proj.weight": b["fc2"], h + "mlp.c_proj.bias": b["fc2_b"]})
  sd["lm_head.weight"] = sd["transformer.wte.weight"]
  config = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=spec["vocab_size"],
                n_positions=spec["max_length"], n_embd=spec["width"], n_layer=spec["depth"], n_head=spec["num_heads"],
                n_inner=spec["mlp_dim"], activation_function="gelu_new", layer_norm_epsilon=1e-5,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}, config


def to_hf_bert(spec: dict, variables: dict) -> tuple[dict[str, np.ndarray], dict]:
  """(Hugging Face `BertForMaskedLM` state dict, its `config.json` as a dict) of a BERT `TextTransformer`. Torch
  `Linear` weights are `[out, in]` (Flax kernels transposed); the fused q/k/v kernel splits into query, key and
  value; the masked-LM decoder is tied to the word embeddings, with its own bias."""
  p = variables["params"]
  f32 = lambda x: np.asarray(x, np.float32)
  e = "bert.embeddings."
  sd = {e + "word_embeddings.weight": f32(p["token_embedding"]),
        e + "position_embeddings.weight": f32(p["position_embedding"]),
        e + "LayerNorm.weight": f32(p["embedding_norm"]["scale"]),
        e + "LayerNorm.bias": f32(p["embedding_norm"]["bias"])}
  types = spec.get("type_vocab_size") or 0
  sd[e + "token_type_embeddings.weight"] = (f32(p["type_embedding"]) if types else
                                            np.zeros((1, spec["width"]), np.float32))
  for i, b in enumerate(_text_blocks(p, spec["depth"])):
    l = f"bert.encoder.layer.{i}."
    for name in ("q", "k", "v"):
      full = {"q": "query", "k": "key", "v": "value"}[name]
      sd[l + f"attention.self.{full}.weight"] = b[name].T
      sd[l + f"attention.self.{full}.bias"] = b[name + "_b"]
    sd.update({l + "attention.output.dense.weight": b["out"].T, l + "attention.output.dense.bias": b["out_b"],
               l + "attention.output.LayerNorm.weight": b["ln1"][0], l + "attention.output.LayerNorm.bias": b["ln1"][1],
               l + "intermediate.dense.weight": b["fc1"].T, l + "intermediate.dense.bias": b["fc1_b"],
               l + "output.dense.weight": b["fc2"].T, l + "output.dense.bias": b["fc2_b"],
               l + "output.LayerNorm.weight": b["ln2"][0], l + "output.LayerNorm.bias": b["ln2"][1]})
  c = "cls.predictions."
  sd.update({c + "transform.dense.weight": f32(p["mlm_dense"]["kernel"]).T, c + "transform.dense.bias":
             f32(p["mlm_dense"]["bias"]), c + "transform.LayerNorm.weight": f32(p["mlm_norm"]["scale"]),
             c + "transform.LayerNorm.bias": f32(p["mlm_norm"]["bias"]), c + "bias": f32(p["mlm_bias"]),
             c + "decoder.weight": sd[e + "word_embeddings.weight"], c + "decoder.bias": f32(p["mlm_bias"])})
  config = dict(model_type="bert", architectures=["BertForMaskedLM"], vocab_size=spec["vocab_size"],
                hidden_size=spec["width"], num_hidden_layers=spec["depth"], num_attention_heads=spec["num_heads"],
                intermediate_size=spec["mlp_dim"], hidden_act="gelu", hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, max_position_embeddings=spec["max_length"],
                type_vocab_size=max(types, 1), layer_norm_eps=1e-12, tie_word_embeddings=True)
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}, config


def _hf_vision(spec: dict, params: dict, image_size: int, *, siglip: bool) -> dict[str, np.ndarray]:
  """The `vision_model.*` arrays of a Hugging Face `CLIPModel` / `SiglipModel` from an ssl_jax ViT tower (`params`:
  the tower's params; `spec`: its keywords). CLIP's patch convolution has no bias: ours is folded into the patch
  positions' embeddings (its [CLS] position stays 0, as ours adds none)."""
  s = _vit_sizes(spec)
  p, d = s["patch_size"], s["width"]
  if image_size % p:
    raise ValueError(f"image size {image_size} is not divisible by the patch size {p}.")
  f32 = lambda x: np.asarray(x, np.float32)
  vp = params["vit"]
  grid = image_size // p
  pos = _pos_table(spec, vp, grid, d)[0] if spec.get("posemb", "sincos2d") != "none" else np.zeros((1, d), np.float32)
  bias = f32(vp["embedding"]["bias"])
  v = "vision_model."
  out = {v + "embeddings.patch_embedding.weight": f32(vp["embedding"]["kernel"]).reshape(p, p, 3, d).transpose(
      3, 2, 0, 1)}
  if siglip:
    out[v + "embeddings.patch_embedding.bias"] = bias
    out[v + "embeddings.position_embedding.weight"] = pos
  else:
    out[v + "embeddings.class_embedding"] = f32(vp["cls"]).reshape(d)
    out[v + "embeddings.position_embedding.weight"] = np.concatenate([pos[:1], pos[1:] + bias])
    out[v + "pre_layrnorm.weight"] = f32(vp["pre_norm"]["scale"])
    out[v + "pre_layrnorm.bias"] = f32(vp["pre_norm"]["bias"])
  for i, b in enumerate(_vit_blocks(vp["encoder"], s["depth"])):
    out.update(_hf_layer(b, f"{v}encoder.layers.{i}."))
  norm = vp["encoder"]["norm"]
  out.update({v + "post_layernorm.weight": f32(norm["scale"]), v + "post_layernorm.bias": f32(norm["bias"])})
  if siglip:
    m = params["map_head"]
    kernel = lambda name: f32(m[f"{name}_kernel"]).reshape(d, d)
    out.update({
        v + "head.probe": f32(m["probe"]),
        v + "head.attention.in_proj_weight": np.concatenate([kernel(n).T for n in ("query", "key", "value")]),
        v + "head.attention.in_proj_bias": np.concatenate([f32(m[f"{n}_bias"]).reshape(d)
                                                           for n in ("query", "key", "value")]),
        v + "head.attention.out_proj.weight": f32(m["out_kernel"]).reshape(d, d).T,
        v + "head.attention.out_proj.bias": f32(m["out_bias"]),
        v + "head.layernorm.weight": f32(m["norm"]["scale"]), v + "head.layernorm.bias": f32(m["norm"]["bias"]),
        **{v + f"head.mlp.{fc}.weight": f32(m["mlp"][fc]["kernel"]).T for fc in ("fc1", "fc2")},
        **{v + f"head.mlp.{fc}.bias": f32(m["mlp"][fc]["bias"]) for fc in ("fc1", "fc2")},
    })
  return out


def _vit_blocks(encoder: dict, depth: int) -> list[dict]:
  """A ViT's blocks as `_text_blocks` gives a text transformer's (the same block layout)."""
  return _text_blocks({"encoder": encoder}, depth)


def _hf_layer(b: dict, prefix: str) -> dict[str, np.ndarray]:
  """A pre-LayerNorm block in Hugging Face's CLIP / SigLIP encoder-layer names (torch `Linear`: `[out, in]`)."""
  out = {prefix + "layer_norm1.weight": b["ln1"][0], prefix + "layer_norm1.bias": b["ln1"][1],
         prefix + "layer_norm2.weight": b["ln2"][0], prefix + "layer_norm2.bias": b["ln2"][1],
         prefix + "self_attn.out_proj.weight": b["out"].T, prefix + "self_attn.out_proj.bias": b["out_b"],
         prefix + "mlp.fc1.weight": b["fc1"].T, prefix + "mlp.fc1.bias": b["fc1_b"],
         prefix + "mlp.fc2.weight": b["fc2"].T, prefix + "mlp.fc2.bias": b["fc2_b"]}
  for name in ("q", "k", "v"):
    out[prefix + f"self_attn.{name}_proj.weight"] = b[name].T
    out[prefix + f"self_attn.{name}_proj.bias"] = b[name + "_b"]
  return out


def _hf_text(spec: dict, params: dict) -> dict[str, np.ndarray]:
  """The `text_model.*` arrays of a Hugging Face `CLIPModel` / `SiglipModel` from a CLIP / SigLIP text tower."""
  f32 = lambda x: np.asarray(x, np.float32)
  t = "text_model."
  out = {t + "embeddings.token_embedding.weight": f32(params["token_embedding"]),
         t + "embeddings.position_embedding.weight": f32(params["position_embedding"]),
         t + "final_layer_norm.weight": f32(params["encoder"]["norm"]["scale"]),
         t + "final_layer_norm.bias": f32(params["encoder"]["norm"]["bias"])}
  for i, b in enumerate(_text_blocks(params, spec["depth"])):
    out.update(_hf_layer(b, f"{t}encoder.layers.{i}."))
  return out


def to_hf_image_text(image_spec: dict, text_spec: dict, params: dict, image_size: int, *,
                     end_of_text_id: int) -> tuple[dict[str, np.ndarray], dict]:
  """(Hugging Face `CLIPModel` or `SiglipModel` state dict, its `config.json` as a dict) of a CLIP or SigLIP run's
  params (`{"image", "text", "image_projection"?, "text_projection", "logit_scale", "logit_bias"?}`), by the text
  tower's style.

  CLIP: the ViT needs `pre_norm` (`pre_layrnorm`) and [CLS] pooling; `visual_projection` / `text_projection` without
  bias; the text pooled at the first `end_of_text_id` token (`eos_token_id`; the captions end with it and are padded
  with it). SigLIP: no [CLS], attention pooling (`vision_model.head`), no image projection, the text pooled at the
  last position through `text_model.head`. Both towers' GELUs are the configs' (`hidden_act`), the ViT's LayerNorm
  eps 1e-6, the text tower's its style's."""
  siglip = text_spec.get("style") == "siglip"
  if siglip and (image_spec.get("pool") != "map" or "image_projection" in params):
    raise ValueError("a SiglipModel pools its image tower with attention pooling and has no image projection: the "
                     "run needs model.pool='map' and method.image_projection=False.")
  if not siglip and (image_spec.get("pool", "cls") != "cls" or not image_spec.get("pre_norm")):
    raise ValueError("a CLIPModel's vision tower has a LayerNorm before its blocks and is pooled by its [CLS] "
                     "token: the run needs model.pre_norm=True and model.pool='cls'.")
  f32 = lambda x: np.asarray(x, np.float32)
  sd = {**_hf_vision(image_spec, params["image"], image_size, siglip=siglip), **_hf_text(text_spec, params["text"]),
        "logit_scale": f32(params["logit_scale"]).reshape(1) if siglip else f32(params["logit_scale"])}
  proj = params["text_projection"]["dense"]
  if siglip:
    sd.update({"text_model.head.weight": f32(proj["kernel"]).T, "text_model.head.bias": f32(proj["bias"]),
               "logit_bias": f32(params["logit_bias"]).reshape(1)})
  else:
    sd.update({"text_projection.weight": f32(proj["kernel"]).T,
               "visual_projection.weight": f32(params["image_projection"]["dense"]["kernel"]).T})
  s = _vit_sizes(image_spec)
  act = lambda tanh: "gelu_pytorch_tanh" if tanh else "gelu"
  vision = dict(hidden_size=s["width"], intermediate_size=s["mlp_dim"], num_hidden_layers=s["depth"],
                num_attention_heads=s["num_heads"], image_size=image_size, patch_size=s["patch_size"], num_channels=3,
                hidden_act=act(image_spec.get("tanh_gelu")), layer_norm_eps=1e-6, attention_dropout=0.0)
  text = dict(vocab_size=text_spec["vocab_size"], hidden_size=text_spec["width"],
              intermediate_size=text_spec["mlp_dim"], num_hidden_layers=text_spec["depth"], num_attention_heads=text_spec["num_heads"],
              max_position_embeddings=text_spec["max_length"], hidden_act=act(siglip),
              layer_norm_eps=1e-6 if siglip else 1e-5, attention_dropout=0.0, eos_token_id=end_of_text_id,
              pad_token_id=end_of_text_id)
  if siglip:
    text["projection_size"] = int(sd["text_model.head.weight"].shape[0])
    config = dict(model_type="siglip", architectures=["SiglipModel"], vision_config=vision, text_config=text)
  else:
    dim = int(sd["text_projection.weight"].shape[0])
    text["bos_token_id"] = end_of_text_id
    config = dict(model_type="clip", architectures=["CLIPModel"], projection_dim=dim, vision_config=vision,
                  text_config=dict(text, projection_dim=dim), logit_scale_init_value=float(sd["logit_scale"]))
  out = {k: np.ascontiguousarray(v) for k, v in sd.items()}     # (which makes 0-d arrays 1-d)
  if not siglip:
    out["logit_scale"] = np.asarray(sd["logit_scale"], np.float32).reshape(())     # CLIP's is a 0-d parameter
  return out, config


def to_hf_wav2vec2(spec: dict, params: dict, *, final_dim: int | None = None, latent_groups: int = 2,
                   latent_vars: int = 320, latent_dim: int | None = None,
                   sample_rate: int = 16000) -> tuple[dict[str, np.ndarray], dict]:
  """(Hugging Face `Wav2Vec2ForPreTraining` state dict, its `config.json` as a dict) of a wav2vec 2.0 run.

  `spec`: the encoder's `backbone.create` keywords (arch "wav2vec2"); `params`: the method's params, `{"encoder",
  "quantizer", "project_q", "final_proj"}`, or the encoder's alone (`{"feature_encoder", ...}`: a
  `Wav2Vec2Model`-only export, `final_dim` and the quantizer then unused). Convolution kernels `[k, in, out]` become
  torch's `[out, in, k]`; the position convolution keeps its weight norm (`weight_g` `[1, 1, k]`, `weight_v`); the
  fused q/k/v kernel splits into `q_proj`, `k_proj`, `v_proj`; a post-LayerNorm block's two LayerNorms are HF's
  `layer_norm` and `final_layer_norm`, as are a pre-LayerNorm ("stable") block's; the codewords are
  `quantizer.codevectors` `[1, G V, d / G]`, our `final_proj` HF's `project_hid`. `Wav2Vec2Model.from_pretrained`
  reads the same directory (the `wav2vec2.` part). Dropouts are 0 in the config; SpecAugment is HF's fine-tuning
  default (time masks 0.05 x 10 frames in training mode, as facebook/wav2vec2-base's config), which also lets a
  given `mask_time_indices` place the mask embedding."""
  whole = "encoder" in params
  enc = params["encoder"] if whole else params
  defaults = {f.name: f.default for f in dataclasses.fields(audio.Wav2Vec2Encoder) if f.name not in ("parent", "name")}
  s = dict(defaults, **{k: v for k, v in spec.items() if k != "arch" and v is not None})
  conv_layers = tuple(tuple(c) for c in s["conv_layers"])
  f32 = lambda x: np.asarray(x, np.float32)
  w = "wav2vec2."
  sd = {}
  for i in range(len(conv_layers)):
    conv = enc["feature_encoder"][f"conv{i}"]
    sd[w + f"feature_extractor.conv_layers.{i}.conv.weight"] = f32(conv["kernel"]).transpose(2, 1, 0)
    if "bias" in conv:
      sd[w + f"feature_extractor.conv_layers.{i}.conv.bias"] = f32(conv["bias"])
    norm = enc["feature_encoder"].get(f"norm{i}")
    if norm is not None:
      sd[w + f"feature_extractor.conv_layers.{i}.layer_norm.weight"] = f32(norm["scale"])
      sd[w + f"feature_extractor.conv_layers.{i}.layer_norm.bias"] = f32(norm["bias"])
  sd.update({w + "feature_projection.layer_norm.weight": f32(enc["feature_norm"]["scale"]),
             w + "feature_projection.layer_norm.bias": f32(enc["feature_norm"]["bias"]),
             w + "feature_projection.projection.weight": f32(enc["feature_projection"]["kernel"]).T,
             w + "feature_projection.projection.bias": f32(enc["feature_projection"]["bias"]),
             w + "masked_spec_embed": f32(enc["mask_embedding"]),
             w + "encoder.pos_conv_embed.conv.weight_v": f32(enc["pos_conv"]["weight_v"]).transpose(2, 1, 0),
             w + "encoder.pos_conv_embed.conv.weight_g": f32(enc["pos_conv"]["weight_g"]).reshape(1, 1, -1),
             w + "encoder.pos_conv_embed.conv.bias": f32(enc["pos_conv"]["bias"])})
  final = enc["transformer"]["norm"] if s["layer_norm_first"] else enc["encoder_norm"]
  sd[w + "encoder.layer_norm.weight"], sd[w + "encoder.layer_norm.bias"] = f32(final["scale"]), f32(final["bias"])
  for i, b in enumerate(_text_blocks({"encoder": enc["transformer"]}, s["depth"])):
    l = w + f"encoder.layers.{i}."
    for name in ("q", "k", "v"):
      sd[l + f"attention.{name}_proj.weight"], sd[l + f"attention.{name}_proj.bias"] = b[name].T, b[name + "_b"]
    sd.update({l + "attention.out_proj.weight": b["out"].T, l + "attention.out_proj.bias": b["out_b"],
               l + "layer_norm.weight": b["ln1"][0], l + "layer_norm.bias": b["ln1"][1],
               l + "feed_forward.intermediate_dense.weight": b["fc1"].T,
               l + "feed_forward.intermediate_dense.bias": b["fc1_b"],
               l + "feed_forward.output_dense.weight": b["fc2"].T, l + "feed_forward.output_dense.bias": b["fc2_b"],
               l + "final_layer_norm.weight": b["ln2"][0], l + "final_layer_norm.bias": b["ln2"][1]})
  latent_dim = latent_dim or final_dim or 256
  final_dim = final_dim or latent_dim
  if whole:
    q = params["quantizer"]
    sd.update({"quantizer.codevectors": f32(q["codevectors"])[None],
               "quantizer.weight_proj.weight": f32(q["weight_proj"]["kernel"]).T,
               "quantizer.weight_proj.bias": f32(q["weight_proj"]["bias"]),
               "project_q.weight": f32(params["project_q"]["kernel"]).T, "project_q.bias": f32(params["project_q"]["bias"]),
               "project_hid.weight": f32(params["final_proj"]["kernel"]).T,
               "project_hid.bias": f32(params["final_proj"]["bias"])})
  else:
    sd = {k[len(w):]: v for k, v in sd.items()}
  channels, kernels, strides = zip(*conv_layers)
  config = dict(
      model_type="wav2vec2", architectures=["Wav2Vec2ForPreTraining" if whole else "Wav2Vec2Model"],
      hidden_size=s["width"], num_hidden_layers=s["depth"], num_attention_heads=s["num_heads"],
      intermediate_size=s["mlp_dim"], hidden_act="gelu", layer_norm_eps=1e-5,
      feat_extract_norm="layer" if s["extractor_mode"] == "layer_norm" else "group", feat_extract_activation="gelu",
      conv_dim=list(channels), conv_kernel=list(kernels), conv_stride=list(strides), conv_bias=bool(s["conv_bias"]),
      num_conv_pos_embeddings=s["pos_conv_kernel"], num_conv_pos_embedding_groups=s["pos_conv_groups"],
      do_stable_layer_norm=bool(s["layer_norm_first"]), hidden_dropout=0.0, attention_dropout=0.0,
      activation_dropout=0.0, feat_proj_dropout=0.0, feat_quantizer_dropout=0.0, final_dropout=0.0,
      layerdrop=0.0, apply_spec_augment=True, mask_time_prob=0.05, mask_time_length=10, mask_feature_prob=0.0,
      num_codevector_groups=latent_groups,
      num_codevectors_per_group=latent_vars, codevector_dim=latent_dim, proj_codevector_dim=final_dim,
      vocab_size=32, sampling_rate=sample_rate)
  return {k: np.ascontiguousarray(v) for k, v in sd.items()}, config

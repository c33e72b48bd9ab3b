"""Encoders out of ssl_jax: timm, Hugging Face or npz files from a pretraining workdir.

    python -m ssl_jax.export --workdir=/tmp/mae_tiny --format=timm --out=/tmp/mae_tiny.safetensors
    python -m ssl_jax.export --workdir=/tmp/mae_tiny --format=hf --out=/tmp/mae_tiny_hf        # a directory
    python -m ssl_jax.export --workdir=/tmp/mae_tiny --format=npz --out=/tmp/mae_tiny.npz
    python -m ssl_jax.export --workdir=/tmp/gpt_tiny --format=hf --out=/tmp/gpt_tiny_hf  # GPT2LMHeadModel + tokenizer
    python -m ssl_jax.export --workdir=/tmp/clip_tiny --format=hf --out=/tmp/clip_tiny_hf  # CLIPModel / SiglipModel
    python -m ssl_jax.export --workdir=/tmp/wav2vec2_tiny --format=hf --out=/tmp/wav2vec2_tiny_hf  # Wav2Vec2ForPreTraining

The encoder is the one the pretraining method releases (its `encoders(...)["image"]` or `["text"]`, or the tower
`--tower` names: MAE's encoder, DINO's teacher, GPT's or BERT's whole language model with its output layer) from the newest intact checkpoint of the workdir (`ssl_jax.pretrained`), converted
by `ssl_jax.convert` (pure numpy: no PyTorch needed to write). The exact `timm.create_model(...)` call is printed and
written beside a timm file (`<out>.timm.json`); npz holds every variable under its '/'-joined path, plus the
`backbone.create` keywords as JSON under `__spec__`.
"""

import json
import sys

import numpy as np
from etils import epath

from ssl_jax import convert
from ssl_jax import pretrained
from ssl_jax.runtime import workdir as workdir_lib


def export(workdir: str, fmt: str, out: str, tower: str | None = None) -> str:
  """Writes the encoder `tower` of `workdir` (default: the run's image or text encoder) in `fmt` ("timm", "hf",
  "npz"; a text model "hf" or "npz") to `out`; returns a line saying how to load it."""
  if fmt not in ("timm", "hf", "npz"):
    raise ValueError(f"--format={fmt!r}: use 'timm', 'hf' or 'npz'.")
  out = workdir_lib.absolute(out)
  source = pretrained.open_workdir(workdir, tower)
  spec, variables = source.spec, source.variables()
  if fmt == "npz":
    flat = {k: np.asarray(v) for k, v in pretrained.flatten(variables).items()}
    flat["__spec__"] = np.asarray(json.dumps(spec))
    with epath.Path(out).open("wb") as f:
      np.savez(f, **flat)
    return f"numpy.load({out!r}): {len(flat) - 1} arrays by '/'-joined path; keywords in ['__spec__']"
  from safetensors.numpy import save
  if fmt == "hf" and tower is None and source.method.embeds_pairs:
    return _export_image_text(source, epath.Path(out), save)
  if spec.get("arch") == "wav2vec2":
    if fmt != "hf":
      raise ValueError(f"--format={fmt!r} is for images; a wav2vec 2.0 encoder exports as 'hf' (or 'npz').")
    return _export_audio(source, epath.Path(out), save)
  if spec.get("arch") == "text":
    if fmt != "hf":
      raise ValueError(f"--format={fmt!r} is for images; a text model exports as 'hf' (or 'npz').")
    return _export_text(workdir, spec, variables, epath.Path(out), save)
  image_size = source.config.data.image.size
  if fmt == "timm":
    sd, kwargs = convert.to_timm(spec, variables, image_size)
    epath.Path(out).write_bytes(save(sd))
    call = convert.timm_call(kwargs)
    epath.Path(out + ".timm.json").write_text(json.dumps(dict(model_name=convert.timm_model_name(kwargs),
                                                              kwargs=kwargs)))
    return (f"model = {call}\nmodel.load_state_dict(safetensors.torch.load_file({out!r}), strict=True)\n"
            "features = model(images)   # images: float32 NCHW, ImageNet mean/std normalised")
  sd, config = convert.to_hf(spec, variables, image_size)
  directory = epath.Path(out)
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "model.safetensors").write_bytes(save(sd, metadata={"format": "pt"}))
  (directory / "config.json").write_text(json.dumps(config, indent=2))
  feature = "last_hidden_state[:, 0]" if spec.get("pool", "cls") == "cls" else "last_hidden_state[:, 1:].mean(1)"
  return (f"model = transformers.ViTModel.from_pretrained({out!r}, add_pooling_layer=False)\n"
          f"features = model(pixel_values=images).{feature}")


def _export_text(workdir: str, spec: dict, variables: dict, directory: epath.Path, save) -> str:
  """A Hugging Face `GPT2LMHeadModel` / `BertForMaskedLM` directory with the run's tokenizer (a fast tokenizer:
  `tokenizer.json` and `tokenizer_config.json`)."""
  tokenizer = epath.Path(workdir) / "tokenizer.json"
  if not tokenizer.exists():
    raise FileNotFoundError(f"{tokenizer} is missing: a text run writes its tokenizer there when it starts (runs "
                            "of an earlier ssl_jax did not); run the config again in that workdir to write it.")
  from tokenizers import Tokenizer
  tok = Tokenizer.from_str(tokenizer.read_text())
  gpt = spec["style"] == "gpt2"
  sd, config = (convert.to_hf_gpt2 if gpt else convert.to_hf_bert)(spec, variables)
  if gpt:
    end = tok.token_to_id("<|endoftext|>")
    config.update(bos_token_id=end, eos_token_id=end)
    special = dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")
  else:
    config.update(pad_token_id=tok.token_to_id("[PAD]"))
    special = dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "model.safetensors").write_bytes(save(sd, metadata={"format": "pt"}))
  (directory / "config.json").write_text(json.dumps(config, indent=2))
  (directory / "tokenizer.json").write_text(tok.to_str())
  (directory / "tokenizer_config.json").write_text(json.dumps(dict(
      tokenizer_class="PreTrainedTokenizerFast", model_max_length=spec["max_length"], **special), indent=2))
  model = "GPT2LMHeadModel" if gpt else "BertForMaskedLM"
  return (f"model = transformers.{model}.from_pretrained({str(directory)!r})\n"
          f"tokenizer = transformers.AutoTokenizer.from_pretrained({str(directory)!r})\n"
          "logits = model(**tokenizer(text, return_tensors='pt', return_token_type_ids=False)).logits")


def _export_image_text(source, directory: epath.Path, save) -> str:
  """A Hugging Face `CLIPModel` / `SiglipModel` directory of an image-text run (both towers, the projections, the
  logit scale and bias), with the run's caption tokenizer and an image processor set to the run's evaluation view
  (its size, the ImageNet mean and std that ssl_jax normalises with)."""
  tokenizer = epath.Path(source.workdir) / "tokenizer.json"
  if not tokenizer.exists():
    raise FileNotFoundError(f"{tokenizer} is missing: an image-text run writes its caption tokenizer there when it "
                            "starts.")
  from tokenizers import Tokenizer
  from ssl_jax.data import image_text
  from ssl_jax.data import text as text_lib
  from ssl_jax.ops import image as image_lib
  tok = Tokenizer.from_str(tokenizer.read_text())
  params, extra = source.state()
  towers = source.method.encoders(params, extra)
  data = source.config.data
  end = text_lib.end_of_text_id(tok)
  sd, config = convert.to_hf_image_text(towers["image"][0], towers["text"][0], params, data.image.size,
                                        end_of_text_id=end)
  siglip = config["model_type"] == "siglip"
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "model.safetensors").write_bytes(save(sd, metadata={"format": "pt"}))
  (directory / "config.json").write_text(json.dumps(config, indent=2))
  # The exported tokenizer frames a caption as the run does: [start-of-text] tokens end-of-text; padding with
  # `padding="max_length", max_length=<the run's length>` adds the end-of-text token, as the run pads.
  from tokenizers import processors
  end_token = tok.id_to_token(end)
  special = dict(eos_token=end_token, pad_token=end_token, unk_token=end_token)
  framed = [(end_token, end)]
  template = f"$A {end_token}"
  if data.text.start_token:
    start = image_text.start_id(tok)
    special["bos_token"] = tok.id_to_token(start)
    framed.append((special["bos_token"], start))
    template = f"{special['bos_token']} {template}"
  tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=framed)
  (directory / "tokenizer.json").write_text(tok.to_str())
  (directory / "tokenizer_config.json").write_text(json.dumps(dict(
      tokenizer_class="PreTrainedTokenizerFast", model_max_length=data.text.length, **special), indent=2))
  size = data.image.size
  (directory / "preprocessor_config.json").write_text(json.dumps(dict(
      image_processor_type="SiglipImageProcessor" if siglip else "CLIPImageProcessor", do_resize=True,
      size=dict(height=size, width=size) if siglip else dict(shortest_edge=size), do_center_crop=not siglip,
      crop_size=dict(height=size, width=size), do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
      image_mean=list(image_lib.IMAGENET_MEAN), image_std=list(image_lib.IMAGENET_STD)), indent=2))
  model = "SiglipModel" if siglip else "CLIPModel"
  return (f"model = transformers.{model}.from_pretrained({str(directory)!r})\n"
          "image_embeds = model.get_image_features(pixel_values=images)   # float32 NCHW, ImageNet mean/std\n"
          f"ids = transformers.AutoTokenizer.from_pretrained({str(directory)!r})(captions, padding='max_length', "
          f"max_length={data.text.length}, truncation=True, return_tensors='pt').input_ids\n"
          "text_embeds = model.get_text_features(input_ids=ids)")


def _export_audio(source, directory: epath.Path, save) -> str:
  """A Hugging Face `Wav2Vec2ForPreTraining` directory of a wav2vec 2.0 run (the encoder, quantizer and projections;
  `Wav2Vec2Model.from_pretrained` reads the encoder from it), with a feature extractor set to the run's audio: its
  sample rate, per-utterance normalisation, and attention masks only for a LayerNorm feature encoder (a GroupNorm
  one, as base, is fed zero-padded batches without a mask, as Hugging Face documents)."""
  params, _ = source.state()
  m, a = source.config.method, source.config.data.audio
  sd, config = convert.to_hf_wav2vec2(source.spec, params, final_dim=m.get("final_dim", 256),
                                      latent_groups=m.get("latent_groups", 2), latent_vars=m.get("latent_vars", 320),
                                      latent_dim=m.get("latent_dim", 256), sample_rate=a.sample_rate)
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "model.safetensors").write_bytes(save(sd, metadata={"format": "pt"}))
  (directory / "config.json").write_text(json.dumps(config, indent=2))
  (directory / "preprocessor_config.json").write_text(json.dumps(dict(
      feature_extractor_type="Wav2Vec2FeatureExtractor", feature_size=1, sampling_rate=a.sample_rate,
      padding_value=0.0, do_normalize=bool(a.normalize),
      return_attention_mask=config["feat_extract_norm"] == "layer"), indent=2))
  return (f"model = transformers.Wav2Vec2Model.from_pretrained({str(directory)!r})   # or Wav2Vec2ForPreTraining\n"
          f"inputs = transformers.AutoFeatureExtractor.from_pretrained({str(directory)!r})(waveforms, "
          f"sampling_rate={a.sample_rate}, return_tensors='pt', padding=True)\n"
          "hidden = model(**inputs).last_hidden_state   # [B, frames, width]; the run's feature: its mean over frames")


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(prog="python -m ssl_jax.export", description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a pretraining (or fine-tuning) workdir")
  parser.add_argument("--format", required=True, choices=("timm", "hf", "npz"))
  parser.add_argument("--out", required=True, help="output file (timm, npz) or directory (hf)")
  parser.add_argument("--tower", default=None, help="which of the method's encoders (default: the run's modality, "
                      "image or text)")
  args = parser.parse_args(argv)
  try:
    how = export(args.workdir, args.format, args.out, args.tower)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}\n{how}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

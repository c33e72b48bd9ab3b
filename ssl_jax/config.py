"""The shared config schema: defaults every experiment starts from, validation, and duration conversion.

An experiment config (`configs/*.py`) calls `base_config()`, changes what its paper changes, and returns it locked:
an override of an unknown key (`--config.batch_sise=8`) is then an error naming the key. `validate` checks values
before anything compiles or is written.
"""

import dataclasses
import keyword

import ml_collections
from ml_collections import config_dict

from ssl_jax.ops import augment
from ssl_jax import evaluators
from ssl_jax import optim
from ssl_jax import sharding

DURATIONS = ("total", "warmup", "log_every", "ckpt_every", "eval_every")


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every experiment: how a run executes, checkpoints, evaluates and recovers. What the experiment
  is — `method.name`, `model`, `data` (`image_data(...)`), `batch_size`, `optim.base_lr` and a duration — is
  unset, and `validate` asks for it."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A pretraining workdir whose newest intact checkpoint initialises the encoder (fine-tuning, linear probing,
  # standalone evaluation with total_steps=0); the encoder's architecture comes from that run's config unless
  # config.model sets it.
  c.init_from = config_dict.placeholder(str)
  c.batch_size = config_dict.placeholder(int)          # required: global, over all processes and devices
  # Gradient accumulation: each step's batch is processed in this many sequential micro-batches (their mean
  # gradient makes one update); see docs/scale-out.md for what it means for contrastive methods and BatchNorm.
  c.grad_accum_steps = 1
  # Durations: in steps, or in epochs (`*_epochs`); when both are set the step value wins, so that
  # `--config.total_steps=2` shortens an epoch-based config. Converted once at start-up.
  c.total_steps = config_dict.placeholder(int)
  c.total_epochs = config_dict.placeholder(float)
  c.log_every = 50                                     # 0 turns the periodic action off
  c.log_every_epochs = config_dict.placeholder(float)
  c.ckpt_every = 1000
  c.ckpt_every_epochs = config_dict.placeholder(float)
  c.eval_every = 0                                     # the final evaluation runs regardless
  c.eval_every_epochs = config_dict.placeholder(float)
  c.keep_ckpts = 3
  c.ckpt_timeout_s = 1200                              # an asynchronous save (and its host barrier) fails after this
  # One live run per workdir (`ssl_jax.runtime.workdir`): process 0 holds <workdir>/lease.json, renewing its heartbeat
  # every heartbeat_s; where no file lock tells that a holder died (object stores, NFS without locks), its lease is free
  # expire_s after its last heartbeat.
  c.lease = ml_collections.ConfigDict(dict(heartbeat_s=30.0, expire_s=300.0))
  # A step with a non-finite loss or gradient (global norm) is never applied. "skip": go on, and stop after
  # max_nonfinite_streak such steps in a row; "stop": stop at the next log or checkpoint step, saving nothing after.
  c.nonfinite_policy = "skip"
  c.max_nonfinite_streak = 10

  # Multi-process runs (`ssl_jax.runtime.distributed`): every process joins within initialization_timeout_s; a process
  # silent for heartbeat_timeout_s (dead or hung) stops the whole job with an error instead of a hang.
  c.distributed = ml_collections.ConfigDict(dict(initialization_timeout_s=300, heartbeat_timeout_s=100,
                                                 shutdown_timeout_s=300))

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  # A named layout instead of the sizes above: "dp", "fsdp" (ZeRO-3 over every device) or "fsdp_tp" (FSDP x
  # config.mesh.tensor-way tensor parallelism); see `ssl_jax.sharding.preset_sizes`.
  c.mesh_preset = config_dict.placeholder(str)
  c.sharding_rules = sharding.DEFAULT_RULES
  # With fsdp x tensor > 1: fail at start-up when a device would hold more than 1/(fsdp x tensor) of the parameters
  # plus this fraction of them (and over 1 MiB more: replicated parameters that should be split); None: no check.
  c.sharding_tolerance = 0.05

  # The data: a source and its modality's block (`image_data` builds an image data block; text and audio blocks
  # follow). Required: data.name and the modality's block.
  c.data = data_block()

  c.method = ml_collections.ConfigDict()
  c.method.name = config_dict.placeholder(str)         # required: a `ssl_jax.methods.METHODS` name
  c.model = ml_collections.ConfigDict()                # the encoder (`vit(...)`, or a dict with `arch`)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adamw"
  c.optim.base_lr = config_dict.placeholder(float)     # required: peak lr = base_lr * batch_size / lr_batch_base
  c.optim.lr_batch_base = 256
  c.optim.lr_scaling = "linear"                        # or "sqrt": base_lr * sqrt(batch_size / lr_batch_base) (DINOv2)
  c.optim.schedule = "cosine"                          # "linear", "constant", or "step" (RotNet's lr table):
  c.optim.decay_epochs = ()                            # "step": the epochs at which the lr is multiplied by
  c.optim.decay_factor = 0.1                           # decay_factor (after the warm-up)
  c.optim.min_lr = 0.0
  c.optim.warmup_steps = config_dict.placeholder(int)
  c.optim.warmup_epochs = config_dict.placeholder(float)
  c.optim.warmup_base_lr = 0.0                         # the warm-up's first lr, scaled as base_lr (I-JEPA: 2e-4)
  c.optim.weight_decay = 0.05
  c.optim.weight_decay_end = config_dict.placeholder(float)   # set: cosine from weight_decay to this (DINO)
  c.optim.frozen = ()                                  # regexes of parameter paths ("net/encoder/vit/embedding/.*")
  c.optim.probe_lr = 1e-3                              # Adam lr of the online linear probe (joint-embedding methods)
  c.optim.no_decay = ("pos_embedding",)                # parameter names without weight decay (besides biases, norms)
  c.optim.decay_biases_and_norms = False               # True: decay them too (MoCo v3's AdamW)
  c.optim.layer_decay = config_dict.placeholder(float)  # layer-wise lr decay of a ViT (MAE fine-tuning: 0.65)
  c.optim.lr_multipliers = ()                          # (regex, factor) pairs: ("encoder/embedding/", 0.2) (DINOv2)
  c.optim.constant_lr = ()                             # regexes of parameters kept at the peak lr (SimSiam predictor)
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.momentum = 0.9
  c.optim.nesterov = False                             # SGD: Nesterov momentum (PyTorch's `nesterov=True`)
  c.optim.lr_in_momentum = True                        # LARS: v = m v + lr g (SimCLR); False: p -= lr (m v + g) (BYOL)
  c.optim.grad_clip = config_dict.placeholder(float)
  c.optim.grad_clip_mode = "global"                    # or "per_tensor" (DINO), "per_module" (DINOv2)

  c.eval = ml_collections.ConfigDict()
  c.eval.data_name = config_dict.placeholder(str)      # default: data.name
  c.eval.train_split = "train"                         # the labelled bank / probe training set
  c.eval.test_split = "validation"
  # The held-out split of config.data.name on which a language model's own predictions are scored (the
  # 'language_model' evaluator): "validation" for text corpora.
  c.eval.pretext_split = config_dict.placeholder(str)
  c.eval.batch_size = 256
  # Evaluators by name, each {type, **arguments} (see `ssl_jax.evaluators`); logged as eval/<name>_top1.
  c.eval.evaluators = ml_collections.ConfigDict(dict(
      knn=dict(type="knn", k=20, temperature=0.07, vote="weighted"),     # DINO's weighted kNN
      linear=dict(type="linear_lbfgs", l2=1e-4, steps=500),              # quick L-BFGS logistic regression
  ))
  c.eval.init_baseline = True                          # also evaluate the encoder at random initialisation
  # Also evaluate the raw input (the evaluation view's pixels, flattened) through the same evaluators: the baseline a
  # representation must beat. Off by default: at ImageNet size the features are 150,528-dimensional.
  c.eval.raw_baseline = False
  # End-of-run report (workdir/report/ and TensorBoard): collapse statistics, alignment/uniformity, PCA and t-SNE of
  # the test features (at most report_points of them), and for MAE a grid of reconstructions.
  c.eval.report = True
  c.eval.report_points = 1000
  # A GPT's end-of-run report: a continuation of each prompt (sample_tokens new tokens, temperature 0.8, top-k 40,
  # seed 0), printed and written to workdir/report/samples.txt.
  c.eval.sample_prompts = ()
  c.eval.sample_tokens = 40

  c.debug = ml_collections.ConfigDict()
  c.debug.log_example_ids = False                      # write example_ids/process_<i>.jsonl (ids per step)
  c.debug.nonfinite_at_steps = ()                      # fault injection: a NaN gradient element at these steps
  # jax.transfer_guard level of the training loop outside log, eval and checkpoint steps: "disallow" makes any
  # implicit host<->device transfer there (a hidden sync) an error; "log" reports them. (On CPUs jax guards only
  # host-to-device transfers.)
  c.debug.transfer_guard = "allow"
  return c


def data_block(name: str | None = None, **fields) -> ml_collections.ConfigDict:
  """`config.data` without a modality: the source and how it is read. `image_data` adds the image block."""
  d = ml_collections.ConfigDict()
  d.name = name if name is not None else config_dict.placeholder(str)   # a TFDS name, "digits", "emoji", ...
  d.data_dir = config_dict.placeholder(str)            # TFDS data_dir / image folder, local or gs://
  d.train_split = "train"
  d.num_workers = 0                                    # Grain worker processes (0: in the main process)
  d.prefetch = 2
  d.synthetic_examples = 4096                          # size of the "synthetic" data set
  d.update(fields)
  return d


def image_data(name: str, *, size: int, crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3), flip: bool = True,
               rand_augment: tuple | None = None, photometric: str | None = None, views: dict | None = None,
               eval_crop_pct: float = 0.875, bad_images: str = "skip", **fields) -> ml_collections.ConfigDict:
  """`config.data` of an image data set: `data_block(name, **fields)` with its image options under `image`.

  Args:
    name: the source (a TFDS name such as "imagenet2012", "digits", "emoji", "synthetic", "image_folder").
    size: the side of the training crop and of the evaluation view.
    crop_scale, crop_ratio, flip: the random-resized crop (area fraction, aspect ratio) and horizontal flip of a
      single-view method's training images (and of the report's two augmented views).
    rand_augment: (num_ops, magnitude, magnitude_std) of RandAugment after the crop (timm's rand-m9-mstd0.5 is
      (2, 9, 0.5)); None: none.
    photometric: a `ssl_jax.ops.augment.RECIPES` name applied on the device to a single-view method's training
      image (BEiT and data2vec: "beit", ColorJitter(0.4, 0.4, 0.4)); None: none.
    views: multi-view methods' view groups by name (processed in name order), each
      `dict(count=2, size=224, scale=(0.08, 1.0), ratio=(3/4, 4/3), flip=True, photometric=("byol1", "byol2"))`
      with `photometric` naming one `ssl_jax.ops.augment.RECIPES` entry per view (or one for all). None: one crop per
      image as `image` (the crop options above), no photometric augmentation.
    eval_crop_pct: the evaluation view: the shorter side resized to `size / eval_crop_pct`, the centre `size` crop.
    bad_images: undecodable image files: "skip" (replaced by the next decodable one, counted) or "stop".
  """
  d = data_block(name, **fields)
  d.image = ml_collections.ConfigDict(dict(
      size=size, crop_scale=tuple(crop_scale), crop_ratio=tuple(crop_ratio), flip=flip,
      rand_augment=tuple(rand_augment) if rand_augment else config_dict.placeholder(tuple),
      photometric=photometric if photometric else config_dict.placeholder(str),
      views=ml_collections.ConfigDict(views or {}), eval_crop_pct=eval_crop_pct, bad_images=bad_images))
  return d


# Training examples of the embedded image sets (`ssl_jax.data.sources`; tests/test_config.py checks them).
EMBEDDED_TRAIN_EXAMPLES = {"digits": 1437, "emoji": 3005, "emoji_subgroups": 3005}


def tiny_on(config: ml_collections.ConfigDict, name: str | None) -> ml_collections.ConfigDict:
  """A tiny config written for digits, moved to the embedded image set `name` (None or "digits": unchanged) with
  the same optimizer steps: the training and evaluation data become `name`, and every duration in epochs (each
  `*_epochs` field, the method's too) is scaled by the ratio of steps per epoch, so that the run, its warm-up and its
  schedules keep their lengths in steps. `python main.py --config=configs/tiny/simclr.py:emoji`."""
  if name in (None, "", "digits"):
    return config
  if name not in EMBEDDED_TRAIN_EXAMPLES:
    raise ValueError(f"a tiny config runs on {sorted(EMBEDDED_TRAIN_EXAMPLES)}, not {name!r} "
                     "(e.g. --config=configs/tiny/simclr.py:emoji).")
  steps = lambda n: max(1, n // config.batch_size)
  factor = steps(EMBEDDED_TRAIN_EXAMPLES["digits"]) / steps(EMBEDDED_TRAIN_EXAMPLES[name])

  def scale(block):
    for key, value in block.items():
      if isinstance(value, ml_collections.ConfigDict):
        scale(value)
      elif key.endswith("_epochs") and isinstance(value, (int, float)) and not isinstance(value, bool) and value:
        del block[key]                # an int field (`= 10`) becomes a float one
        block[key] = float(value) * factor
      elif key.endswith("_epochs") and isinstance(value, tuple):     # optim.decay_epochs
        block[key] = tuple(float(v) * factor for v in value)
  scale(config)
  config.data.name = name
  config.eval.data_name = name
  return config


def text_data(name: str, *, length: int, tokenizer: str = "bpe:8192", **fields) -> ml_collections.ConfigDict:
  """`config.data` of a text corpus: `data_block(name, **fields)` with its text options under `text`.

  Args:
    name: "stdlib_docstrings" or "ssl_jax_code" (embedded: tokenized in memory at start-up), or "prepared" (the
      `--out` of `python -m ssl_jax.data.prepare_text` in `data_dir`); the evaluators' probe is `<name>_probe`.
    length: tokens per training window (the model's context: GPT-2 1024, BERT 128 then 512).
    tokenizer: for embedded corpora, `bpe:<vocab>` (GPT-2's byte-level BPE) or `wordpiece:<vocab>` (BERT's), trained
      on the training documents, or a tokenizer.json path; prepared data brings its own.
  """
  d = data_block(name, **fields)
  d.text = ml_collections.ConfigDict(dict(length=length, tokenizer=tokenizer))
  return d


def image_text_data(name: str, *, size: int, length: int, tokenizer: str = "bpe:4096", start_token: bool = False,
                    crop_scale=(0.9, 1.0), **fields) -> ml_collections.ConfigDict:
  """`config.data` of image-caption pairs (CLIP, SigLIP): `image_data(name, size=..., crop_scale=..., **fields)` with
  the captions' options under `text` (`ssl_jax.data.image_text`).

  Args:
    name: an image source with captions: the embedded "emoji" (Unicode names and subgroups) or "digits" (templated
      sentences), "webdataset" shards or "prepared_pairs".
    size: the side of the training crop and of the evaluation view.
    length: tokens per caption, padded or cut (CLIP 77, SigLIP 64).
    tokenizer: `bpe:<vocab>` (a lower-cased byte-level BPE trained on the training captions) or a tokenizer.json
      path.
    start_token: begin each caption with `<|startoftext|>` (CLIP; SigLIP has none).
    crop_scale: the random-resized crop's area fraction (open_clip trains with (0.9, 1.0); OpenAI's CLIP with a
      centre crop only).
  """
  d = image_data(name, size=size, crop_scale=crop_scale, **fields)
  d.text = ml_collections.ConfigDict(dict(length=length, tokenizer=tokenizer, start_token=start_token))
  return d


def audio_data(name: str, *, max_length: int, sample_rate: int = 16000, min_length: int = 0, normalize: bool = False,
               bad_audio: str = "skip", **fields) -> ml_collections.ConfigDict:
  """`config.data` of speech: `data_block(name, **fields)` with its audio options under `audio` (`ssl_jax.data.audio`).

  Args:
    name: "spoken_words" or "spoken_sentences" (embedded: `ssl_jax.data.speech`), "manifest" (fairseq's
      `<data_dir>/<split>.tsv`) or "audio_folder" (`<data_dir>/<split>/<class>/<file>`).
    max_length: samples per example: longer utterances are cropped at random (the centre for evaluation), shorter
      ones zero-padded, with `audio_length` (wav2vec 2.0: `max_sample_size` 250,000, 15.6 s at 16 kHz).
    sample_rate: Hz; files at other rates are resampled.
    min_length: utterances with fewer samples are bad examples (fairseq's `min_sample_size`; wav2vec 2.0: 32,000).
    normalize: zero mean and unit variance per utterance (the wav2vec 2.0 large configs; base: False).
    bad_audio: unreadable, empty or too-short files: "skip" (replaced by the next usable one, counted in
      `bad_examples`) or "stop" (an error naming the file).
  """
  d = data_block(name, **fields)
  d.audio = ml_collections.ConfigDict(dict(max_length=max_length, sample_rate=sample_rate, min_length=min_length,
                                           normalize=normalize, bad_audio=bad_audio))
  return d


def text_evaluation(config: ml_collections.ConfigDict, *, batch_size: int | None = None) -> None:
  """Sets `config.eval` for a language model on `config.data` (a `text_data` block): the downstream probe of
  `<data.name>_probe` (its train and test splits) by kNN and the linear probe, and the `language_model` evaluator on
  the corpus's held-out "validation" windows (loss, perplexity, accuracy of the method's own predictions)."""
  e = config.eval
  e.data_name = config.data.name + "_probe"
  e.train_split, e.test_split, e.pretext_split = "train", "test", "validation"
  e.evaluators.validation = dict(type="language_model")     # eval/validation_{loss,perplexity,accuracy}
  if batch_size is not None:
    e.batch_size = batch_size


def vit(variant: str | None = None, *, remat: str | None = "none", scan: bool | None = False,
        **fields) -> ml_collections.ConfigDict:
  """`config.model` of a ViT encoder: a named size (`variant`: "S/16", "B/16", "L/16", ...) or explicit dimensions
  (`patch_size`, `width`, `depth`, `num_heads`, `mlp_dim`; those not given stay settable from the command line), and
  any other field of `ssl_jax.models.vit.vit_kwargs` / `backbone.create` (posemb, dtype, pool, drop_path).
  `attention_impl` unset picks cuDNN on recent NVIDIA GPUs in half precision and "einsum" elsewhere; `remat` and
  `scan` as `add_vit_execution_options`."""
  m = ml_collections.ConfigDict(dict(arch="vit"))
  m.variant = variant if variant is not None else config_dict.placeholder(str)
  for key in ("patch_size", "width", "depth", "num_heads", "mlp_dim"):
    m[key] = fields.pop(key) if key in fields else config_dict.placeholder(int)
  m.attention_impl = fields.pop("attention_impl") if "attention_impl" in fields else config_dict.placeholder(str)
  m.update(fields)
  add_vit_execution_options(m, remat, scan)
  return m


# Image options that earlier versions kept in config.data (and eval.crop_pct): their places under config.data.image.
_MOVED_TO_IMAGE = {"image_size": "size", "crop_scale": "crop_scale", "crop_ratio": "crop_ratio", "flip": "flip",
                   "rand_augment": "rand_augment", "views": "views", "bad_images": "bad_images"}


def upgrade(saved: dict) -> dict:
  """A saved run's config (a dict, as checkpoints store it) in the current schema: a run saved before the image
  options moved under `config.data.image` gets them there (`export` and `init_from` read old runs through this)."""
  data = dict(saved.get("data", {}))
  if "image" in data or "image_size" not in data:
    return saved
  image = {new: data.pop(old) for old, new in _MOVED_TO_IMAGE.items() if old in data}
  image["eval_crop_pct"] = saved.get("eval", {}).get("crop_pct", 0.875)
  return dict(saved, data=dict(data, image=image))


def add_vit_execution_options(model: ml_collections.ConfigDict, remat: str | None = "none",
                              scan: bool | None = False) -> None:
  """Adds to a ViT's `config.model` the keys that change how it runs, not what it computes (the same parameters and
  results; see `ssl_jax.models.transformer.Transformer`):

  - `remat`: rematerialisation of each transformer block in the backward pass: "none", "full" (keep only the
    block inputs), "dots_saveable" (keep matmul outputs) or "dots_with_no_batch_dims_saveable";
  - `scan`: run the blocks as one `lax.scan` (one block compiled instead of `depth`).

  None (downstream configs) takes the value of the pretrained run (`config.init_from`).
  """
  model.remat = remat if remat is not None else config_dict.placeholder(str)
  model.scan = scan if scan is not None else config_dict.placeholder(bool)


def _positive(config, key):
  v = config[key]
  if v is not None and v < 0:
    raise ValueError(f"config.{key} must be >= 0, got {v}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks values that do not depend on devices or data; raises ValueError naming the key and the fix."""
  for key, how in (("method.name", "a method of ssl_jax.methods.METHODS"),
                   ("data.name", "a data set, e.g. config.data = config_lib.image_data('digits', size=16)"),
                   ("batch_size", "the global batch size"), ("optim.base_lr", "the base learning rate")):
    group, _, field = key.rpartition(".")
    if key == "optim.base_lr" and config.total_steps == 0:
      continue                                          # evaluation only: nothing is trained
    if (config[group] if group else config)[field] is None:
      raise ValueError(f"config.{key} is not set; set it to {how}.")
  modalities = [m for m in ("image", "text", "audio") if m in config.data]
  if not modalities:
    raise ValueError("config.data has no modality block (image, text, audio); build it with "
                     "config_lib.image_data(name, size=...), config_lib.text_data(name, length=...), "
                     "config_lib.image_text_data(name, size=..., length=...) or config_lib.audio_data(name, "
                     "max_length=...).")
  if "audio" in modalities and len(modalities) > 1:
    raise ValueError(f"config.data has an audio block and {[m for m in modalities if m != 'audio']}: speech data "
                     "takes the audio block alone (config_lib.audio_data(name, max_length=...)).")
  if len(modalities) == 2 and (config.data.image.views or "start_token" not in config.data.text):
    raise ValueError("config.data has both an image and a text block: image-caption pairs take one view of each "
                     "image (no config.data.image.views) and the caption options of config_lib.image_text_data(name, "
                     "size=..., length=...).")
  if config.batch_size <= 0:
    raise ValueError(f"config.batch_size must be positive, got {config.batch_size}.")
  if config.grad_accum_steps < 1 or config.batch_size % config.grad_accum_steps:
    raise ValueError(f"config.grad_accum_steps={config.grad_accum_steps} must be >= 1 and divide config.batch_size="
                     f"{config.batch_size}.")
  if config.total_steps is None and config.total_epochs is None:
    raise ValueError("set config.total_steps or config.total_epochs (both are None).")
  for name in ("log_every", "ckpt_every", "eval_every"):
    _positive(config, name)
    _positive(config, name + "_epochs")
  for key in ("total_steps", "total_epochs"):
    value = config[key]
    if value is not None and (value < 0 or (value == 0 and not config.init_from)):
      raise ValueError(f"config.{key} must be positive (0 only evaluates, with config.init_from), got {value}.")
  if config.optim.layer_decay is not None and not 0 < config.optim.layer_decay <= 1:
    raise ValueError(f"config.optim.layer_decay must be in (0, 1], got {config.optim.layer_decay}.")
  if not 0 < 2 * config.lease.heartbeat_s < config.lease.expire_s:
    raise ValueError(f"config.lease: expire_s={config.lease.expire_s} must exceed two heartbeats "
                     f"(heartbeat_s={config.lease.heartbeat_s} > 0).")
  if config.ckpt_timeout_s <= 0:
    raise ValueError(f"config.ckpt_timeout_s must be positive, got {config.ckpt_timeout_s}.")
  if config.nonfinite_policy not in ("skip", "stop"):
    raise ValueError(f"config.nonfinite_policy={config.nonfinite_policy!r}: use 'skip' or 'stop'.")
  if config.debug.transfer_guard not in ("allow", "log", "disallow", "log_explicit", "disallow_explicit"):
    raise ValueError(f"config.debug.transfer_guard={config.debug.transfer_guard!r}: use 'allow', 'log', "
                     "'disallow', 'log_explicit' or 'disallow_explicit' (jax.transfer_guard levels).")
  if config.max_nonfinite_streak < 1:
    raise ValueError(f"config.max_nonfinite_streak must be >= 1, got {config.max_nonfinite_streak}.")
  if config.optim.name not in optim.OPTIMIZERS:
    raise ValueError(f"config.optim.name={config.optim.name!r} is unknown; use one of {optim.OPTIMIZERS}.")
  if config.optim.schedule not in optim.SCHEDULES:
    raise ValueError(f"config.optim.schedule={config.optim.schedule!r} is unknown; use one of {optim.SCHEDULES}.")
  decay = tuple(config.optim.decay_epochs)
  if decay and config.optim.schedule != "step":
    raise ValueError(f"config.optim.decay_epochs={decay} is read only by the 'step' schedule, and "
                     f"config.optim.schedule is {config.optim.schedule!r}: set schedule='step' or decay_epochs=().")
  if decay and (list(decay) != sorted(set(decay)) or decay[0] <= 0):
    raise ValueError(f"config.optim.decay_epochs={decay} must be positive and increasing, e.g. (15, 30, 45).")
  if config.optim.nesterov and config.optim.name != "sgd":
    raise ValueError(f"config.optim.nesterov is for SGD; config.optim.name is {config.optim.name!r}.")
  if config.optim.grad_clip_mode not in ("global", "per_tensor", "per_module"):
    raise ValueError(f"config.optim.grad_clip_mode={config.optim.grad_clip_mode!r}: use 'global', 'per_tensor' or "
                     "'per_module'.")
  if config.optim.lr_scaling not in optim.LR_SCALINGS:
    raise ValueError(f"config.optim.lr_scaling={config.optim.lr_scaling!r}: use one of {optim.LR_SCALINGS}.")
  for pair in config.optim.lr_multipliers:
    if len(pair) != 2 or not isinstance(pair[0], str) or not float(pair[1]) >= 0:
      raise ValueError(f"config.optim.lr_multipliers: {pair!r} is not a (regex, factor >= 0) pair, e.g. "
                       "('encoder/embedding/', 0.2).")
  if isinstance(config.optim.constant_lr, str) or not all(isinstance(p, str) for p in config.optim.constant_lr):
    raise ValueError(f"config.optim.constant_lr must be a tuple of parameter-path regexes, e.g. "
                     f"('net/predictor/.*',), got {config.optim.constant_lr!r}.")
  if config.optim.base_lr is not None and config.optim.base_lr <= 0:
    raise ValueError(f"config.optim.base_lr must be positive, got {config.optim.base_lr}.")
  if set(config.mesh.keys()) != set(sharding.MESH_AXES):
    raise ValueError(f"config.mesh must have exactly the axes {sharding.MESH_AXES}, got {sorted(config.mesh)}.")
  sharding.preset_sizes(config.mesh_preset, config.mesh.to_dict())
  if config.data.num_workers < 0:
    raise ValueError(f"config.data.num_workers must be >= 0, got {config.data.num_workers}.")
  if "image" in config.data:
    _validate_image(config.data.image)
  if "text" in config.data and config.data.text.length < 2:
    raise ValueError(f"config.data.text.length must be at least 2, got {config.data.text.length}.")
  if "audio" in config.data:
    _validate_audio(config.data.audio)
  if config.eval.batch_size <= 0:
    raise ValueError(f"config.eval.batch_size must be positive, got {config.eval.batch_size}.")
  for name, spec in config.eval.evaluators.items():
    evaluators.check(name, spec.to_dict() if hasattr(spec, "to_dict") else dict(spec))
    if spec["type"] == "language_model" and not config.eval.pretext_split:
      raise ValueError(f"config.eval.evaluators.{name} (a 'language_model' evaluator) scores held-out text: set "
                       "config.eval.pretext_split, e.g. 'validation'.")


def _validate_audio(audio) -> None:
  """Checks `config.data.audio` (`audio_data`)."""
  if audio.sample_rate <= 0 or audio.max_length <= 0:
    raise ValueError(f"config.data.audio: sample_rate ({audio.sample_rate}) and max_length ({audio.max_length}) must "
                     "be positive.")
  if audio.min_length < 0:
    raise ValueError(f"config.data.audio.min_length must be >= 0, got {audio.min_length}.")
  if audio.bad_audio not in ("skip", "stop"):
    raise ValueError(f"config.data.audio.bad_audio={audio.bad_audio!r}: use 'skip' or 'stop'.")


VIEW_FIELDS = ("count", "size", "scale", "ratio", "flip", "photometric")


def _validate_image(image) -> None:
  """Checks `config.data.image` (`image_data`)."""
  lo, hi = image.crop_scale
  if not 0 < lo <= hi <= 1:
    raise ValueError(f"config.data.image.crop_scale must satisfy 0 < lo <= hi <= 1, got {tuple(image.crop_scale)}.")
  if image.size <= 0:
    raise ValueError(f"config.data.image.size must be positive, got {image.size}.")
  ra = image.rand_augment
  if ra is not None and (len(ra) != 3 or ra[0] < 0 or not 0 <= ra[1] <= 10 or ra[2] < 0):
    raise ValueError(f"config.data.image.rand_augment={tuple(ra)}: give (num_ops >= 0, magnitude in [0, 10], "
                     "magnitude_std >= 0), e.g. (2, 9, 0.5).")
  if image.bad_images not in ("skip", "stop"):
    raise ValueError(f"config.data.image.bad_images={image.bad_images!r}: use 'skip' or 'stop'.")
  if not 0 < image.eval_crop_pct <= 1:
    raise ValueError(f"config.data.image.eval_crop_pct must be in (0, 1], got {image.eval_crop_pct}.")
  if image.get("photometric") is not None:
    if image.views:
      raise ValueError("config.data.image.photometric augments the single view; with view groups set each group's "
                       "`photometric` instead (config.data.image.views.<name>.photometric).")
    augment.recipe(image.photometric)          # raises, naming the known recipes
  for name, g in image.views.items():
    where = f"config.data.image.views.{name}"
    if not name.isidentifier() or keyword.iskeyword(name):    # groups are nested under batch["views"]: any name
      raise ValueError(f"{where}: a view group needs a name that is a Python identifier, not a keyword (so that "
                       f"--config.data.image.views.<name>.count=... parses); e.g. 'global_crops'.")
    unknown = sorted(set(g.keys()) - set(VIEW_FIELDS))
    if unknown:
      raise ValueError(f"{where} has unknown fields {unknown}; the fields are {VIEW_FIELDS}.")
    for key in ("count", "size", "scale", "photometric"):
      if key not in g:
        raise ValueError(f"{where} needs `{key}` (fields: {VIEW_FIELDS}).")
    if g.count < 1 or g.size < 1:
      raise ValueError(f"{where}: count and size must be positive, got {g.count} and {g.size}.")
    lo, hi = g.scale
    if not 0 < lo <= hi <= 1:
      raise ValueError(f"{where}.scale must satisfy 0 < lo <= hi <= 1, got {tuple(g.scale)}.")
    names = (g.photometric,) if isinstance(g.photometric, str) else tuple(g.photometric)
    if len(names) not in (1, g.count):
      raise ValueError(f"{where}.photometric names {len(names)} recipes for {g.count} views; give 1 or {g.count}.")
    for r in names:
      augment.recipe(r)       # raises, naming the known recipes


@dataclasses.dataclass(frozen=True)
class Durations:
  """Every duration in optimizer steps."""
  total: int
  warmup: int
  log_every: int
  ckpt_every: int
  eval_every: int
  steps_per_epoch: int
  lr_decay: tuple[int, ...] = ()     # the "step" schedule's decay steps


def resolve_durations(config: ml_collections.ConfigDict, num_train_examples: int) -> Durations:
  """Converts durations to steps (an epoch is `num_train_examples // batch_size` steps); steps win over epochs."""
  steps_per_epoch = max(1, num_train_examples // config.batch_size)

  def steps(value_steps, value_epochs):
    if value_steps is not None:
      return int(value_steps)
    return 0 if value_epochs is None else int(round(value_epochs * steps_per_epoch))

  total = steps(config.total_steps, config.total_epochs)
  if total <= 0 and not (config.init_from and total == 0):
    raise ValueError(f"the run has {total} steps: total_epochs={config.total_epochs} of {steps_per_epoch} "
                     "steps each rounds to nothing; raise it.")
  warmup = steps(config.optim.warmup_steps, config.optim.warmup_epochs)
  return Durations(
      total=total, warmup=min(warmup, total),
      log_every=steps(config.log_every, config.log_every_epochs),
      ckpt_every=steps(config.ckpt_every, config.ckpt_every_epochs),
      eval_every=steps(config.eval_every, config.eval_every_epochs),
      steps_per_epoch=steps_per_epoch,
      lr_decay=tuple(steps(None, e) for e in config.optim.decay_epochs))

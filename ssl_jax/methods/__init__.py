"""Self-supervised methods behind one contract (`ssl_jax.methods.contract.Method`); `config.method.name` picks the
class from `METHODS`, and the trainer builds it with `create(name, model=..., run=..., **config.method)`.

Every method implements

  init(rng, batch) -> (params, extra)          # logically partitioned (boxed) parameters; extra: teachers, centres
  loss(params, extra, batch, rng, step) -> (loss, (metrics, new_extra))      # pure, for the global batch
  represent(params, extra, batch) -> {feature: [B, D]}                       # for the evaluators
  encoders(params, extra) -> {tower: (spec, variables)}   # the released encoders: `models.backbone.create(**spec)`
                                                          # applied to `variables` (probing, fine-tuning, export)

and may override the hooks that have defaults: `after_update` (e.g. an EMA teacher), `project_params` (parameters
put back onto a constraint set after each update: SwAV's unit-norm prototypes), `frozen_until` (parameters the
optimizer leaves out of their first updates: DINO's last layer), `zero_lr_until` (parameters whose learning
rate is 0 at first: DINOv2's last layer), `health_warnings` (messages from a log step's metrics: wav2vec 2.0's
codebook collapse), and, with the class attribute that announces each,
`load_encoders` (`accepts_pretrained_encoder`), `predict` (`predicts`), `reconstruct` (`reconstructs`), `embed`
(`embeds_pairs`).

`batch` is what the input spec (`ssl_jax.data.inputs`) says the method receives, `run.inputs`: `image`, normalised
float32 `[B, H, W, 3]`, for single-view methods, or `views`, one normalised float32 `[B, V, S, S, 3]` array per view
group (photometrically augmented on the device), plus `label` and `index` `[B]`; or, for text, `text`,
`text_segment_ids` and `text_positions` int32 `[B, T]` (windows of a token stream) and `index`; or, for
image-caption pairs (CLIP, SigLIP), `image` with its caption's `text` and `text_segment_ids`, `label` and `index`;
or, for speech (wav2vec 2.0), `audio` float32 `[B, S]` (zero-padded waveforms) with `audio_length` int32 `[B]`, `label`
and `index`. Evaluation batches (`represent`, `predict`, `reconstruct`, `embed`) hold `image`, normalised float32
`[B, H, W, 3]` (the centre view), the probe's padded `text` examples (segment 0 on the padding), both (image-caption
pairs), or `audio` with `audio_length` (the centre crop).
"""

from ssl_jax.methods import barlow_twins
from ssl_jax.methods import beit
from ssl_jax.methods import bert
from ssl_jax.methods import byol
from ssl_jax.methods import classify
from ssl_jax.methods import clip
from ssl_jax.methods import colorization
from ssl_jax.methods import contract
from ssl_jax.methods import data2vec
from ssl_jax.methods import dino
from ssl_jax.methods import dinov2
from ssl_jax.methods import gpt
from ssl_jax.methods import ijepa
from ssl_jax.methods import inpainting
from ssl_jax.methods import jigsaw
from ssl_jax.methods import mae
from ssl_jax.methods import mocov3
from ssl_jax.methods import rotation
from ssl_jax.methods import simclr
from ssl_jax.methods import simsiam
from ssl_jax.methods import swav
from ssl_jax.methods import vicreg
from ssl_jax.methods import vq_tokenizer
from ssl_jax.methods import wav2vec2

METHODS: dict[str, type[contract.Method]] = {
    "barlow_twins": barlow_twins.BarlowTwins,
    "beit": beit.BEiT,
    "bert": bert.BERT,
    "byol": byol.BYOL,
    "classify": classify.Classify,
    "clip": clip.CLIP,
    "colorization": colorization.Colorization,
    "data2vec": data2vec.Data2Vec,
    "dino": dino.DINO,
    "dinov2": dinov2.DINOv2,
    "gpt": gpt.GPT,
    "ijepa": ijepa.IJEPA,
    "inpainting": inpainting.Inpainting,
    "jigsaw": jigsaw.Jigsaw,
    "mae": mae.MAE,
    "mocov3": mocov3.MoCoV3,
    "rotation": rotation.Rotation,
    "simclr": simclr.SimCLR,
    "siglip": clip.SigLIP,
    "simsiam": simsiam.SimSiam,
    "swav": swav.SwAV,
    "vicreg": vicreg.VICReg,
    "vq_tokenizer": vq_tokenizer.VQTokenizer,
    "wav2vec2": wav2vec2.Wav2Vec2,
}


def get(name: str) -> type[contract.Method]:
  """The method class registered as `name`."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}.")
  return METHODS[name]


def create(name: str, **kwargs) -> contract.Method:
  """Builds the method `name` with its keyword arguments (see each class's `create`)."""
  return get(name).create(**kwargs)

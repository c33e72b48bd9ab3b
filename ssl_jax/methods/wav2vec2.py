"""wav2vec 2.0 (Baevski et al. 2020, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations"; fairseq's `Wav2Vec2Model` and `Wav2vecCriterion`).

A convolutional feature encoder turns the waveform into latent frames (20 ms each); spans of frames are masked
(`masking.span_masking`: p = 0.065 of the frames start a span of 10, about half of them masked) before the
transformer context network; a Gumbel product quantizer turns the unmasked latents into targets (G = 2 groups of V =
320 codewords, temperature annealed from 2 to 0.5 by 0.999995 per update). At each masked frame the context vector
must pick its own quantized latent among K = 100 distractors, the quantized latents of other masked frames of the same
utterance, by cosine similarity at temperature kappa = 0.1 (`losses.wav2vec2_contrastive_loss`). Two more terms: the
codebook diversity penalty (alpha = 0.1, `losses.diversity_loss`: the softmax over the codewords averaged over the
batch's masked frames should use them all) and the feature penalty (weight 10: the mean square of the feature
encoder's output).

    loss = L_m + 0.1 L_d + 10 L_f,   L_m averaged over every masked frame of the batch

Representation (`represent`, the released encoder): the context network's output on the unmasked input, averaged
over the frames of the utterance (`models.audio.Wav2Vec2Encoder`'s `pooled`).

Monitors (logged every `log_every` steps): the contrastive accuracy (chance is 1 / (K + 1)), the code perplexity (how
many codewords are chosen, summed over groups: fairseq's `code_perplexity`) and the softmax's (`prob_perplexity`), the
diversity loss, the feature penalty, the Gumbel temperature and the fraction of the utterances' frames masked. A run
whose chosen codewords collapse (code perplexity under `2 G`: about two codewords per group) prints a warning naming
the step and the remedies (`health_warnings`).

Deviations (each named where it is made): utterances are zero-padded to a fixed length with their real lengths (frames
past the end are never masked, attended to or pooled) instead of cropping every batch to its shortest utterance;
every utterance keeps its own number of masked frames (fairseq trims them to the batch's smallest count); attention
probabilities are not dropped out; a distractor equal to the target is found by a distance test rather than
bitwise equality.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax import masking
from ssl_jax.methods import contract
from ssl_jax.models import audio
from ssl_jax.models import transformer


class Wav2Vec2Model(nn.Module):
  """The encoder (`audio.Wav2Vec2Encoder`), the quantizer and the two projections into the final dimension:
  `final_proj` of the context vectors and `project_q` of the quantized latents (fairseq's names)."""
  encoder: dict
  final_dim: int = 256
  latent_groups: int = 2
  latent_vars: int = 320
  latent_dim: int = 256
  dropout_features: float = 0.1

  @nn.compact
  def __call__(self, audio_batch, audio_length, mask, train: bool = False, key=None, temperature=None):
    enc = audio.Wav2Vec2Encoder(**self.encoder, name="encoder")
    out = enc(audio_batch, audio_length, mask, train=train)
    features = transformer.dropout(self, out["features"], self.dropout_features, train)
    q, logits, codes = audio.GumbelQuantizer(self.latent_groups, self.latent_vars, self.latent_dim,
                                             name="quantizer")(features, key, temperature)
    quantized = audio.torch_dense(self.final_dim, self.latent_dim, ("mlp", None), name="project_q")(q)
    context = audio.torch_dense(self.final_dim, enc.width, ("embed", None), name="final_proj")(
        out["tokens"].astype(jnp.float32))
    return dict(out, context=context, quantized=quantized, code_logits=logits, codes=codes)


@dataclasses.dataclass(frozen=True)
class Wav2Vec2(contract.Method):
  """wav2vec 2.0 behind the method contract (module docstring)."""
  model: Wav2Vec2Model
  encoder_spec: tuple
  conv_layers: tuple
  mask_prob: float
  mask_length: int
  min_masks: int
  num_negatives: int
  logit_temp: float
  diversity_weight: float
  feature_penalty_weight: float
  latent_temp: tuple

  def _frames(self, batch):
    num = audio.num_frames(batch["audio"].shape[1], self.conv_layers)
    return num, audio.num_frames(batch["audio_length"], self.conv_layers)

  def _mask(self, rng, batch):
    num, lengths = self._frames(batch)
    return masking.span_masking(rng, batch["audio"].shape[0], num, mask_prob=self.mask_prob,
                                span_length=self.mask_length, min_spans=self.min_masks, lengths=lengths)

  def temperature(self, step):
    """The Gumbel-softmax temperature at update `step`: `max(start * decay ** step, end)` (fairseq's
    `set_num_updates`)."""
    start, end, decay = self.latent_temp
    log_decay = math.log(decay)       # in float64: float32's 0.999995 ** 100k is off by 7e-4
    return jnp.maximum(start * jnp.exp(jnp.asarray(step, jnp.float32) * log_decay), end)

  def init(self, rng, batch):
    mask = self._mask(jax.random.fold_in(rng, 1), batch)
    params = self.model.init({"params": rng}, batch["audio"], batch["audio_length"], mask)["params"]
    return params, {}

  def loss(self, params, extra, batch, rng, step):
    mask = self._mask(jax.random.fold_in(rng, 0), batch)
    tau = self.temperature(step)
    out = self.model.apply({"params": params}, batch["audio"], batch["audio_length"], mask, train=True,
                           key=jax.random.fold_in(rng, 2), temperature=tau,
                           rngs={"dropout": jax.random.fold_in(rng, 1)})
    logits = losses.wav2vec2_contrastive_logits(out["context"], out["quantized"], mask, jax.random.fold_in(rng, 3),
                                                self.num_negatives, self.logit_temp)
    ce = jax.nn.logsumexp(logits, axis=-1) - logits[..., 0]
    masked = jnp.sum(mask)
    contrastive = jnp.sum(ce * mask) / jnp.maximum(masked, 1.0)     # over every masked frame of the batch
    diversity = losses.diversity_loss(out["code_logits"], mask)
    penalty = out["feature_penalty"]
    loss = contrastive + self.diversity_weight * diversity + self.feature_penalty_weight * penalty
    groups, num_vars = out["code_logits"].shape[-2:]
    metrics = {
        "loss": loss, "contrastive_loss": contrastive, "diversity_loss": diversity, "feature_penalty": penalty,
        "monitor/contrastive_accuracy": losses.contrastive_accuracy(logits, mask),
        "monitor/code_perplexity": losses.code_perplexity(out["codes"], num_vars, mask),
        "monitor/prob_perplexity": groups * num_vars * (1.0 - diversity),
        "monitor/gumbel_temperature": tau,
        "monitor/masked_fraction": masked / jnp.maximum(jnp.sum(out["frames"]), 1.0),
    }
    return loss, (metrics, extra)

  def health_warnings(self, metrics):
    groups = self.model.latent_groups
    ppl = metrics.get("monitor/code_perplexity")
    if ppl is not None and float(ppl) < 2 * groups:
      return (f"codebook collapse: the quantizer chooses about {float(ppl):.1f} codewords over its {groups} groups "
              f"of {self.model.latent_vars} (monitor/code_perplexity < {2 * groups}); the contrastive task becomes "
              "trivial. Raise method.diversity_weight, lower the learning rate, or check the input scale "
              "(config.data.audio.normalize).",)
    return ()

  def represent(self, params, extra, batch):
    del extra
    encoder = audio.Wav2Vec2Encoder(**self.model.encoder)
    return {"audio": encoder.apply({"params": params["encoder"]}, batch["audio"], batch["audio_length"])["pooled"]}

  def encoders(self, params, extra):
    """The encoder (`backbone.create` keywords, variables), for probing, fine-tuning and export."""
    del extra
    return {"audio": (dict(self.encoder_spec), {"params": params["encoder"]})}

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, mask_prob: float = 0.65, mask_length: int = 10,
             min_masks: int = 2, num_negatives: int = 100, logit_temp: float = 0.1, final_dim: int = 256,
             latent_groups: int = 2, latent_vars: int = 320, latent_dim: int = 256,
             latent_temp: tuple = (2.0, 0.5, 0.999995), diversity_weight: float = 0.1,
             feature_penalty_weight: float = 10.0, dropout_features: float = 0.1) -> "Wav2Vec2":
    """Builds wav2vec 2.0.

    Args:
      model: the encoder (`config.model`, arch "wav2vec2": fields of `models.audio.Wav2Vec2Encoder`).
      run: the run's facts (the waveform length).
      mask_prob: fairseq's `mask_prob` (0.65: p = 0.065 per frame in the paper's notation, times the span).
      mask_length: M, the span (10 frames).
      min_masks: at least this many spans per utterance (2).
      num_negatives: K distractors per masked frame (100).
      logit_temp: kappa (0.1).
      final_dim: the dimension of the contrastive space (base 256, large 768).
      latent_groups, latent_vars, latent_dim: G (2), V (320), and the codewords' concatenated dimension (base 256,
        large 768; fairseq's `latent_dim` 0 means `final_dim`).
      latent_temp: (start, end, decay per update) of the Gumbel temperature (2, 0.5, 0.999995).
      diversity_weight: alpha (0.1).
      feature_penalty_weight: the feature penalty's weight (10).
      dropout_features: dropout on the quantizer's input (0.1).
    """
    model = dict(model)
    arch = model.pop("arch", "wav2vec2")
    if arch != "wav2vec2":
      raise ValueError(f"wav2vec 2.0's encoder is config.model.arch='wav2vec2', not {arch!r}.")
    if "audio" not in run.inputs:
      raise ValueError(f"wav2vec2 trains on speech (config.data = config_lib.audio_data(...)); the data yields "
                       f"{sorted(run.inputs)}.")
    enc = {k: v for k, v in model.items() if v is not None}
    if "conv_layers" in enc:
      enc["conv_layers"] = tuple(tuple(c) for c in enc["conv_layers"])
    conv_layers = enc.get("conv_layers", audio.CONV_LAYERS)
    frames = audio.num_frames(run.inputs["audio"].shape[0], conv_layers)
    if frames <= mask_length:
      raise ValueError(f"config.data.audio.max_length={run.inputs['audio'].shape[0]} gives {frames} frames, not more "
                       f"than the mask span method.mask_length={mask_length}: use longer crops or shorter spans.")
    if not 0.0 < mask_prob < 1.0:
      raise ValueError(f"method.mask_prob must be positive (fairseq's 0.65), got {mask_prob}.")
    if num_negatives < 1:
      raise ValueError(f"method.num_negatives must be at least 1, got {num_negatives}.")
    if latent_dim % latent_groups:
      raise ValueError(f"method.latent_dim={latent_dim} must be divisible by method.latent_groups={latent_groups}.")
    start, end, decay = latent_temp
    if not (start >= end > 0 and 0 < decay <= 1):
      raise ValueError(f"method.latent_temp={tuple(latent_temp)} must be (start >= end > 0, 0 < decay <= 1), e.g. "
                       "(2.0, 0.5, 0.999995).")
    if "dtype" in enc:
      enc["dtype"] = jnp.dtype(enc["dtype"])
    net = Wav2Vec2Model(enc, final_dim, latent_groups, latent_vars, latent_dim, dropout_features)
    return cls(model=net, encoder_spec=contract.freeze(dict(model, arch="wav2vec2")), conv_layers=conv_layers,
               mask_prob=mask_prob, mask_length=mask_length, min_masks=min_masks, num_negatives=num_negatives,
               logit_temp=logit_temp, diversity_weight=diversity_weight,
               feature_penalty_weight=feature_penalty_weight, latent_temp=tuple(latent_temp))

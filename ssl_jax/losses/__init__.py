"""Self-supervised objectives as pure `jax.numpy` functions.

Every function computes its loss for the GLOBAL batch it is given (under `jit` the batch may be sharded over devices
and hosts; the result does not depend on how), has static shapes, accumulates in float32, and imports only jax and
numpy. Losses return per-example values (shape `[B]`, documented) so that callers choose the reduction, except the
whole-batch objectives (Barlow Twins, VICReg, wav2vec 2.0 diversity), which return a scalar.
"""

from ssl_jax.losses.contrastive import clip_loss
from ssl_jax.losses.contrastive import clip_loss_ring
from ssl_jax.losses.contrastive import info_nce
from ssl_jax.losses.contrastive import l2_normalize
from ssl_jax.losses.contrastive import nt_xent
from ssl_jax.losses.contrastive import siglip_loss
from ssl_jax.losses.contrastive import siglip_loss_ring
from ssl_jax.losses.distillation import byol_loss
from ssl_jax.losses.distillation import dino_cross_entropy
from ssl_jax.losses.distillation import dino_loss
from ssl_jax.losses.distillation import ibot_patch_loss
from ssl_jax.losses.distillation import koleo_loss
from ssl_jax.losses.distillation import sinkhorn_knopp
from ssl_jax.losses.distillation import update_center
from ssl_jax.losses.reconstruction import data2vec_targets
from ssl_jax.losses.reconstruction import instance_norm
from ssl_jax.losses.reconstruction import layer_norm
from ssl_jax.losses.reconstruction import mae_loss
from ssl_jax.losses.reconstruction import masked_mean
from ssl_jax.losses.reconstruction import patch_normalize
from ssl_jax.losses.reconstruction import regression_loss
from ssl_jax.losses.redundancy import barlow_twins_loss
from ssl_jax.losses.redundancy import barlow_twins_terms
from ssl_jax.losses.redundancy import vicreg_loss
from ssl_jax.losses.redundancy import vicreg_terms
from ssl_jax.losses.tokens import causal_lm_loss
from ssl_jax.losses.tokens import masked_token_loss
from ssl_jax.losses.tokens import token_cross_entropy
from ssl_jax.losses.wav2vec2 import code_perplexity
from ssl_jax.losses.wav2vec2 import contrastive_accuracy
from ssl_jax.losses.wav2vec2 import diversity_loss
from ssl_jax.losses.wav2vec2 import sample_negative_positions
from ssl_jax.losses.wav2vec2 import wav2vec2_contrastive_logits
from ssl_jax.losses.wav2vec2 import wav2vec2_contrastive_loss

__all__ = [
    "barlow_twins_loss", "barlow_twins_terms", "byol_loss", "causal_lm_loss", "clip_loss", "clip_loss_ring",
    "code_perplexity", "contrastive_accuracy", "data2vec_targets", "dino_cross_entropy", "dino_loss", "diversity_loss", "ibot_patch_loss", "info_nce",
    "instance_norm", "koleo_loss", "l2_normalize", "layer_norm", "mae_loss", "masked_mean", "masked_token_loss",
    "nt_xent", "patch_normalize", "regression_loss", "sample_negative_positions", "siglip_loss", "siglip_loss_ring",
    "sinkhorn_knopp", "token_cross_entropy", "update_center", "vicreg_loss", "vicreg_terms",
    "wav2vec2_contrastive_logits", "wav2vec2_contrastive_loss",
]

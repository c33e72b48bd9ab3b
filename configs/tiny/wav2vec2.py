"""wav2vec 2.0 on the embedded spoken words: a laptop-CPU quick start of speech pretraining from the waveform alone.

    python -m ssl_jax.data.speech          # once (15 s): synthesises the clips; needs `pip install 'ssl_jax[speech]'`
    python main.py --config=configs/tiny/wav2vec2.py --workdir=/tmp/wav2vec2_tiny

The base recipe's structure at laptop size: the 7-layer feature encoder with the paper's kernels and strides (one
frame per 20 ms) but 64 channels, a 4-block post-LayerNorm transformer of width 128 with the convolutional position
embedding (16 taps, 4 groups), the Gumbel product quantizer (2 groups of 320 codewords, 64 dimensions), spans of 5
frames masked with fairseq's mask_prob 0.65, K = 20 distractors, kappa 0.1, the diversity (0.1) and feature (10)
penalties, Adam (0.9, 0.98, eps 1e-6, weight decay 0.01) with warm-up and linear decay, batches of 32 crops of 0.8 s,
1,000 steps (12 passes over the 2,660 clips of the 76 training speakers). Then probed by kNN and a linear classifier
of the mean context vector on which of 35 words the 20 held-out speakers say, against the same encoder at random
initialisation and the clips' log-mel statistics (chance is 1/35 = 0.029).

7 min 31 s on the 2-core Intel Xeon of the README (Sapphire Rapids, AVX-512; 2026-12-02), about 90 clips/s; at the
end the contrastive accuracy is 0.56 (chance 1/21 = 0.048), 23 codewords in use (code perplexity; 339 at step 250
while the temperature is high), the masked fraction 0.50:

                  pretrained   random init   log-mel statistics
  kNN top-1         0.8357       0.3200        0.8914
  linear top-1      0.9729       0.6700        0.9886

(The synthetic voices are clean and regular: the log-mel statistics of a clip already separate its word. Before the
set was made reproducible (espeak-ng's noise seeded per clip), the same recipe gave 0.8871 / 0.9829, and 1,500 steps
of 64 crops, 12 min, 0.8971 / 0.9914.)

Deviations from the base recipe, for 0.2-0.8 s words on a 2-core CPU: a small encoder; spans of 5 frames instead of 10
(an utterance of 20 frames would otherwise be three-quarters masked); 20 distractors instead of 100 (an utterance has
about 10 masked frames to draw them from); the Gumbel temperature annealed over this run's steps (2 -> 0.5 by 0.9986
per step instead of 0.999995: the base run's 400k steps); a position convolution of 16 taps in 4 groups instead of
128 in 16 (the clips are 39 frames); weight decay on the weights only (the default; fairseq's Adam decays every
parameter).
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 32
  c.total_steps = 1000
  c.log_every = 50
  c.ckpt_every = 500
  c.eval_every = 0

  c.data = config_lib.audio_data("spoken_words", max_length=12800, normalize=False)

  c.model = ml_collections.ConfigDict(dict(
      arch="wav2vec2", conv_layers=((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2, extractor_mode="group_norm",
      width=128, depth=4, num_heads=4, mlp_dim=512, pos_conv_kernel=16, pos_conv_groups=4, layer_norm_first=False,
      dropout=0.1, dropout_input=0.1, layer_drop=0.05, feature_grad_mult=0.1, dtype="float32"))
  config_lib.add_vit_execution_options(c.model)

  c.method.name = "wav2vec2"
  c.method.mask_prob = 0.65
  c.method.mask_length = 5
  c.method.num_negatives = 20
  c.method.logit_temp = 0.1
  c.method.final_dim = 64
  c.method.latent_groups = 2
  c.method.latent_vars = 320
  c.method.latent_dim = 64
  c.method.latent_temp = (2.0, 0.5, 0.9986)
  c.method.diversity_weight = 0.1
  c.method.feature_penalty_weight = 10.0

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3
  c.optim.lr_batch_base = 32
  c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.98, 1e-6
  c.optim.weight_decay = 0.01
  c.optim.schedule = "linear"
  c.optim.warmup_steps = 100

  c.eval.data_name = "spoken_words"
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 140
  c.eval.raw_baseline = True      # the log-mel statistics of each clip: the baseline a learned feature must beat
  c.lock()
  return c

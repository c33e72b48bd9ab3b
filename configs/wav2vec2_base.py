"""wav2vec 2.0 BASE (95M parameters) pretrained on LibriSpeech 960 h (Baevski et al. 2020, "wav2vec 2.0: A Framework
for Self-Supervised Learning of Speech Representations"; fairseq's `wav2vec2_base_librispeech.yaml`).

    python examples/wav2vec/wav2vec_manifest.py LibriSpeech/ --dest data/ls960 --ext flac --valid-percent 0.01
    python main.py --config=configs/wav2vec2_base.py --config.data.data_dir=data/ls960 --workdir=gs://bucket/w2v2
    python main.py --config=configs/wav2vec2_base.py --dry_run   # shardings and memory of the step, no data needed

The data are fairseq's manifests (`<data_dir>/train.tsv`, `valid.tsv`: the audio root, then `<path>\\t<samples>`
lines), FLAC or WAV at 16 kHz. The paper reports 6.1 / 13.5 WER on test-clean / other after fine-tuning on 10 min of
labels (with a 4-gram LM) and 3.4 / 8.0 on 100 h (Table 1 and 2); fine-tuning with CTC is not part of ssl_jax, and
nothing here is measured at this scale yet. The run is evaluated by a kNN probe of the mean context vector on the
embedded spoken words (`ssl_jax.data.speech`: 35 words, held-out synthetic speakers), which checks the encoder learns
speech, not the paper's numbers.

Hyperparameters (paper Sec. 4.2; the fairseq config and `Wav2Vec2Config` defaults):
  feature encoder: 7 convolutions of 512 channels, kernels (10, 3, 3, 3, 3, 2, 2), strides (5, 2, 2, 2, 2, 2, 2), no
    bias, GroupNorm in the first layer, GELU; its gradient scaled by 0.1; feature penalty weight 10
  context network: 12 post-LayerNorm blocks, width 768, 12 heads, MLP 3072, convolutional position embedding of 128
    taps in 16 groups; dropout 0.1, LayerDrop 0.05, input and feature dropout 0.1
  quantizer: G = 2 groups of V = 320 codewords, 256 dimensions in all; Gumbel temperature 2 -> 0.5, x 0.999995 per
    update; diversity weight alpha = 0.1; final dimension 256
  masking: mask_prob 0.65, spans of M = 10 frames, at least 2 spans; K = 100 distractors, kappa = 0.1
  crops of at most 250,000 samples (15.6 s), utterances under 32,000 (2 s) left out; no normalisation
  batch: 1.4M samples per GPU on 64 GPUs (89.6M samples, 1.6 h of audio); 400,000 updates
  Adam, lr 5e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.01 on every parameter; 32,000 warm-up updates, then
    linear decay to 0 (fairseq's `polynomial_decay`, power 1); fp16
Deviations:
  - fixed-shape batches: 384 crops of at most 233,333 samples (14.6 s), zero-padded with their lengths (89.6M samples
    of crop space, as fairseq's 64 x 1.4M; fairseq fills each GPU's batch by total samples and crops every batch to
    its shortest utterance, so it sees more audio per step: about 1.3 h here for LibriSpeech's average 12.3 s);
  - every utterance keeps its own number of masked frames (fairseq trims them to the batch's smallest count);
  - attention probabilities are not dropped out (fairseq: attention_dropout 0.1);
  - bfloat16 compute with float32 parameters instead of fp16 with loss scaling.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 384
  c.total_steps = 400_000
  c.log_every = 200
  c.ckpt_every = 25_000
  c.eval_every = 50_000

  c.data = config_lib.audio_data("manifest", max_length=233_333, min_length=32_000, normalize=False, num_workers=6)
  c.data.train_split = "train"

  c.model = ml_collections.ConfigDict(dict(
      arch="wav2vec2", conv_layers=((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2,
      extractor_mode="group_norm", conv_bias=False, width=768, depth=12, num_heads=12, mlp_dim=3072,
      pos_conv_kernel=128, pos_conv_groups=16, layer_norm_first=False, dropout=0.1, dropout_input=0.1,
      layer_drop=0.05, feature_grad_mult=0.1, dtype="bfloat16"))
  config_lib.add_vit_execution_options(c.model)

  c.method.name = "wav2vec2"
  c.method.mask_prob = 0.65
  c.method.mask_length = 10
  c.method.min_masks = 2
  c.method.num_negatives = 100
  c.method.logit_temp = 0.1
  c.method.final_dim = 256
  c.method.latent_groups = 2
  c.method.latent_vars = 320
  c.method.latent_dim = 256
  c.method.latent_temp = (2.0, 0.5, 0.999995)
  c.method.diversity_weight = 0.1
  c.method.feature_penalty_weight = 10.0
  c.method.dropout_features = 0.1

  c.optim.name = "adamw"
  c.optim.base_lr = 5e-4
  c.optim.lr_batch_base = c.batch_size          # the peak learning rate itself
  c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.98, 1e-6
  c.optim.weight_decay = 0.01
  c.optim.no_decay = ()
  c.optim.decay_biases_and_norms = True         # fairseq's Adam decays every parameter
  c.optim.schedule = "linear"
  c.optim.warmup_steps = 32_000

  c.eval.data_name = "spoken_words"              # a probe the machine has: the embedded spoken words
  c.eval.train_split = "train"
  c.eval.test_split = "test"
  c.eval.batch_size = 256
  c.eval.evaluators = ml_collections.ConfigDict(dict(knn=dict(type="knn", k=20, temperature=0.07, vote="weighted")))
  c.lock()
  return c

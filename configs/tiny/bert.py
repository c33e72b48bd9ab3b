"""BERT on the embedded docstrings: a laptop-CPU quick start of masked language modelling.

    python main.py --config=configs/tiny/bert.py --workdir=/tmp/bert_tiny

A 4-block BERT (post-LayerNorm, width 128, 4 heads, windows of 64 tokens, tied output layer with its bias, hidden
dropout 0.1) on the standard library's docstrings and pydoc topics (1.9 MB of English), tokenized in memory at
start-up by an uncased WordPiece of 4,096 tokens trained on the training documents; 15% of the tokens masked afresh
every step (80% [MASK], 10% random, 10% kept), AdamW with BERT's weight decay 0.01 and gradient clipping at 1.0,
1,500 steps (about 13 passes over the 467k training tokens). Evaluated by the masked-token loss and accuracy on
held-out modules' docstrings (against the unigram model and the most frequent token), and by kNN and a linear probe
of the mean hidden state on which top-level package a docstring belongs to (held out by module), against the same
model at random initialisation and the bag of tokens.

Deviations from BERT-base, for a 2-core CPU: a small model, vocabulary and window, a short cosine schedule at a
higher learning rate instead of the linear decay, no next-sentence prediction (as RoBERTa).
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 64
  c.total_steps = 1500            # measured: at 1000 steps the probe gains 3-4 points over random init, at 1500 10-15
  c.log_every = 50
  c.ckpt_every = 500

  c.data = config_lib.text_data("stdlib_docstrings", length=64, tokenizer="wordpiece:4096")

  c.model = ml_collections.ConfigDict(dict(arch="text", width=128, depth=4, num_heads=4, mlp_dim=512, dropout=0.1,
                                           type_vocab_size=2, dtype="float32"))
  config_lib.add_vit_execution_options(c.model)

  c.method.name = "bert"
  c.method.mask_prob = 0.15

  c.optim.name = "adamw"
  c.optim.base_lr = 2e-3
  c.optim.lr_batch_base = 64
  c.optim.b1, c.optim.b2 = 0.9, 0.999
  c.optim.weight_decay = 0.01
  c.optim.grad_clip = 1.0         # BERT's; without it this post-LayerNorm model at 3e-3 collapsed to the unigram
  c.optim.warmup_steps = 100
  c.optim.min_lr = 1e-4

  config_lib.text_evaluation(c, batch_size=64)   # the probe, and loss / perplexity on held-out docstrings
  c.eval.raw_baseline = True   # baselines: the probe on the bag of tokens, the unigram model's validation loss
  c.lock()
  return c

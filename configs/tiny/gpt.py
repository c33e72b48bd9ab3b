"""GPT-2 on the embedded docstrings: a laptop-CPU quick start of next-token prediction.

    python main.py --config=configs/tiny/gpt.py --workdir=/tmp/gpt_tiny

A 4-block GPT-2 (width 128, 4 heads, context 64, tied output layer) on the standard library's docstrings and pydoc
topics (1.9 MB of English), tokenized in memory at start-up by a byte-level BPE of 4,096 tokens trained on the
training documents; AdamW with GPT-2's betas (0.9, 0.95), weight decay 0.1, gradient clipping 1.0, cosine decay to a
tenth. Evaluated by kNN and a linear probe of the mean hidden state on which top-level package a docstring belongs
to (held out by module), against the same model at random initialisation and the bag of tokens.

Deviations from GPT-2 (configs/gpt2_small.py when it lands), for a 2-core CPU: a small model and context, a small
vocabulary, no dropout, a short schedule.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 64
  c.total_steps = 600
  c.log_every = 50
  c.ckpt_every = 300

  c.data = config_lib.text_data("stdlib_docstrings", length=64, tokenizer="bpe:4096")

  c.model = ml_collections.ConfigDict(dict(arch="text", width=128, depth=4, num_heads=4, mlp_dim=512, dropout=0.0,
                                           dtype="float32"))
  config_lib.add_vit_execution_options(c.model)

  c.method.name = "gpt"

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3
  c.optim.lr_batch_base = 64
  c.optim.b1, c.optim.b2 = 0.9, 0.95
  c.optim.weight_decay = 0.1
  c.optim.grad_clip = 1.0
  c.optim.warmup_steps = 50
  c.optim.min_lr = 1e-4

  config_lib.text_evaluation(c, batch_size=64)   # the probe, and loss / perplexity on held-out docstrings
  c.eval.sample_prompts = ("Return the number of", "This module provides", "Raise ValueError if")   # the report
  c.eval.raw_baseline = True   # baselines: the probe on the bag of tokens, the unigram model's validation loss
  c.lock()
  return c

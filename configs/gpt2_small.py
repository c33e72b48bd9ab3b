"""GPT-2 small (124M parameters) pretraining (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners"), with the optimisation of its open reproductions, since the paper does not publish its own.

    python -m ssl_jax.data.prepare_text --input='openwebtext/*.txt' --tokenizer=gpt2/tokenizer.json --out=data/owt
    python main.py --config=configs/gpt2_small.py --config.data.data_dir=data/owt --workdir=gs://bucket/gpt2_small
    python main.py --config=configs/gpt2_small.py:10b ...     # llm.c's 10B-token schedule (19,073 steps)
    python main.py --config=configs/gpt2_small.py --dry_run   # shardings and memory of the step, no data needed

`--tokenizer` is GPT-2's own `tokenizer.json` (Hugging Face's `gpt2`, 50,257 tokens) copied to the machine, or
`bpe:50257` to train a byte-level BPE of that size on the corpus. Sized for 8-64 accelerators: nanoGPT reaches a
validation loss of about 2.85 on OpenWebText after its 600,000 steps (8 A100s, about 4 days); llm.c's 10B-token run
matches GPT-2 124M's HellaSwag accuracy (29.4%) on FineWeb. Neither is measured with this code yet.

Hyperparameters (GPT-2 paper Sec. 2.3 for the model; nanoGPT's `train_gpt2.py` / the GPT-3 paper's "Small" row,
Table 2.1, for the optimisation):
  12 layers, width 768, 12 heads of 64, MLP 3072; context 1024; learned positions; pre-LayerNorm (eps 1e-5), tanh
    GELU, a final LayerNorm; output layer tied to the token embedding; N(0, 0.02) weights, the residual projections
    N(0, 0.02 / sqrt(2 x 12)); dropout 0 (nanoGPT; GPT-2 used 0.1)
  vocabulary 50,257 (byte-level BPE), the embedding padded to 50,304 rows as nanoGPT does (a multiple of 64, so that
    it splits over tensor-parallel devices; the 47 extra rows are never a target)
  batch 512 windows of 1024 tokens = 524,288 tokens per step (GPT-3 Small: 0.5M; nanoGPT: 491,520)
  AdamW lr 6e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every matrix (embeddings included; not on biases
    and LayerNorms), gradient clipping at global norm 1.0
  2,000 warm-up steps, cosine decay to 6e-5 at step 600,000 (nanoGPT); `:10b`: 715 warm-up steps, cosine to 0 at
    step 19,073 (llm.c's GPT-2 124M reproduction on 10B tokens)
  bfloat16 compute, float32 parameters and optimizer state
Deviations: documents are packed into windows with segment ids, so attention and the loss never cross a document
boundary (GPT-2 and nanoGPT let both run across the end-of-text token); the evaluation adds the downstream probe of
the embedded docstrings (kNN and linear on mean hidden states, tokenized by the run's tokenizer) to the validation
loss.
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  schedules = {None: (600_000, 2_000, 6e-5), "": (600_000, 2_000, 6e-5), "10b": (19_073, 715, 0.0)}
  if arg not in schedules:
    raise ValueError(f"configs/gpt2_small.py takes '' (nanoGPT's 600k steps) or '10b' (llm.c), got {arg!r}.")
  total, warmup, min_lr = schedules[arg]
  c = config_lib.base_config()
  c.batch_size = 512
  c.total_steps = total
  c.log_every = 10
  c.ckpt_every = 2_000
  c.eval_every = 5_000

  c.data = config_lib.text_data("prepared", length=1024, num_workers=8)

  c.model = ml_collections.ConfigDict(dict(arch="text", vocab_size=50_304, max_length=1024, width=768, depth=12,
                                           num_heads=12, mlp_dim=3072, dropout=0.0, dtype="bfloat16"))
  config_lib.add_vit_execution_options(c.model)

  c.method.name = "gpt"

  c.optim.name = "adamw"
  c.optim.base_lr = 6e-4
  c.optim.lr_batch_base = c.batch_size          # 6e-4 is the peak learning rate itself
  c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.95, 1e-8
  c.optim.weight_decay = 0.1
  c.optim.no_decay = ()                          # nanoGPT decays every matrix, the position table too
  c.optim.grad_clip = 1.0
  c.optim.warmup_steps = warmup
  c.optim.schedule = "cosine"
  c.optim.min_lr = min_lr

  config_lib.text_evaluation(c, batch_size=128)
  c.eval.data_name = "stdlib_docstrings_probe"    # the embedded probe, tokenized by this run's tokenizer
  c.eval.evaluators.validation = dict(type="language_model", max_batches=80)   # 80 x 128 windows: 10.5M tokens
  c.eval.sample_prompts = ("The meaning of life is", "In a shocking finding, scientists discovered",
                           "def fibonacci(n):")
  c.eval.sample_tokens = 64
  c.lock()
  return c

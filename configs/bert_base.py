"""BERT-base (110M parameters) masked-language-model pretraining (Devlin et al. 2019, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding"), in the paper's two phases.

    python -m ssl_jax.data.prepare_text --input='books_wiki/*.txt' --tokenizer=wordpiece:30522 --out=data/bw
    python main.py --config=configs/bert_base.py --config.data.data_dir=data/bw --workdir=gs://bucket/bert_128
    python main.py --config=configs/bert_base.py:512 --config.data.data_dir=data/bw \\
        --config.init_from=gs://bucket/bert_128 --workdir=gs://bucket/bert_512
    python main.py --config=configs/bert_base.py --dry_run   # shardings and memory of the step, no data needed

`--tokenizer` is `wordpiece:30522` (an uncased WordPiece trained on the corpus, [SEP] [PAD] [UNK] [CLS] [MASK] first)
or bert-base-uncased's own `tokenizer.json` copied to the machine: the [MASK] id and the special tokens never masked
are read from the tokenizer. The paper reports 84.6 / 83.4 MNLI-m/mm after fine-tuning (Table 1); GLUE fine-tuning is
not part of ssl_jax, and nothing here is measured at this scale yet.

Hyperparameters (paper Sec. 3.1 and appendix A.2; Google's `run_pretraining.py` and `optimization.py`):
  12 layers, width 768, 12 heads of 64, MLP 3072; post-LayerNorm blocks (eps 1e-12), exact GELU; learned positions
    for 512 tokens, 2 token types, an embedding LayerNorm; masked-LM head dense + GELU + LayerNorm, output layer
    tied to the token embedding with its own bias; N(0, 0.02) weights; dropout 0.1
  WordPiece vocabulary of 30,522 (uncased)
  masked LM: 15% of the tokens chosen (never special tokens), 80% -> [MASK], 10% random, 10% kept; loss on the
    chosen ones
  batch 256 sequences; 1,000,000 steps in all: 900,000 of 128 tokens (`:128`, the default), then 100,000 of 512
    (`:512`)
  Adam lr 1e-4, betas (0.9, 0.999), eps 1e-6, weight decay 0.01 (decoupled, not on biases and LayerNorms), gradient
    clipping at global norm 1.0; 10,000 warm-up steps, then linear decay to 0 at step 1,000,000
Deviations:
  - no next-sentence prediction (RoBERTa, Liu et al. 2019, found that it does not help): a sequence is a window of
    the token stream, documents separated by [SEP], attention kept within a document (segment ids), one token type;
    masks drawn afresh every step (dynamic masking, as RoBERTa; BERT fixed them when preparing the data);
  - the linear decay runs from the end of the warm-up (Hugging Face's `get_linear_schedule_with_warmup`; Google's
    decays from step 0, so its rate at step 10,000 is 1% lower); phase 1 decays to 1e-5 at step 900,000, where the
    paper's single schedule is, and phase 2 restarts Adam's moments (`init_from` loads the model only) with a
    1,000-step warm-up to 1e-5, then decays to 0;
  - attention probabilities are not dropped out (hidden and embedding dropout are).
"""

import ml_collections

from ssl_jax import config as config_lib


def get_config(arg=None):
  phases = {None: "128", "": "128", "128": "128", "512": "512"}
  if arg not in phases:
    raise ValueError(f"configs/bert_base.py takes '128' (phase 1, the default) or '512' (phase 2), got {arg!r}.")
  phase = phases[arg]
  c = config_lib.base_config()
  c.batch_size = 256
  c.total_steps = 900_000 if phase == "128" else 100_000
  c.log_every = 100
  c.ckpt_every = 5_000
  c.eval_every = 20_000

  c.data = config_lib.text_data("prepared", length=int(phase), num_workers=8)

  c.model = ml_collections.ConfigDict(dict(arch="text", vocab_size=30_522, max_length=512, width=768, depth=12,
                                           num_heads=12, mlp_dim=3072, type_vocab_size=2, dropout=0.1,
                                           dtype="bfloat16"))
  config_lib.add_vit_execution_options(c.model)

  c.method.name = "bert"
  c.method.mask_prob = 0.15

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-4 if phase == "128" else 1e-5
  c.optim.lr_batch_base = c.batch_size          # the peak learning rate itself
  c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-6
  c.optim.weight_decay = 0.01
  c.optim.no_decay = ()
  c.optim.grad_clip = 1.0
  c.optim.warmup_steps = 10_000 if phase == "128" else 1_000
  c.optim.schedule = "linear"
  c.optim.min_lr = 1e-5 if phase == "128" else 0.0

  config_lib.text_evaluation(c, batch_size=128)
  c.eval.data_name = "stdlib_docstrings_probe"    # the embedded probe, tokenized by this run's tokenizer
  c.eval.evaluators.validation = dict(type="language_model", max_batches=80)
  c.lock()
  return c

"""CLIP ViT-B/16 (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision").

    python main.py --config=configs/clip_vit_b16.py --config.data.data_dir=/data/pairs \
        --config.data.text.tokenizer=/data/clip_tokenizer.json --workdir=gs://bucket/clip_b16
    python main.py --config=configs/clip_vit_b16.py --dry_run      # shardings and memory of the step, no data needed

Data: image-caption pairs as webdataset shards (`/data/pairs/train/*.tar`: `{key}.jpg` + `{key}.txt`, what
img2dataset writes), with held-out pairs under `test/` for the retrieval evaluator; the tokenizer is OpenAI CLIP's
lower-cased byte-level BPE of 49,408 tokens (Hugging Face's `openai/clip-vit-base-patch16` `tokenizer.json`, copied to
the machine), or `bpe:49408` to train one on the captions. Zero-shot evaluation: set `config.eval.data_name` to a
labelled image set with class names (e.g. an `image_folder` of ImageNet's validation images) and
`config.eval.evaluators.zero_shot.templates` to CLIP's 80 ImageNet prompts. Not run with this code yet.

Hyperparameters (the paper's Sec. 2.4-2.5 and Tables 19-20, ViT-B/16 row):
  image tower ViT-B/16 at 224 x 224 (width 768, 12 blocks, 12 heads), learned position embeddings, a LayerNorm
    before the blocks (`ln_pre`), [CLS] pooled
  text tower: 12 blocks, width 512, 8 heads, causal, context 77 with start- and end-of-text tokens, pooled at the
    end-of-text token; vocabulary 49,408
  joint space 512, projections without bias
  batch 32,768; 32 epochs (of WIT's 400M pairs: about 390,000 steps)
  AdamW lr 5e-4 (the peak, at batch 32,768), betas (0.9, 0.98), eps 1e-6, weight decay 0.2 on the weight matrices
    (not on gains, biases and the temperature), 2,000 warm-up steps, cosine decay to 0
  learned temperature: logit scale initialised at 1 / 0.07, clamped at 100
  loss over the global batch, computed around the ring of devices ("ring": each device holds one block of the
    32,768 x 32,768 similarity matrix at a time)
  mixed precision: bfloat16 compute, float32 parameters and optimizer state
Deviations: exact GELU (OpenAI: QuickGELU); LayerNorm eps 1e-6 in the image tower (OpenAI: 1e-5); a
random-resized crop of scale (0.9, 1) as open_clip's training augmentation (the paper: a random square crop of the
resized image); GPT-2's initialisation of the text tower.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 32_768
  c.total_epochs = 32.0
  c.log_every = 50
  c.ckpt_every = 2_000
  c.eval_every = 20_000

  c.data = config_lib.image_text_data("webdataset", size=224, length=77, tokenizer="bpe:49408", start_token=True,
                                      crop_scale=(0.9, 1.0), flip=False, num_workers=16)

  c.model = config_lib.vit("B/16", posemb="learn", pool="cls", pre_norm=True, dtype="bfloat16")

  c.method.name = "clip"
  c.method.text = dict(width=512, depth=12, num_heads=8, mlp_dim=2048, style="clip", vocab_size=49_408,
                       dtype="bfloat16")
  c.method.embed_dim = 512
  c.method.logit_scale_init = 1 / 0.07
  c.method.logit_scale_max = 100.0
  c.method.loss_impl = "ring"

  c.optim.name = "adamw"
  c.optim.base_lr = 5e-4
  c.optim.lr_batch_base = c.batch_size            # 5e-4 is the peak learning rate itself
  c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.98, 1e-6
  c.optim.weight_decay = 0.2
  c.optim.warmup_steps = 2_000
  c.optim.schedule = "cosine"

  c.eval.data_name = "webdataset"
  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "test"
  c.eval.batch_size = 1024
  c.eval.evaluators = dict(retrieval=dict(type="retrieval"))
  c.lock()
  return c

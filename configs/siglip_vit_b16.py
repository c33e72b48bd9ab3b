"""SigLIP ViT-B/16 (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training").

    python main.py --config=configs/siglip_vit_b16.py --config.data.data_dir=/data/pairs \
        --config.data.text.tokenizer=/data/siglip_tokenizer.json --workdir=gs://bucket/siglip_b16
    python main.py --config=configs/siglip_vit_b16.py --dry_run     # shardings and memory of the step, no data needed

Data as configs/clip_vit_b16.py (webdataset shards of image-caption pairs); the tokenizer is a 32,000-token
SentencePiece vocabulary as the paper's English models use (e.g. Hugging Face's `google/siglip-base-patch16-224`
`tokenizer.json`, whose end-of-text token `</s>` pads the captions), or `bpe:32000` trained on the captions. Not
run with this code yet.

Hyperparameters (the paper's Sec. 3-4 for SigLIP B/16 trained from scratch):
  image tower ViT-B/16 at 224 x 224, learned position embeddings, no [CLS] token, tanh GELU, pooled by multi-head
    attention pooling (MAP: a learned probe token, 12 heads, then a residual MLP of 3072), whose 768 outputs are the
    image embeddings (no projection)
  text tower: 12 blocks, width 768, 12 heads, bidirectional over the whole padded caption, 64 tokens padded with the
    end-of-text token, pooled at the last position; vocabulary 32,000
  joint space 768: the text tower's last position through a linear head with a bias
  batch 32,768; 9B examples seen (about 275,000 steps)
  sigmoid loss with learned scale and bias: t' = log 10, b = -10
  Adam(W) lr 1e-3, weight decay 1e-4, beta2 0.95 (the paper's stabilised setting for large batches)
  the loss over the global batch around the ring of devices (the paper's "chunked" implementation)
  mixed precision: bfloat16 compute, float32 parameters and optimizer state
Deviations: 10,000 warm-up steps then cosine decay (the paper does not list its schedule here); a random-resized crop
of scale (0.9, 1).
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  del arg
  c = config_lib.base_config()
  c.batch_size = 32_768
  c.total_steps = 275_000
  c.log_every = 50
  c.ckpt_every = 2_000
  c.eval_every = 20_000

  c.data = config_lib.image_text_data("webdataset", size=224, length=64, tokenizer="bpe:32000", start_token=False,
                                      crop_scale=(0.9, 1.0), flip=False, num_workers=16)

  c.model = config_lib.vit("B/16", posemb="learn", class_token=False, pool="map", tanh_gelu=True, dtype="bfloat16")

  c.method.name = "siglip"
  c.method.text = dict(width=768, depth=12, num_heads=12, mlp_dim=3072, style="siglip", vocab_size=32_000,
                       dtype="bfloat16")
  c.method.logit_scale_init = 10.0
  c.method.logit_bias_init = -10.0
  c.method.loss_impl = "ring"

  c.optim.name = "adamw"
  c.optim.base_lr = 1e-3
  c.optim.lr_batch_base = c.batch_size            # 1e-3 is the peak learning rate itself
  c.optim.b1, c.optim.b2 = 0.9, 0.95
  c.optim.weight_decay = 1e-4
  c.optim.warmup_steps = 10_000
  c.optim.schedule = "cosine"

  c.eval.data_name = "webdataset"
  c.eval.train_split = "train[:50000]"
  c.eval.test_split = "test"
  c.eval.batch_size = 1024
  c.eval.evaluators = dict(retrieval=dict(type="retrieval"))
  c.lock()
  return c

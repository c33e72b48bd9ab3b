"""The PyTorch reference for GPT-2 and BERT: what users would otherwise run (Hugging Face `transformers`).

    python benchmarks/torch_reference/language.py --model=gpt2 --batch_size=4 --length=256 --steps=5
    python benchmarks/torch_reference/language.py --model=bert --batch_size=32 --length=128 --dtype=bfloat16

`GPT2LMHeadModel` (GPT-2 small: 12 layers, width 768, 12 heads, vocabulary 50,304 as `configs/gpt2_small.py`, no
dropout) trained on next-token prediction, or `BertForMaskedLM` (BERT-base: vocabulary 30,522, dropout 0.1) on 15%
of the tokens masked afresh each step (80/10/10), its output layer at every position as `BertForMaskedLM` computes
it (ours runs it at the predicted positions only: the same model and loss, fewer FLOPs);
PyTorch's fused attention (`attn_implementation="sdpa"`); AdamW with the configs' betas, eps and weight decay
(not on biases and LayerNorms), gradient clipping at 1.0. Random token windows already on the device. `--dtype=
bfloat16` runs under `torch.autocast`. Prints one JSON line: step_time_s (steps back to back, one sync at the end),
step_time_blocking_s (median of steps synced one at a time), step_time_min_s, examples_per_s, tokens_per_s,
threads, device, compiled, dtype, torch. Needs `pip install -e '.[bench]'` and `transformers` (the `export` extra).
"""

import json
import sys

import torch

import timing


def build(name: str, length: int):
  """The Hugging Face model of `name` ("gpt2" or "bert") at its paper size, and its AdamW hyperparameters."""
  import transformers
  if name == "gpt2":
    config = transformers.GPT2Config(vocab_size=50_304, n_positions=max(length, 1024), n_embd=768, n_layer=12,
                                     n_head=12, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     attn_implementation="sdpa")
    return transformers.GPT2LMHeadModel(config), dict(
        lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
  config = transformers.BertConfig(vocab_size=30_522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                   intermediate_size=3072, max_position_embeddings=max(length, 512),
                                   attn_implementation="sdpa")
  return transformers.BertForMaskedLM(config), dict(
      lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)


def main():
  parser = timing.parser(__doc__, batch_size=4, steps=5)
  parser.add_argument("--model", default="gpt2", choices=["gpt2", "bert"])
  parser.add_argument("--length", type=int, default=256)
  args = parser.parse_args()
  torch.manual_seed(0)
  device = torch.device(args.device)
  model, opt = build(args.model, args.length)
  model = model.to(device).train()
  decay = [p for n, p in model.named_parameters() if p.ndim > 1]
  other = [p for n, p in model.named_parameters() if p.ndim <= 1]
  optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt.pop("weight_decay")},
                                 {"params": other, "weight_decay": 0.0}], **opt, fused=device.type == "cuda")
  forward = torch.compile(model) if args.compile else model
  vocab = model.config.vocab_size
  tokens = torch.randint(5, vocab, (args.batch_size, args.length), device=device)

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
      if args.model == "gpt2":
        loss = forward(input_ids=tokens, labels=tokens).loss
      else:
        chosen = torch.rand(tokens.shape, device=device) < 0.15
        action = torch.rand(tokens.shape, device=device)
        inputs = torch.where(chosen & (action < 0.8), 4, tokens)
        inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), torch.randint_like(tokens, vocab), inputs)
        loss = forward(input_ids=inputs, labels=torch.where(chosen, tokens, -100)).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss

  result = timing.time_step(step, device, steps=args.steps, warmup=args.warmup, profile=args.profile)
  print(json.dumps(dict(result, examples_per_s=args.batch_size / result["step_time_s"],
                        tokens_per_s=args.batch_size * args.length / result["step_time_s"], device=str(device),
                        compiled=args.compile, dtype=args.dtype, batch_size=args.batch_size)), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())

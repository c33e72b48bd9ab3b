"""Text generation from a GPT run, with a key/value cache:

    python -m ssl_jax.sample --workdir=/tmp/gpt_tiny --prompt="Return the" --max_new_tokens=40
    python -m ssl_jax.sample --workdir=... --prompt="Open a file" --temperature=0.8 --top_k=40 --num_samples=4

The newest intact checkpoint's released language model (`ssl_jax.pretrained`) and the run's tokenizer
(`<workdir>/tokenizer.json`). `generate` is one jitted program with static shapes: the prompt, padded to a fixed
window, fills the key/value cache in one pass (`TextTransformer(decode=True)`), then each new token costs one
position of every layer (no recomputation of the prefix), sampled greedily (`temperature=0`), or from the
temperature-scaled distribution restricted to the `top_k` most probable tokens and/or the smallest set whose
probability reaches `top_p` (nucleus sampling, Holtzman et al. 2020). A sample stops at the end-of-text token.

Our GPT never predicts the first token of a document (it sees no token before it), so a prompt must hold at least
one token.
"""

import dataclasses
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def filter_logits(logits: jax.Array, *, top_k: int = 0, top_p: float | jax.Array = 1.0) -> jax.Array:
  """`[B, V]` logits with every token outside the `top_k` most probable (0: no limit) and outside the nucleus of
  probability `top_p` (the most probable tokens until their probability reaches `top_p`; the first always kept)
  set to -inf."""
  logits = logits.astype(jnp.float32)
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  ordered = jnp.sort(logits, axis=-1)[:, ::-1]
  probs = jax.nn.softmax(ordered, axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs           # the probability of the tokens ranked above each one
  kept = jnp.where(before < top_p, ordered, jnp.inf)     # ranks inside the nucleus; the first always
  threshold = jnp.min(kept, axis=-1, keepdims=True)
  return jnp.where(logits < threshold, -jnp.inf, logits)


def sample_token(key: jax.Array, logits: jax.Array, *, temperature: float | jax.Array, top_k: int = 0,
                 top_p: float | jax.Array = 1.0) -> jax.Array:
  """`[B]` next tokens from `[B, V]` logits: the most probable with `temperature` 0, else a draw from
  `softmax(filter_logits(logits) / temperature)`."""
  filtered = filter_logits(logits, top_k=top_k, top_p=top_p)
  drawn = jax.random.categorical(key, filtered / jnp.maximum(temperature, 1e-6), axis=-1)
  return jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "steps", "top_k"))
def generate(model, params, prompt: jax.Array, prompt_length: jax.Array, key: jax.Array, *, steps: int,
             temperature: float | jax.Array = 0.0, top_k: int = 0, top_p: float | jax.Array = 1.0) -> jax.Array:
  """`steps` tokens `[B, steps]` continuing each row of `prompt` `[B, P]` (its first `prompt_length` tokens, the
  rest padding) with GPT-2 `model` (a `TextTransformer`; P + steps <= its `max_length`).

  The prompt window is encoded in one pass that fills the key/value cache (the padding after the prompt is written
  too, then overwritten, and masked until it is); the cache index then restarts at `prompt_length` and each step
  appends one token. Step i draws with `fold_in(key, i)`.
  """
  decoder = model.clone(decode=True)
  b, p = prompt.shape
  if p + steps > model.max_length:
    raise ValueError(f"a prompt window of {p} and {steps} new tokens exceed the model's {model.max_length} positions.")
  shapes = jax.eval_shape(lambda: decoder.init(jax.random.key(0), jnp.zeros((b, p + steps), jnp.int32)))["cache"]
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  logits_of = lambda hidden: decoder.apply({"params": params}, hidden, method=type(model).logits)

  out, state = decoder.apply({"params": params, "cache": cache}, prompt,
                             positions=jnp.broadcast_to(jnp.arange(p), (b, p)), mutable=["cache"])
  last = jax.lax.dynamic_index_in_dim(out["tokens"], prompt_length - 1, axis=1, keepdims=False)
  cache = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.asarray(prompt_length, x.dtype) if path[-1].key == "cache_index" else x, state["cache"])

  def step(carry, i):
    cache, logits = carry
    token = sample_token(jax.random.fold_in(key, i), logits, temperature=temperature, top_k=top_k, top_p=top_p)
    out, state = decoder.apply({"params": params, "cache": cache}, token[:, None],
                               positions=jnp.full((b, 1), prompt_length + i), mutable=["cache"])
    return (state["cache"], logits_of(out["tokens"][:, 0])), token

  _, tokens = jax.lax.scan(step, (cache, logits_of(last)), jnp.arange(steps))
  return tokens.T


@dataclasses.dataclass
class Sampler:
  """A GPT run's language model and tokenizer, ready to complete prompts."""
  model: object
  params: dict
  tokenizer: object

  @classmethod
  def from_workdir(cls, workdir: str) -> "Sampler":
    """The newest intact checkpoint of the GPT run in `workdir` and its `tokenizer.json`."""
    from etils import epath
    from tokenizers import Tokenizer
    from ssl_jax import pretrained
    from ssl_jax.models import backbone
    source = pretrained.open_workdir(workdir, "text")
    if source.spec.get("style") != "gpt2":
      raise ValueError(f"{workdir} holds a {source.config.method.name!r} run; sampling needs a GPT (causal) "
                       "language model.")
    path = epath.Path(workdir) / "tokenizer.json"
    if not path.exists():
      raise FileNotFoundError(f"{path} is missing: a text run writes its tokenizer there when it starts.")
    return cls.of(backbone.create(**source.spec), source.variables()["params"],
                  Tokenizer.from_str(path.read_text()))

  @classmethod
  def of(cls, model, params, tokenizer) -> "Sampler":
    """A sampler of a GPT-2 `TextTransformer` and its parameters (a run's released encoder) with `tokenizer`."""
    return cls(model=model.clone(dropout=0.0), params=jax.device_put(params), tokenizer=tokenizer)

  def complete(self, prompts: list[str], *, max_new_tokens: int = 40, temperature: float = 0.0, top_k: int = 0,
               top_p: float = 1.0, num_samples: int = 1, seed: int = 0) -> tuple[list[list[str]], dict]:
    """`num_samples` continuations of each prompt (the prompt's text followed by the new text, cut at the
    end-of-text token), and timings `{"compile_s", "tokens", "seconds", "tokens_per_s"}` of the generation (compile
    excluded; every prompt is one call of the same compiled program)."""
    window = self.model.max_length - max_new_tokens
    if max_new_tokens < 1 or window < 1:
      raise ValueError(f"max_new_tokens={max_new_tokens} must be in [1, {self.model.max_length - 1}] (the model has "
                       f"{self.model.max_length} positions and a prompt needs one).")
    end = self.tokenizer.token_to_id("<|endoftext|>")
    encoded = []
    for prompt in prompts:
      ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
      if not ids:
        raise ValueError(f"prompt {prompt!r} has no tokens; GPT continues text, so give it at least one word.")
      encoded.append(ids[-window:])       # the end of a prompt longer than the window
    args = dict(steps=max_new_tokens, top_k=top_k)
    batch = lambda ids: np.tile(np.pad(np.asarray(ids, np.int32), (0, window - len(ids)))[None], (num_samples, 1))
    start = time.perf_counter()
    compiled = generate.lower(self.model, self.params, batch(encoded[0]), np.int32(1), jax.random.key(0),
                              temperature=np.float32(temperature), top_p=np.float32(top_p), **args).compile()
    compile_s = time.perf_counter() - start
    outputs, start = [], time.perf_counter()
    for i, ids in enumerate(encoded):
      new = np.asarray(compiled(self.params, batch(ids), np.int32(len(ids)), jax.random.key(seed + i),
                                temperature=np.float32(temperature), top_p=np.float32(top_p)))
      texts = []
      for row in new:
        row = row.tolist()
        row = row[:row.index(end)] if end in row else row
        texts.append(self.tokenizer.decode(ids + row))
      outputs.append(texts)
    seconds = time.perf_counter() - start
    tokens = len(encoded) * num_samples * max_new_tokens
    return outputs, dict(compile_s=compile_s, tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds)


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(prog="python -m ssl_jax.sample", description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a GPT run's workdir")
  parser.add_argument("--prompt", action="append", required=True, help="text to continue (repeat for several)")
  parser.add_argument("--max_new_tokens", type=int, default=40)
  parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
  parser.add_argument("--top_k", type=int, default=0, help="0: no limit")
  parser.add_argument("--top_p", type=float, default=1.0, help="1: no nucleus")
  parser.add_argument("--num_samples", type=int, default=1, help="continuations per prompt")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.temperature < 0 or not 0 < args.top_p <= 1 or args.top_k < 0 or args.num_samples < 1:
    print("error: --temperature must be >= 0, --top_p in (0, 1], --top_k >= 0 and --num_samples >= 1.",
          file=sys.stderr)
    return 2
  try:
    sampler = Sampler.from_workdir(args.workdir)
    outputs, timing = sampler.complete(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                       top_k=args.top_k, top_p=args.top_p, num_samples=args.num_samples,
                                       seed=args.seed)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for prompt, texts in zip(args.prompt, outputs):
    for text in texts:
      print(f"--- {prompt!r}\n{text}")
  print(f"{timing['tokens']} tokens in {timing['seconds']:.2f} s: {timing['tokens_per_s']:.0f} tokens/s "
        f"(compiled in {timing['compile_s']:.1f} s; {jax.devices()[0].platform})")
  return 0


if __name__ == "__main__":
  sys.exit(main())

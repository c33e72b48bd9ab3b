"""GPT (Radford et al. 2018, 2019: "Improving Language Understanding by Generative Pre-Training", "Language Models
are Unsupervised Multitask Learners"): next-token prediction with a causal GPT-2 transformer.

Each training example is a window of the token stream (`ssl_jax.data.text.TokenWindows`); token t predicts token
t + 1 within its document (segment ids stop attention and the loss at document boundaries, where GPT-2 let both
cross; the end-of-text token closing each document is itself predicted), and the loss is the mean cross-entropy
over every prediction of the global batch (nanoGPT, MaxText). Representation: the mean of the final hidden states over
the first document of each example (for probes; GPT-2 has no pooled output).
"""

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax.methods import contract
from ssl_jax.methods import language


def next_tokens(batch: dict) -> tuple[jax.Array, jax.Array]:
  """What position t of each window predicts: `(targets [B, T - 1], weight [B, T - 1])`, token t + 1, weighted 1
  where tokens t and t + 1 are in the same document (and not padding)."""
  segments = batch["text_segment_ids"]
  within = (segments[:, 1:] == segments[:, :-1]) & (segments[:, 1:] > 0)
  return batch["text"][:, 1:], within.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class GPT(language.LanguageMethod):

  def loss(self, params, extra, batch, rng, step):
    del step
    hidden = self.hidden(params, batch, rng if self.model.dropout > 0 else None)
    loss, accuracy = language.mean_scores(
        language.score_tokens(self.logits(params, hidden[:, :-1]), *next_tokens(batch)))
    return loss, ({"next_token_accuracy": accuracy}, extra)

  def token_predictions(self, params, extra, batch, rng):
    del extra, rng
    return language.score_tokens(self.logits(params, self.hidden(params, batch)[:, :-1]), *next_tokens(batch))
  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo) -> "GPT":
    """Builds GPT.

    Args:
      model: `TextTransformer` fields (width, depth, num_heads, mlp_dim, dropout, dtype...);
        the vocabulary is the data's and the positions the window's unless set.
      run: the run's facts (the window length, the tokenizer's vocabulary).
    """
    net, spec = language.text_model(model, run, "gpt2")
    return cls(model=net, model_spec=spec)

"""BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"):
masked language modelling with a bidirectional post-LayerNorm transformer.

Each step masks every training window afresh (dynamic masking, as RoBERTa; the original BERT fixed the masks when
it prepared the data): `masking.mlm_masking` chooses 15% of the tokens that are not special, replaces 80% of them by
[MASK], 10% by a random token and keeps 10%, and the loss is the cross-entropy at the chosen positions, averaged over
all of them in the global batch, through the output layer tied to the token embedding (run at the chosen positions
only, as Google's `max_predictions_per_seq` gathers them: `BERT.predicted`). Next-sentence prediction is
left out (RoBERTa, Liu et al. 2019, found it does not help), so windows hold runs of documents separated by [SEP]
rather than sentence pairs, and attention stays within a document (segment ids). Representation: the mean of the
final hidden states over the first document of each example.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from ssl_jax import masking
from ssl_jax.methods import contract
from ssl_jax.methods import language


@dataclasses.dataclass(frozen=True)
class BERT(language.LanguageMethod):
  mask_token_id: int = 4
  special_token_ids: tuple[int, ...] = ()
  mask_prob: float = 0.15

  def masked(self, batch, rng):
    """`(corrupted batch, chosen [B, T])`: the window with `mlm_masking` applied (never to special tokens or
    padding)."""
    tokens = batch["text"]
    special = jnp.isin(tokens, jnp.asarray(self.special_token_ids, tokens.dtype)) | (batch["text_segment_ids"] == 0)
    corrupted, chosen = masking.mlm_masking(rng, tokens, vocab_size=self.model.vocab_size,
                                            mask_token_id=self.mask_token_id, special_mask=special,
                                            mask_prob=self.mask_prob)
    return dict(batch, text=corrupted), chosen

  def predicted(self, params, hidden, tokens, chosen):
    """`score_tokens` at the chosen positions only: each window's chosen positions (in order) gathered into
    `[B, K]`, K = ceil(mask_prob T) + 1 >= the most `mlm_masking` chooses, padded with unchosen positions of weight
    0, so that the output layer runs at K positions instead of T (Google's `max_predictions_per_seq`)."""
    k = min(tokens.shape[1], math.ceil(self.mask_prob * tokens.shape[1]) + 1)
    where = jnp.argsort(-chosen, axis=1, stable=True)[:, :k]
    pick = lambda x: jnp.take_along_axis(x, where, axis=1)
    gathered = jnp.take_along_axis(hidden, where[..., None], axis=1)
    return language.score_tokens(self.logits(params, gathered), pick(tokens), pick(chosen))

  def loss(self, params, extra, batch, rng, step):
    del step
    mask_rng, dropout_rng = jax.random.split(rng)
    corrupted, chosen = self.masked(batch, mask_rng)
    hidden = self.hidden(params, corrupted, dropout_rng if self.model.dropout > 0 else None)
    loss, accuracy = language.mean_scores(self.predicted(params, hidden, batch["text"], chosen))
    return loss, ({"masked_token_accuracy": accuracy}, extra)

  def token_predictions(self, params, extra, batch, rng):
    del extra
    corrupted, chosen = self.masked(batch, rng)
    return self.predicted(params, self.hidden(params, corrupted), batch["text"], chosen)

  @property
  def unpredicted_token_ids(self):
    return self.special_token_ids

  @classmethod
  def create(cls, *, model: dict, run: contract.RunInfo, mask_token_id: int | None = None,
             special_token_ids: tuple[int, ...] | None = None, mask_prob: float = 0.15) -> "BERT":
    """Builds BERT.

    Args:
      model: `TextTransformer` fields (width, depth, num_heads, mlp_dim, type_vocab_size, dropout, dtype...); the
        vocabulary is the data's and the positions the window's unless set.
      run: the run's facts (the window length, the tokenizer's vocabulary and special tokens).
      mask_token_id: the [MASK] id; default: the tokenizer's "[MASK]" (4 in the WordPiece vocabularies
        `ssl_jax.data.text` trains, 103 in bert-base-uncased's; 4 when the data was not read, as in a dry run).
      special_token_ids: ids never chosen for masking (padding never is); default: the tokenizer's special tokens.
      mask_prob: the fraction of tokens chosen (paper: 0.15).
    """
    if not 0 < mask_prob < 1:
      raise ValueError(f"method.mask_prob must be in (0, 1), got {mask_prob}.")
    net, spec = language.text_model(model, run, "bert")
    specials = run.special_tokens
    if mask_token_id is None:
      if specials is not None and "[MASK]" not in specials:
        raise ValueError(f"the tokenizer has no [MASK] token (its special tokens: {sorted(specials)}); set "
                         "config.method.mask_token_id, or use a WordPiece tokenizer (--tokenizer=wordpiece:<vocab>).")
      mask_token_id = 4 if specials is None else specials["[MASK]"]
    if special_token_ids is None:
      special_token_ids = (0, 1, 2, 3, 4) if specials is None else tuple(sorted(specials.values()))
    if not 0 <= mask_token_id < net.vocab_size:
      raise ValueError(f"method.mask_token_id={mask_token_id} is not a token id of the {net.vocab_size}-token "
                       "vocabulary.")
    return cls(model=net, model_spec=spec, mask_token_id=mask_token_id,
               special_token_ids=tuple(special_token_ids), mask_prob=mask_prob)

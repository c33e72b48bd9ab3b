"""Image-text evaluators of a joint embedding (CLIP, SigLIP): zero-shot classification and retrieval.

- Zero-shot classification (Radford et al. 2021, Sec. 3.1.4): each class name is put into every prompt template ("a
  photo of a {}."), the prompts are embedded by the text tower, their normalised embeddings averaged per class and
  normalised again; a held-out image's class is the one whose embedding is nearest (cosine). Top-1 and top-5.
- Retrieval: the held-out images against their own captions, image -> text and text -> image recall@k: the share of
  queries with a right answer among the k nearest. A right answer is any item whose caption is the query's (its own
  pair, and any other pair with the same caption: several images may share one, as the digits' templated captions
  do), the convention of COCO's five captions per image.

Both read `context.embeddings(split)` (the normalised embeddings of a split's pairs, computed once and shared) and
`context.embed_texts` (prompts); a context without a joint embedding (the raw-input column) gives no result.
"""

import jax.numpy as jnp
import numpy as np

from ssl_jax.evaluators.context import Context


def prompt_name(class_name: str) -> str:
  """A class name as it reads in a prompt: "face-smiling" -> "face smiling", "country_flag" -> "country flag"."""
  return " ".join(class_name.replace("-", " ").replace("_", " ").split())


def class_embeddings(text_embeddings: np.ndarray, num_classes: int) -> np.ndarray:
  """CLIP's prompt ensemble: `[C * P, E]` normalised embeddings of C classes x P templates (class-major) -> `[C, E]`,
  each class's mean normalised again."""
  e = np.asarray(text_embeddings, np.float32).reshape(num_classes, -1, text_embeddings.shape[-1]).mean(1)
  return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def zero_shot_accuracy(image_embeddings, labels, class_embeddings_, ks=(1, 5)) -> dict[int, float]:
  """Top-k accuracy `{k: value}` of classifying `[N, E]` image embeddings by their nearest of the `[C, E]` class
  embeddings (by dot product: both normalised); k > C is left out."""
  scores = jnp.asarray(image_embeddings) @ jnp.asarray(class_embeddings_).T          # [N, C]
  order = np.asarray(jnp.argsort(-scores, axis=1))
  labels = np.asarray(labels)
  return {k: float(np.mean((order[:, :k] == labels[:, None]).any(1))) for k in ks if k <= order.shape[1]}


def retrieval_recall(image_embeddings, text_embeddings, caption_ids, ks=(1, 5, 10),
                     block: int = 1024) -> dict[str, float]:
  """Recall@k of image -> text and text -> image retrieval among N pairs.

  Args:
    image_embeddings, text_embeddings: `[N, E]` normalised; row i of each is pair i.
    caption_ids: `[N]` ints, equal for pairs with the same caption (a right answer is any such pair).
    ks: the k of recall@k (those above N are left out).
    block: queries scored at a time (memory `block x N`).

  Returns:
    `{"image_to_text_r@k": ..., "text_to_image_r@k": ...}` in [0, 1].
  """
  img, txt = jnp.asarray(image_embeddings), jnp.asarray(text_embeddings)
  ids = np.asarray(caption_ids)
  n = len(ids)
  ks = [k for k in ks if k <= n]
  out = {}
  for name, queries, keys in (("image_to_text", img, txt), ("text_to_image", txt, img)):
    hits = {k: 0 for k in ks}
    for start in range(0, n, block):
      order = np.asarray(jnp.argsort(-(queries[start:start + block] @ keys.T), axis=1)[:, :max(ks)])
      right = ids[order] == ids[start:start + block, None]                               # [b, max k]
      for k in ks:
        hits[k] += int(right[:, :k].any(1).sum())
    out.update({f"{name}_r@{k}": hits[k] / n for k in ks})
  return out


def run_zero_shot(context: Context, *, name: str, templates=("a photo of a {}.",), split: str = "test",
                  ks=(1, 5)) -> dict[str, float]:
  """`eval/<name>_top1` (and `_top5`) of zero-shot classification of `split`'s images among the evaluation data's
  classes (`context.class_names`, each in every template of `templates`)."""
  if context.embed is None:
    return {}
  if not context.class_names:
    raise ValueError(f"config.eval.evaluators.{name}: zero-shot classification needs the classes' names, and the "
                     "evaluation data has none.")
  if not templates or any("{}" not in t for t in templates):
    raise ValueError(f"config.eval.evaluators.{name}.templates={tuple(templates)!r}: give prompt templates with a "
                     "'{}' where the class name goes, e.g. ('a photo of a {}.',).")
  prompts = [t.format(prompt_name(c)) for c in context.class_names for t in templates]
  classes = class_embeddings(context.embed_texts(prompts), len(context.class_names))
  emb, labels = context.embeddings(split)
  return {f"eval/{name}_top{k}": v for k, v in zero_shot_accuracy(emb["image"], labels, classes, ks).items()}


def run_retrieval(context: Context, *, name: str, split: str = "test", ks=(1, 5, 10)) -> dict[str, float]:
  """`eval/<name>_image_to_text_r@k` and `eval/<name>_text_to_image_r@k` on `split`'s pairs."""
  if context.embed is None:
    return {}
  emb, _ = context.embeddings(split)
  _, caption_ids = np.unique(np.asarray(emb["caption"]), axis=0, return_inverse=True)
  return {f"eval/{name}_{k}": v for k, v in retrieval_recall(emb["image"], emb["text"], caption_ids.ravel(),
                                                             ks).items()}

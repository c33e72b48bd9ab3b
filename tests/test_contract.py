"""The method contract (`ssl_jax.methods.contract.Method`) over every entry of the registry, on a tiny input: a method
is tested by being registered (with a config in configs/tiny/, shrunk as the fault matrix shrinks it)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax import methods
from ssl_jax import sharding
from ssl_jax.data import inputs
from ssl_jax.data import text
from ssl_jax.methods import contract
from ssl_jax.models import backbone
from test_fault_matrix import shrunk

BATCH = 16
VOCAB = 128          # the token ids of a text method's tiny input


def _build(name: str, **overrides):
  c = shrunk(name)
  c.method.update(overrides)
  text_data = inputs.modality(c.data) in ("text", "image_text")
  run = contract.RunInfo(inputs=inputs.method_inputs(c.data), total_steps=c.total_steps, steps_per_epoch=4,
                         num_classes=10, vocab_size=VOCAB if text_data else None)
  hyper = {k: v for k, v in c.method.to_dict().items() if k != "name"}
  return c, methods.create(name, model=c.model.to_dict(), run=run, **hyper), run


def _batches(config, run: contract.RunInfo):
  """A training batch as the method receives it (`run.inputs`: normalised float `image` or view groups; text
  windows) and an evaluation batch as the method receives it (`image` normalised by the input spec's `eval_stage`;
  labelled text examples, padded)."""
  rng = np.random.default_rng(0)
  if inputs.modality(config.data) == "audio":        # smooth noise (a random walk), utterances of 40% to all of S
    s = config.data.audio.max_length
    lengths = rng.integers(int(0.4 * s), s + 1, BATCH).astype(np.int32)
    waves = np.cumsum(rng.normal(size=(BATCH, s)), axis=1).astype(np.float32) * 0.01
    waves = np.where(np.arange(s)[None, :] < lengths[:, None], waves, 0.0).astype(np.float32)
    batch = {"audio": waves, "audio_length": lengths, "index": np.arange(BATCH, dtype=np.int32)}
    return (dict(batch, label=np.arange(BATCH, dtype=np.int32) % run.num_classes),
            dict(batch, label=np.arange(BATCH, dtype=np.int32) % run.num_classes))
  if inputs.modality(config.data) == "text":         # windows of a random stream with documents of 5 to 40 tokens
    length = config.data.text.length
    tokens = rng.integers(0, VOCAB, BATCH * length).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(rng.integers(5, 40, BATCH * length))])
    windows = text.TokenWindows(tokens, starts[starts <= len(tokens)], length)
    train = jax.tree.map(lambda *x: np.stack(x), *[windows[i] for i in range(BATCH)])
    padded = {k: np.where(train["text_segment_ids"] == 1, v, 0) for k, v in train.items() if k != "index"}
    return train, dict(padded, label=np.arange(BATCH, dtype=np.int32) % run.num_classes)
  images = rng.integers(0, 256, (BATCH, config.data.image.size, config.data.image.size, 3), dtype=np.uint8)
  captions = {}
  if inputs.modality(config.data) == "image_text":  # captions of 2 to T tokens, padded with the last token id
    length = config.data.text.length
    lengths = rng.integers(2, length + 1, BATCH)
    segments = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    captions = {"text": np.where(segments == 1, rng.integers(2, VOCAB, (BATCH, length)), 0).astype(np.int32),
                "text_segment_ids": segments}

  def example(path, s):
    name = jax.tree_util.keystr(path)
    if name == "['label']":
      return np.arange(BATCH, dtype=np.int32) % run.num_classes
    if np.issubdtype(s.dtype, np.integer):
      return np.arange(BATCH, dtype=s.dtype)
    if name == "['image']":     # smooth noise (2x2 upsampled): a masked patch is predictable from its neighbours
      h, w, c = s.shape
      coarse = rng.normal(size=(BATCH, 2, 2, c)).astype(np.float32)
      return np.asarray(jax.image.resize(coarse, (BATCH, h, w, c), "bilinear"), s.dtype)
    return rng.normal(size=(BATCH,) + s.shape).astype(s.dtype)
  train = dict(jax.tree.map_with_path(example, run.inputs), **captions)
  return train, inputs.eval_stage(dict({"image": images}, **captions))


VARIANTS = {"dino-sinkhorn": ("dino", dict(centering="sinkhorn")),     # registered methods with another loss path
            "dinov2-sinkhorn-separate": ("dinov2", dict(centering="sinkhorn", separate_ibot_head=True)),
            "inpainting-adversarial": ("inpainting", dict(adversarial=True))}


@pytest.mark.parametrize("name", sorted(methods.METHODS) + sorted(VARIANTS))
def test_method_honours_the_contract(name):
  name, overrides = VARIANTS.get(name, (name, {}))
  config, method, run = _build(name, **overrides)
  cls = type(method)
  assert isinstance(method, contract.Method) and cls is methods.get(name)
  for flag, hook in (("predicts", "predict"), ("reconstructs", "reconstruct"),
                     ("accepts_pretrained_encoder", "load_encoders"), ("predicts_tokens", "token_predictions"),
                     ("reads_runs", "load_runs"), ("embeds_pairs", "embed")):      # a capability comes with its hook
    assert bool(getattr(cls, flag)) == (getattr(cls, hook) is not getattr(contract.Method, hook)), (flag, hook)

  train_batch, eval_batch = _batches(config, run)
  # Every call jitted: one compile each (eagerly, every primitive of every shape compiles on its own: 300 programs).
  params, extra = jax.jit(lambda rng, batch: nn.unbox(method.init(rng, batch)))(jax.random.key(0), train_batch)
  tx = optax.adam(1e-3)

  @jax.jit
  def adam_step(trained, opt_state, extra, batch):
    """One Adam update of `trained` against a fixed `extra`, with the loss, metrics, new extra and gradients."""
    (value, (m, new_extra)), g = jax.value_and_grad(method.loss, has_aux=True)(trained, extra, batch,
                                                                              jax.random.key(1), jnp.int32(0))
    updates, opt_state = tx.update(g, opt_state, trained)
    return optax.apply_updates(trained, updates), opt_state, (value, m, new_extra, g)

  mesh8 = sharding.make_mesh(dict(data=8, fsdp=1, tensor=1), jax.devices())
  mesh1 = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  results, placed, opt0 = [], [], jax.jit(tx.init)(params)
  for mesh in (mesh1, mesh8):                        # the global batch on 1 device, then split over 8
    with jax.set_mesh(mesh), nn.logical_axis_rules(config.sharding_rules):
      placed.append((jax.device_put(extra, sharding.replicated(mesh)),
                     jax.device_put(train_batch, sharding.batch_sharding(mesh))))
      state = jax.device_put((params, opt0), sharding.replicated(mesh))
      results.append(adam_step(*state, *placed[-1]))
  (trained, opt_state, (loss, step_metrics, new_extra, grads)), (_, _, (loss8, _, _, grads8)) = results

  assert loss.shape == () and np.isfinite(float(loss))
  assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(step_metrics))
  assert jax.tree.structure(new_extra) == jax.tree.structure(extra)
  # Gradients reach every module (a detached head or encoder shows up as a module whose every leaf is 0; single
  # leaves may be 0 at initialisation, e.g. a residual branch behind a zero-initialised BatchNorm scale).
  reached = {}
  for path, g in jax.tree.leaves_with_path(grads):
    module = jax.tree_util.keystr(path[:2])
    reached[module] = reached.get(module, False) or bool(np.any(np.asarray(g)))
  assert all(reached.values()), f"modules without gradient: {[m for m, r in reached.items() if not r]}"
  # 1 vs 8 devices: the same global-batch math, summed in another order (per-shard partial sums, then across
  # shards). Float32 rounding of such sums is ~1e-7 of the summands' scale per addition level; through the few layers
  # of a tiny network it stays within 1e-5 of the loss and 1e-4 of each gradient leaf's largest element (measured:
  # 3e-6 at most). A gradient that is exactly 0 in exact arithmetic (a bias before BatchNorm) is a rounding residue
  # of a sum over the 2B = 32 rows of terms of the whole gradient's scale, whose float32 error bound is about
  # 2B * 6e-8 = 2e-6 of that scale: allowed 4e-6 (measured 1.1e-6 with LLVM's optimisation level 0). A gradient that
  # forgets part of the global batch (per-shard BatchNorm statistics, per-shard negatives) is far outside both.
  np.testing.assert_allclose(float(loss8), float(loss), rtol=1e-5)
  g1s, g8s = [list(map(np.asarray, jax.tree.leaves(g))) for g in (grads, grads8)]
  scale = max(np.abs(g).max() for g in g1s)
  for g1, g8 in zip(g1s, g8s):
    np.testing.assert_allclose(g8, g1, rtol=1e-4, atol=1e-4 * np.abs(g1).max() + 4e-6 * scale)

  # Against a fixed target (`extra` held: teachers, centres, BatchNorm statistics; the same batch and key) the
  # objective is stationary: Adam must lower the method's own loss (without its online probe) within 10 steps.
  history = [float(step_metrics.get("ssl_loss", loss))]
  with jax.set_mesh(mesh1), nn.logical_axis_rules(config.sharding_rules):
    for _ in range(9):
      trained, opt_state, (value, m, _, _) = adam_step(trained, opt_state, *placed[0])
      history.append(float(m.get("ssl_loss", value)))
  history = np.array(history)
  assert np.all(np.isfinite(history)) and history[-3:].mean() < history[:3].mean() - 0.02 * abs(history[:3].mean()), \
      history

  updated = jax.jit(method.after_update)(params, new_extra, jnp.int32(0))
  assert jax.tree.structure(updated) == jax.tree.structure(extra)
  # project_params: the same structure, the initial parameters already in the method's set, and a projection
  # (applying it twice changes nothing).
  projected = jax.jit(method.project_params)(trained)
  assert jax.tree.structure(projected) == jax.tree.structure(trained)
  for a, b in zip(jax.tree.leaves(jax.jit(method.project_params)(params)), jax.tree.leaves(params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  for a, b in zip(jax.tree.leaves(jax.jit(method.project_params)(projected)), jax.tree.leaves(projected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)

  # represent: float32 [B, D] per feature; the released encoders give exactly those features.
  feats = jax.jit(method.represent)(params, extra, eval_batch)
  towers = method.encoders(params, extra)
  assert feats and set(towers) <= set(feats), (sorted(feats), sorted(towers))
  for tower, (spec, variables) in towers.items():
    assert feats[tower].dtype == jnp.float32 and feats[tower].shape[0] == BATCH
    released = jax.jit(lambda v, b: backbone.encode(backbone.create(**spec), v, b))(variables, eval_batch)["pooled"]
    np.testing.assert_allclose(np.asarray(released), np.asarray(feats[tower]), rtol=1e-5, atol=1e-5)
  if cls.accepts_pretrained_encoder:                 # loading the released encoders back changes nothing
    again = method.load_encoders(params, extra, {t: v for t, (_, v) in towers.items()})
    assert jax.tree.structure(again) == jax.tree.structure((params, extra))
  if cls.predicts:
    assert jax.jit(method.predict)(params, extra, eval_batch).shape == (BATCH, run.num_classes)
  if cls.embeds_pairs:                               # unit vectors of one joint space, from either part alone
    pairs = jax.jit(method.embed)(params, extra, eval_batch)
    alone = jax.jit(method.embed)(params, extra, {k: v for k, v in eval_batch.items() if k.startswith("text")})
    assert set(pairs) == {"image", "text"} and pairs["image"].shape == pairs["text"].shape
    np.testing.assert_allclose(np.linalg.norm(np.asarray(pairs["image"]), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(alone["text"]), np.asarray(pairs["text"]), rtol=1e-6, atol=1e-6)
  if cls.reconstructs:
    rows = jax.jit(method.reconstruct)(params, extra, eval_batch, jax.random.key(2))
    assert len(rows) == len(cls.pictures[1]) and all(r.dtype == jnp.uint8 and r.shape == eval_batch["image"].shape for r in rows)
  if cls.predicts_tokens:                            # scored on held-out windows: deterministic given the key
    scores = jax.jit(method.token_predictions)(params, extra, train_batch, jax.random.key(3))
    again = jax.jit(method.token_predictions)(params, extra, train_batch, jax.random.key(3))
    shape = scores["target"].shape
    assert shape[0] == BATCH and all(v.shape == shape for v in scores.values())
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), scores, again))
    weight, log_prob = np.asarray(scores["weight"]), np.asarray(scores["log_prob"])
    assert set(np.unique(weight)) <= {0.0, 1.0} and weight.sum() > 0 and np.all(log_prob <= 0)
    assert not np.isin(np.asarray(scores["target"])[weight > 0], method.unpredicted_token_ids).any()

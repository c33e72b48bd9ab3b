"""The VQ tokenizer's quantizer against BEiT v2's (microsoft/unilm `beit2/norm_ema_quantizer.py`): the normalised EMA
codebook update and the spherical k-means initialisation, transcribed in numpy; and the method's straight-through
estimator and codebook state."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import image_run
from ssl_jax.methods import vq_tokenizer
from ssl_jax.ops import quantize


def _l2norm(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _official_update(weight, z_flattened, decay):
  """`NormEMAVectorQuantizer.forward`'s training branch (one process: the all-reduces are identities)."""
  num_vocab = weight.shape[0]
  d = (z_flattened ** 2).sum(1, keepdims=True) + (weight ** 2).sum(1) - 2 * z_flattened @ weight.T
  encoding_indices = d.argmin(1)
  encodings = np.eye(num_vocab)[encoding_indices]
  bins = encodings.sum(0)
  zero_mask = bins == 0
  bins = np.where(zero_mask, 1.0, bins)
  embed_sum = z_flattened.T @ encodings
  embed_normalized = _l2norm((embed_sum / bins[None]).T)
  embed_normalized = np.where(zero_mask[:, None], weight, embed_normalized)
  return encoding_indices, _l2norm(weight * decay + embed_normalized * (1 - decay))     # norm_ema_inplace


def test_codes_and_codebook_update_are_beit_v2s():
  rng = np.random.default_rng(0)
  weight = _l2norm(rng.normal(size=(64, 8)))
  z = _l2norm(rng.normal(size=(300, 8)) + 2.0 * weight[rng.integers(0, 16, 300)])     # 16 codes in use, 48 not
  codes, want = _official_update(weight, z, 0.9)
  np.testing.assert_array_equal(quantize.nearest_codes(jnp.asarray(z), jnp.asarray(weight)), codes)
  got = quantize.norm_ema_update(jnp.asarray(weight, jnp.float32), jnp.asarray(z, jnp.float32), jnp.asarray(codes),
                                 0.9)
  np.testing.assert_allclose(got, want, atol=1e-6)
  unused = np.setdiff1d(np.arange(64), codes)
  assert len(unused) > 0 and np.array_equal(np.asarray(got)[unused], np.asarray(weight, np.float32)[unused])


def test_spherical_kmeans_is_beit_v2s_kmeans_init():
  """`kmeans(samples, num_clusters, num_iters=10, use_cosine_sim=True)` from the same starting centres."""
  rng = np.random.default_rng(1)
  centres = _l2norm(rng.normal(size=(6, 5)))
  z = _l2norm(centres[rng.integers(0, 6, 400)] + 0.3 * rng.normal(size=(400, 5)))
  key = jax.random.key(3)
  start = np.asarray(jax.random.choice(key, 400, (6,), replace=False))
  means = z[start]
  for _ in range(10):
    buckets = (z @ means.T).argmax(-1)
    bins = np.bincount(buckets, minlength=6)
    new = _l2norm(np.stack([z[buckets == c].sum(0) if bins[c] else np.zeros(5) for c in range(6)]))
    means = np.where((bins == 0)[:, None], means, new)
  np.testing.assert_allclose(quantize.spherical_kmeans(key, jnp.asarray(z, jnp.float32), 6), means, atol=1e-5)


def _method(**kw):
  model = dict(patch_size=4, width=32, depth=1, num_heads=2, mlp_dim=64, class_token=False)
  return vq_tokenizer.VQTokenizer.create(model=model, run=image_run(16), decoder=dict(width=32, depth=1, num_heads=2,
                                                                                        mlp_dim=64),
                                         vocab_size=32, code_dim=8, **kw)


def test_straight_through_and_codebook_state():
  """The decoder sees the codes' vectors, the encoder gets the decoder's gradient as if quantization were the
  identity (plus the commitment's); the first step's codebook is the k-means of the batch, later steps move the one
  in `extra` by the EMA; the loss is reconstruction + beta * commitment."""
  method = _method(beta=0.5)
  images = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  # Every call jitted: one compile each, not one per primitive.
  params, extra = jax.jit(method.init)(jax.random.key(1), {"image": images})
  params = nn.unbox(params)
  loss_of = jax.jit(lambda p, step: method.loss(p, extra, {"image": images}, jax.random.key(2), jnp.int32(step)))
  (loss, (metrics, new_extra)), grads = jax.jit(jax.value_and_grad(loss_of, has_aux=True))(params, 1)
  np.testing.assert_allclose(float(loss), float(metrics["loss/reconstruction"] + 0.5 * metrics["loss/commitment"]),
                             rtol=1e-6)
  assert float(jnp.max(jnp.abs(grads["encoder"]["embedding"]["kernel"]))) > 0      # through the straight-through path
  z = jax.jit(lambda p: method.model.apply({"params": p}, images, method=vq_tokenizer.VQTokenizerModel.encode))(params)
  codes = jax.jit(quantize.nearest_codes)(z, extra["codebook"])
  want = jax.jit(quantize.norm_ema_update, static_argnums=3)(extra["codebook"], z.reshape(-1, 8), codes.reshape(-1),
                                                             0.99)
  np.testing.assert_allclose(new_extra["codebook"], want, atol=1e-6)
  # Straight through: with the commitment's weight 0 the encoder's gradient is the decoder's at the codes' vectors.
  plain = _method(beta=0.0)
  g_st = jax.jit(jax.grad(lambda p: plain.loss(p, extra, {"image": images}, jax.random.key(2), jnp.int32(1))[0]))(
      params)
  e = extra["codebook"][codes]

  def through_identity(p):
    z = plain.model.apply({"params": p}, images, method=vq_tokenizer.VQTokenizerModel.encode)
    pred = plain.model.apply({"params": p}, z + jax.lax.stop_gradient(e - z),
                             method=vq_tokenizer.VQTokenizerModel.decode)
    return jnp.mean(jnp.square(pred - plain._targets(images)))
  g_ref = jax.jit(jax.grad(through_identity))(params)
  np.testing.assert_allclose(g_st["to_code"]["kernel"], g_ref["to_code"]["kernel"], atol=1e-7)
  # Step 0: the codebook is the k-means of the batch's vectors.
  _, (_, first) = loss_of(params, 0)
  assert not np.allclose(first["codebook"], new_extra["codebook"])
  np.testing.assert_allclose(np.linalg.norm(np.asarray(first["codebook"]), axis=1), 1.0, atol=1e-5)


def test_bad_settings_are_refused_before_anything_runs():
  decoder = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
  model = dict(patch_size=4, width=32, depth=1, num_heads=2, mlp_dim=64, class_token=False)
  with pytest.raises(ValueError, match="class_token=False"):
    vq_tokenizer.VQTokenizer.create(model=dict(model, class_token=True), run=image_run(16), decoder=decoder)
  with pytest.raises(ValueError, match="decay in \\[0, 1\\)"):
    vq_tokenizer.VQTokenizer.create(model=model, run=image_run(16), decoder=decoder, decay=1.0)

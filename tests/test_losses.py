"""Every loss against a direct numpy transcription of its paper's formula, plus gradients, invariances, chunked and
sharded equality, jit/vmap, and doctests."""

import doctest
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax import losses
from ssl_jax.losses import contrastive, distillation, reconstruction, redundancy, tokens, wav2vec2

RNG = np.random.default_rng(0)


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _softmax(x, axis=-1):
  return np.exp(_log_softmax(x, axis))


def _np(x):
  return np.asarray(x, np.float64)


# ----------------------------------------------------------------------------------------------- reference formulas


def ref_nt_xent(z1, z2, t):
  z = _normalize(np.concatenate([z1, z2]))
  n, b = len(z), len(z1)
  out = []
  for i in range(n):
    j = (i + b) % n
    others = [k for k in range(n) if k != i]
    denom = np.sum([np.exp(z[i] @ z[k] / t) for k in others])
    out.append(-np.log(np.exp(z[i] @ z[j] / t) / denom))
  return np.array(out)


def ref_info_nce(q, k, t):
  logits = _normalize(q) @ _normalize(k).T / t
  return -np.diag(_log_softmax(logits, 1)) * 2 * t


def ref_clip(img, txt, s):
  logits = s * _normalize(img) @ _normalize(txt).T
  return 0.5 * (-np.diag(_log_softmax(logits, 1)) - np.diag(_log_softmax(logits, 0)))


def ref_siglip(img, txt, s, b):
  logits = s * _normalize(img) @ _normalize(txt).T + b
  z = 2 * np.eye(len(img)) - 1
  return -np.sum(np.log(1 / (1 + np.exp(-z * logits))), axis=1)


def ref_dino(s, t, c, ts, tt):
  q = _softmax((t - c) / tt)
  logp = _log_softmax(s / ts)
  total, n = 0, 0
  for i in range(t.shape[0]):
    for v in range(s.shape[0]):
      if v != i:
        total = total + np.sum(-q[i] * logp[v], axis=-1)
        n += 1
  return total / n


@pytest.mark.parametrize("b", [1, 4])
def test_contrastive_losses_match_reference(b):
  z1, z2 = RNG.normal(size=(b, 6)), RNG.normal(size=(b, 6))
  np.testing.assert_allclose(losses.nt_xent(z1, z2, 0.3), ref_nt_xent(z1, z2, 0.3), rtol=1e-5) if b > 1 else None
  np.testing.assert_allclose(losses.info_nce(z1, z2, 0.2), ref_info_nce(z1, z2, 0.2), rtol=1e-5)
  np.testing.assert_allclose(losses.info_nce(z1, z2, 0.2, scale_by_2tau=False), ref_info_nce(z1, z2, 0.2) / 0.4,
                             rtol=1e-5)
  np.testing.assert_allclose(losses.clip_loss(z1, z2, 7.0), ref_clip(z1, z2, 7.0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(losses.siglip_loss(z1, z2, 10.0, -10.0), ref_siglip(z1, z2, 10.0, -10.0), rtol=1e-5)


@pytest.mark.parametrize("fn", [
    lambda a, b, c: losses.nt_xent(a, b, 0.1, chunk_size=c),
    lambda a, b, c: losses.info_nce(a, b, 0.2, chunk_size=c),
    lambda a, b, c: losses.clip_loss(a, b, 20.0, chunk_size=c),
    lambda a, b, c: losses.siglip_loss(a, b, 10.0, -10.0, chunk_size=c),
])
def test_chunked_path_equals_plain_and_its_gradient(fn):
  a, b = jnp.asarray(RNG.normal(size=(16, 8)), jnp.float32), jnp.asarray(RNG.normal(size=(16, 8)), jnp.float32)
  np.testing.assert_allclose(jax.jit(lambda x, y: fn(x, y, 4))(a, b), fn(a, b, None), rtol=1e-5, atol=1e-6)
  g_plain = jax.grad(lambda x: fn(x, b, None).mean())(a)
  g_chunk = jax.grad(lambda x: fn(x, b, 4).mean())(a)
  np.testing.assert_allclose(g_chunk, g_plain, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="chunk_size"):
    fn(a, b, 5)


def test_nt_xent_invariances():
  z1, z2 = RNG.normal(size=(8, 16)), RNG.normal(size=(8, 16))
  a, b = losses.nt_xent(z1, z2), losses.nt_xent(z2, z1)
  np.testing.assert_allclose(a, np.concatenate([b[8:], b[:8]]), rtol=1e-5)     # symmetric in the views
  np.testing.assert_allclose(losses.nt_xent(3 * z1, 0.5 * z2), a, rtol=1e-5)    # scale invariant
  # Aligned and uniformly spread (orthogonal) embeddings beat aligned but collapsed ones, and random ones.
  eye = np.eye(8, 16)
  aligned = float(losses.nt_xent(eye, eye).mean())
  collapsed = float(losses.nt_xent(np.ones((8, 16)), np.ones((8, 16))).mean())
  assert aligned < float(a.mean()) and aligned < collapsed
  assert collapsed == pytest.approx(np.log(15), rel=1e-5)     # all 15 logits equal


def test_clip_is_symmetric_in_modalities_and_siglip_is_not_trivially():
  img, txt = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 4))
  np.testing.assert_allclose(losses.clip_loss(img, txt, 10.0), losses.clip_loss(txt, img, 10.0), rtol=1e-5)
  # SigLIP: each pair's term is symmetric, so the total (not the per-row sums) is symmetric.
  assert float(losses.siglip_loss(img, txt, 10.0, -5.0).sum()) == pytest.approx(
      float(losses.siglip_loss(txt, img, 10.0, -5.0).sum()), rel=1e-5)


def test_byol_values_and_stop_gradient():
  p, z = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 5))
  cos = np.sum(_normalize(p) * _normalize(z), axis=1)
  np.testing.assert_allclose(losses.byol_loss(p, z), 2 - 2 * cos, rtol=1e-5)
  assert np.all(np.asarray(jax.grad(lambda z: losses.byol_loss(p, z).sum())(jnp.asarray(z))) == 0)
  check_grads(lambda p: losses.byol_loss(p, z).sum(), (jnp.asarray(p),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_dino_loss_matches_reference_and_teacher_gets_no_gradient():
  s, t, c = RNG.normal(size=(5, 3, 7)), RNG.normal(size=(2, 3, 7)), RNG.normal(size=(7,))
  np.testing.assert_allclose(losses.dino_loss(s, t, c, 0.1, 0.04), ref_dino(s, t, c, 0.1, 0.04), rtol=1e-4)
  grad_t = jax.grad(lambda t: losses.dino_loss(jnp.asarray(s), t, c).sum())(jnp.asarray(t, jnp.float32))
  assert np.all(np.asarray(grad_t) == 0)
  new = losses.update_center(jnp.asarray(c), jnp.asarray(t), momentum=0.9)
  np.testing.assert_allclose(new, 0.9 * c + 0.1 * t.reshape(-1, 7).mean(0), rtol=1e-5)
  with pytest.raises(ValueError, match="teacher views"):
    losses.dino_loss(s[:1], t, c)


def test_sinkhorn_knopp_matches_dinov2_and_balances():
  logits = RNG.normal(size=(12, 5)) * 3

  def dinov2(x, temp, iters):   # the reference implementation, transcribed
    q = np.exp(x / temp).T
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iters):
      q /= q.sum(axis=1, keepdims=True); q /= k
      q /= q.sum(axis=0, keepdims=True); q /= b
    return (q * b).T

  np.testing.assert_allclose(losses.sinkhorn_knopp(logits, 0.5, 3), dinov2(logits, 0.5, 3), rtol=1e-4)
  q = np.asarray(losses.sinkhorn_knopp(logits, 0.5, 200))
  np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(q.sum(0), 12 / 5, rtol=1e-3)
  # Huge logits do not overflow (the global max is subtracted).
  assert np.all(np.isfinite(np.asarray(losses.sinkhorn_knopp(logits * 1e3, 0.04, 3))))


def test_ibot_patch_loss_reference():
  s, t = RNG.normal(size=(2, 4, 6)), RNG.normal(size=(2, 4, 6))
  mask = np.array([[1, 0, 1, 1], [0, 0, 0, 0]], np.float32)
  c = RNG.normal(size=(6,))
  ce = np.sum(-_softmax((t - c) / 0.04) * _log_softmax(s / 0.1), axis=-1)
  expected = [ce[0][mask[0] > 0].mean(), 0.0]
  np.testing.assert_allclose(losses.ibot_patch_loss(s, t, mask, c), expected, rtol=1e-4)


def test_koleo_reference_and_gradient():
  x = RNG.normal(size=(6, 3))
  xn = _normalize(x)
  d = np.linalg.norm(xn[:, None] - xn[None], axis=-1) + np.eye(6) * 10
  np.testing.assert_allclose(losses.koleo_loss(x), -np.log(d.min(1) + 1e-8), rtol=1e-4)
  g = jax.grad(lambda x: losses.koleo_loss(x).mean())(jnp.asarray(x, jnp.float32))
  assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).sum() > 0


def test_barlow_twins_reference():
  z1, z2 = RNG.normal(size=(10, 4)), RNG.normal(size=(10, 4))
  bn = lambda z: (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
  c = bn(z1).T @ bn(z2) / 10
  expected = np.sum((np.diag(c) - 1) ** 2) + 0.0051 * (np.sum(c ** 2) - np.sum(np.diag(c) ** 2))
  assert float(losses.barlow_twins_loss(z1, z2)) == pytest.approx(expected, rel=1e-4)


def test_vicreg_reference():
  x, y = RNG.normal(size=(10, 4)), RNG.normal(size=(10, 4)) * 0.3
  repr_loss = np.mean((x - y) ** 2)
  xc, yc = x - x.mean(0), y - y.mean(0)
  std = lambda z: np.sqrt(z.var(0, ddof=1) + 1e-4)
  std_loss = np.mean(np.maximum(0, 1 - std(xc))) / 2 + np.mean(np.maximum(0, 1 - std(yc))) / 2
  off = lambda m: np.sum(m ** 2) - np.sum(np.diag(m) ** 2)
  cov_loss = off(xc.T @ xc / 9) / 4 + off(yc.T @ yc / 9) / 4
  assert float(losses.vicreg_loss(x, y)) == pytest.approx(25 * repr_loss + 25 * std_loss + cov_loss, rel=1e-4)


def test_token_losses_reference():
  logits, labels = RNG.normal(size=(2, 5, 7)), RNG.integers(0, 7, (2, 5))
  mask = np.array([[1, 0, 0, 1, 1], [0, 1, 0, 0, 0]])
  ce = -np.take_along_axis(_log_softmax(logits), labels[..., None], -1)[..., 0]
  np.testing.assert_allclose(losses.masked_token_loss(logits, labels, mask),
                             [(ce[0] * mask[0]).sum() / 3, ce[1, 1]], rtol=1e-5)
  next_ce = -np.take_along_axis(_log_softmax(logits[:, :-1]), labels[:, 1:, None], -1)[..., 0]
  np.testing.assert_allclose(losses.causal_lm_loss(logits, labels), next_ce.mean(1), rtol=1e-5)
  pad = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
  np.testing.assert_allclose(losses.causal_lm_loss(logits, labels, pad), [next_ce[0, :2].mean(), next_ce[1].mean()],
                             rtol=1e-5)


def test_regression_losses_reference():
  pred, target = RNG.normal(size=(3, 4, 8)), RNG.normal(size=(3, 4, 8)) * 2
  d = pred - target
  smooth = np.where(np.abs(d) < 1.5, 0.5 * d ** 2 / 1.5, np.abs(d) - 0.75).mean(-1)
  np.testing.assert_allclose(losses.regression_loss(pred, target, "smooth_l1", 1.5), smooth, rtol=1e-5)
  np.testing.assert_allclose(losses.regression_loss(pred, target, "l2"), (d ** 2).mean(-1), rtol=1e-5)
  ln = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(losses.regression_loss(pred, target, "l2", normalize_target=True),
                             ((pred - ln) ** 2).mean(-1), rtol=1e-4)
  grad_target = jax.grad(lambda t: losses.regression_loss(pred, t).sum())(jnp.asarray(target, jnp.float32))
  assert np.all(np.asarray(grad_target) == 0)
  with pytest.raises(ValueError, match="kind"):
    losses.regression_loss(pred, target, "l3")


def test_data2vec_targets_reference():
  layers = RNG.normal(size=(4, 2, 5, 3))
  inorm = lambda x: (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
  expected = (inorm(layers[2]) + inorm(layers[3])) / 2
  np.testing.assert_allclose(losses.data2vec_targets(layers, top_k=2, layer_norm_kind="instance",
                                                    final_norm_kind=None), expected, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="top_k"):
    losses.data2vec_targets(layers, top_k=5)


def test_wav2vec2_negatives_are_other_masked_steps_of_the_same_utterance():
  mask = np.zeros((3, 40), np.int32)
  mask[0, 5:25] = 1
  mask[1, [1, 7, 30]] = 1
  mask[2, 9] = 1                      # a single masked step: no distractor exists
  pos, valid = losses.sample_negative_positions(jax.random.key(0), jnp.asarray(mask), 50)
  pos, valid = np.asarray(pos), np.asarray(valid)
  for b in range(2):
    for t in np.flatnonzero(mask[b]):
      assert np.all(mask[b, pos[b, t]] == 1) and np.all(pos[b, t] != t)
  assert valid[:2].all() and not valid[2].any()
  # Uniform over the 19 other masked steps of utterance 0.
  counts = np.bincount(pos[0, 5:25].reshape(-1), minlength=40)[5:25]
  assert counts.sum() == 1000 and counts.min() > 25


def test_wav2vec2_contrastive_reference():
  b, t, d, k = 2, 12, 6, 4
  c, q = RNG.normal(size=(b, t, d)), RNG.normal(size=(b, t, d))
  mask = (RNG.random((b, t)) < 0.6).astype(np.int32)
  rng = jax.random.key(3)
  pos, _ = losses.sample_negative_positions(rng, jnp.asarray(mask), k)
  pos = np.asarray(pos)
  cos = np.einsum("btd,bsd->bts", _normalize(c), _normalize(q))
  expected = []
  for i in range(b):
    vals = []
    for j in np.flatnonzero(mask[i]):
      logits = np.concatenate([[cos[i, j, j]], cos[i, j, pos[i, j]]]) / 0.1
      vals.append(-_log_softmax(logits)[0])
    expected.append(np.mean(vals))
  got = losses.wav2vec2_contrastive_loss(c, q, mask, rng, num_negatives=k)
  np.testing.assert_allclose(got, expected, rtol=1e-4)
  # A distractor equal to the target is excluded: with all latents identical only the positive remains (loss 0).
  same = np.ones((1, 6, d))
  assert float(losses.wav2vec2_contrastive_loss(same, same, np.ones((1, 6)), rng, 3)[0]) == pytest.approx(0, abs=1e-6)


def test_diversity_loss_extremes():
  g, v = 2, 8
  one_code = jnp.asarray(np.tile(np.eye(v)[0] * 50, (30, g, 1)))
  assert float(losses.diversity_loss(one_code)) == pytest.approx((g * v - g) / (g * v), abs=1e-4)
  # Step s uses codeword s % v in every group: each codeword equally often.
  uniform_use = jnp.asarray(np.tile(np.broadcast_to(np.eye(v)[:, None, :] * 50, (v, g, v)), (4, 1, 1)))
  assert float(losses.diversity_loss(uniform_use)) == pytest.approx(0.0, abs=1e-4)
  # Masked-out steps do not count.
  mixed = jnp.concatenate([one_code[:8], uniform_use])
  mask = jnp.concatenate([jnp.zeros(8), jnp.ones(len(uniform_use))])
  assert float(losses.diversity_loss(mixed, mask)) == pytest.approx(0.0, abs=1e-4)


def test_bfloat16_inputs_accumulate_in_float32():
  z1 = jnp.asarray(RNG.normal(size=(8, 16)), jnp.bfloat16)
  z2 = jnp.asarray(RNG.normal(size=(8, 16)), jnp.bfloat16)
  for value in (losses.nt_xent(z1, z2), losses.clip_loss(z1, z2, 10.0), losses.byol_loss(z1, z2),
                losses.barlow_twins_loss(z1, z2), losses.vicreg_loss(z1, z2)):
    assert value.dtype == jnp.float32
  np.testing.assert_allclose(losses.nt_xent(z1, z2), losses.nt_xent(z1.astype(jnp.float32), z2.astype(jnp.float32)),
                             rtol=1e-5)


def test_jit_and_vmap():
  z1, z2 = RNG.normal(size=(3, 8, 5)), RNG.normal(size=(3, 8, 5))
  vmapped = jax.vmap(lambda a, b: losses.nt_xent(a, b, 0.2))(z1, z2)
  looped = np.stack([losses.nt_xent(z1[i], z2[i], 0.2) for i in range(3)])
  np.testing.assert_allclose(vmapped, looped, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(losses.vicreg_loss)(z1[0], z2[0]), losses.vicreg_loss(z1[0], z2[0]), rtol=1e-5)


SHARDED = {
    "nt_xent": lambda a, b: losses.nt_xent(a, b, 0.1),
    "nt_xent_chunked": lambda a, b: losses.nt_xent(a, b, 0.1, chunk_size=8),
    "info_nce": lambda a, b: losses.info_nce(a, b, 0.2),
    "clip": lambda a, b: losses.clip_loss(a, b, 10.0, chunk_size=4),
    "siglip": lambda a, b: losses.siglip_loss(a, b, 10.0, -10.0),
    "byol": losses.byol_loss,
    "barlow": losses.barlow_twins_loss,
    "vicreg": losses.vicreg_loss,
    "koleo": lambda a, b: losses.koleo_loss(a),
    "sinkhorn": lambda a, b: losses.sinkhorn_knopp(a, 0.1),
    "center": lambda a, b: losses.update_center(jnp.zeros(a.shape[1]), a),
}


@pytest.mark.parametrize("name", sorted(SHARDED))
def test_sharded_over_eight_devices_equals_one_device(name):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = NamedSharding(mesh, P("data"))
  a, b = RNG.normal(size=(32, 12)).astype(np.float32), RNG.normal(size=(32, 12)).astype(np.float32)
  fn = SHARDED[name]
  one = jax.jit(fn)(a, b)
  eight = jax.jit(fn)(jax.device_put(a, sharded), jax.device_put(b, sharded))
  np.testing.assert_allclose(eight, one, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("module", [contrastive, distillation, reconstruction, redundancy, tokens, wav2vec2])
def test_docstring_examples(module):
  result = doctest.testmod(module, extraglobs={"jnp": jnp, "jax": jax}, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0


def test_losses_masking_and_pretext_import_only_jax_and_numpy():
  code = ("import sys; import ssl_jax.losses, ssl_jax.masking, ssl_jax.pretext; "
          "bad = [m for m in ('flax', 'optax', 'orbax', 'grain', 'tensorflow_datasets', 'tensorflow', 'ml_collections',"
          " 'torch', 'ssl_jax.models', 'ssl_jax.train') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------------------------- MAE (foundation issue)


def _numpy_mae_loss(pred, target, mask, norm_pix):
  if norm_pix:
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, ddof=1, keepdims=True)   # torch.var: unbiased, as the official MAE code
    target = (target - mean) / np.sqrt(var + 1e-6)
  per_patch = ((pred - target) ** 2).mean(-1)
  return (per_patch * mask).sum(-1) / mask.sum(-1)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_matches_numpy(norm_pix):
  pred, target = RNG.normal(size=(3, 5, 12)), RNG.normal(2.0, 3.0, size=(3, 5, 12))
  mask = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float64)
  got = losses.mae_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32), jnp.asarray(mask),
                        norm_pix=norm_pix)
  np.testing.assert_allclose(got, _numpy_mae_loss(pred, target, mask, norm_pix), rtol=1e-5)


def test_mae_loss_by_hand():
  # One example, two patches of two pixels; only patch 0 is masked.
  pred = jnp.array([[[1.0, 2.0], [100.0, 100.0]]])
  target = jnp.array([[[0.0, 4.0], [0.0, 0.0]]])
  mask = jnp.array([[1.0, 0.0]])
  assert losses.mae_loss(pred, target, mask, norm_pix=False).tolist() == pytest.approx([2.5])
  # Normalised target of patch 0: mean 2, unbiased var 8 -> (-2, 2) / sqrt(8 + 1e-6).
  t = 2.0 / np.sqrt(8.0 + 1e-6)
  expected = ((1 + t) ** 2 + (2 - t) ** 2) / 2
  assert losses.mae_loss(pred, target, mask, norm_pix=True).tolist() == pytest.approx([expected], rel=1e-6)


def test_mae_loss_ignores_visible_patches():
  pred = jnp.asarray(RNG.normal(size=(2, 6, 4)), jnp.float32)
  target = jnp.asarray(RNG.normal(size=(2, 6, 4)), jnp.float32)
  mask = jnp.asarray([[1, 0, 1, 0, 0, 1], [0, 0, 1, 1, 0, 1]], jnp.float32)
  grad = jax.grad(lambda p: losses.mae_loss(p, target, mask).sum())(pred)
  np.testing.assert_array_equal(np.asarray(grad)[np.asarray(mask) == 0], 0.0)
  assert np.all(np.abs(np.asarray(grad)[np.asarray(mask) == 1]) > 0)


def test_mae_loss_shape_error():
  with pytest.raises(ValueError, match="shapes"):
    losses.mae_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), jnp.zeros((2, 4)))


GRAD_CHECKED = {
    "nt_xent": lambda a, b: losses.nt_xent(a, b, 0.5).mean(),
    "info_nce": lambda a, b: losses.info_nce(a, b, 0.5).mean(),
    "clip": lambda a, b: losses.clip_loss(a, b, 2.0).mean(),
    "siglip": lambda a, b: losses.siglip_loss(a, b, 2.0, -1.0).mean(),
    "barlow": lambda a, b: losses.barlow_twins_loss(a, b),
    "vicreg": lambda a, b: losses.vicreg_loss(a, b),
    "dino": lambda a, b: losses.dino_loss(a.reshape(2, 3, 4), b.reshape(2, 3, 4), jnp.zeros(4), 0.5, 0.5).mean(),
    "regression": lambda a, b: losses.regression_loss(a, b, beta=0.5).mean(),
}


@pytest.mark.parametrize("name", sorted(GRAD_CHECKED))
def test_gradients_match_finite_differences(name):
  # Inputs of this test's own (not the module's shared generator, whose state depends on which tests a pytest-xdist
  # worker ran first), of std about 0.5: VICReg's variance hinge max(0, 1 - std) has its kink at std 1, where a
  # finite difference of 1e-2 can straddle it (1 draw in 60 of unit std failed; none of 60 at 0.5).
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  a = jnp.asarray(0.5 * rng.normal(size=(6, 4)), jnp.float32)
  b = jnp.asarray(0.5 * rng.normal(size=(6, 4)), jnp.float32)
  check_grads(lambda x: GRAD_CHECKED[name](x, b), (a,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)


@pytest.mark.parametrize("name,fn,shape", [
    ("dino", lambda s, t: losses.dino_loss(s, t[:2], jnp.zeros(12)), (4, 32, 12)),
    ("ibot", lambda s, t: losses.ibot_patch_loss(s[0], t[0], (t[1, ..., 0] > 0), jnp.zeros(12)), (4, 32, 12)),
    ("masked_token", lambda s, t: losses.masked_token_loss(s[0], jnp.argmax(t[0], -1), t[1, ..., 0] > 0), (4, 32, 12)),
    # [B=4, T=32, D=12], sharded along time.
    ("wav2vec2", lambda s, t: losses.wav2vec2_contrastive_loss(s, t, t[..., 0] > 0, jax.random.key(0), 5),
     (4, 32, 12)),
])
def test_sharded_equality_of_view_and_token_losses(name, fn, shape):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = NamedSharding(mesh, P(None, "data"))        # the batch is the second axis here
  s, t = RNG.normal(size=shape).astype(np.float32), RNG.normal(size=shape).astype(np.float32)
  one = jax.jit(fn)(s, t)
  eight = jax.jit(fn)(jax.device_put(s, sharded), jax.device_put(t, sharded))
  np.testing.assert_allclose(eight, one, rtol=2e-5, atol=1e-6)


def test_dino_cross_entropy_is_dino_loss_with_centred_targets():
  rng = np.random.RandomState(3)
  s, t = jnp.asarray(rng.normal(size=(5, 4, 7))), jnp.asarray(rng.normal(size=(2, 4, 7)))
  c = jnp.asarray(rng.normal(size=7))
  q = jax.nn.softmax((t - c) / 0.04, axis=-1)
  np.testing.assert_allclose(np.asarray(losses.dino_cross_entropy(s, q, 0.1)),
                             np.asarray(losses.dino_loss(s, t, c, 0.1, 0.04)), rtol=1e-6)

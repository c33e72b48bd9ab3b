import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses


def _numpy_mae_loss(pred, target, mask, norm_pix):
  if norm_pix:
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, ddof=1, keepdims=True)   # torch.var: unbiased, as the official MAE code
    target = (target - mean) / np.sqrt(var + 1e-6)
  per_patch = ((pred - target) ** 2).mean(-1)
  return (per_patch * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_matches_numpy(norm_pix):
  rng = np.random.default_rng(0)
  pred, target = rng.normal(size=(3, 5, 12)), rng.normal(2.0, 3.0, size=(3, 5, 12))
  mask = (rng.random((3, 5)) < 0.6).astype(np.float64)
  got = losses.mae_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32), jnp.asarray(mask),
                        norm_pix=norm_pix)
  np.testing.assert_allclose(got, _numpy_mae_loss(pred, target, mask, norm_pix), rtol=1e-5)


def test_mae_loss_by_hand():
  # One example, two patches of two pixels; only patch 0 is masked.
  pred = jnp.array([[[1.0, 2.0], [100.0, 100.0]]])
  target = jnp.array([[[0.0, 4.0], [0.0, 0.0]]])
  mask = jnp.array([[1.0, 0.0]])
  # Without normalisation: ((1-0)^2 + (2-4)^2) / 2 = 2.5.
  assert float(losses.mae_loss(pred, target, mask, norm_pix=False)) == pytest.approx(2.5)
  # Normalised target of patch 0: mean 2, unbiased var 8 -> (-2, 2) / sqrt(8 + 1e-6).
  t = 2.0 / np.sqrt(8.0 + 1e-6)
  expected = ((1 + t) ** 2 + (2 - t) ** 2) / 2
  assert float(losses.mae_loss(pred, target, mask, norm_pix=True)) == pytest.approx(expected, rel=1e-6)


def test_mae_loss_ignores_visible_patches():
  rng = np.random.default_rng(1)
  pred = jnp.asarray(rng.normal(size=(2, 6, 4)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(2, 6, 4)), jnp.float32)
  mask = jnp.asarray([[1, 0, 1, 0, 0, 1], [0, 0, 1, 1, 0, 1]], jnp.float32)
  grad = jax.grad(lambda p: losses.mae_loss(p, target, mask))(pred)
  np.testing.assert_array_equal(np.asarray(grad)[np.asarray(mask) == 0], 0.0)
  assert np.all(np.abs(np.asarray(grad)[np.asarray(mask) == 1]) > 0)


def test_mae_loss_shape_error():
  with pytest.raises(ValueError, match="shapes"):
    losses.mae_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), jnp.zeros((2, 4)))

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import masking


def test_random_masking_keeps_exactly_k_per_example():
  m = masking.random_masking(jax.random.key(0), batch_size=64, num_tokens=196, mask_ratio=0.75)
  assert m.ids_keep.shape == (64, 49)
  np.testing.assert_array_equal(np.sum(np.asarray(m.mask), axis=1), np.full(64, 147.0))
  # The kept ids are exactly the unmasked positions.
  for b in range(4):
    kept = set(np.asarray(m.ids_keep[b]).tolist())
    assert kept == set(np.flatnonzero(np.asarray(m.mask[b]) == 0).tolist())


def test_ids_restore_inverts_the_shuffle():
  m = masking.random_masking(jax.random.key(1), 8, 16, 0.5)
  x = jnp.arange(8 * 16, dtype=jnp.float32).reshape(8, 16, 1)
  ids_shuffle = jnp.argsort(m.ids_restore, axis=1)
  shuffled = masking.gather_tokens(x, ids_shuffle)
  np.testing.assert_array_equal(shuffled[:, :8], masking.gather_tokens(x, m.ids_keep))
  np.testing.assert_array_equal(masking.gather_tokens(shuffled, m.ids_restore), x)


def test_masking_is_uniform_over_positions():
  n, t, ratio = 20000, 10, 0.7
  m = masking.random_masking(jax.random.key(2), n, t, ratio)
  freq = np.asarray(m.mask).mean(axis=0)
  # Each position is masked with probability 0.7; 4 standard errors of the mean over 20k draws.
  np.testing.assert_allclose(freq, 0.7, atol=4 * np.sqrt(0.21 / n))
  # Every position is kept first (in shuffle order) about equally often.
  first = np.bincount(np.asarray(m.ids_keep[:, 0]), minlength=t) / n
  np.testing.assert_allclose(first, 1 / t, atol=4 * np.sqrt(0.09 / n))


def test_masking_depends_on_the_key_only():
  a = masking.random_masking(jax.random.key(3), 4, 16, 0.75)
  b = masking.random_masking(jax.random.key(3), 4, 16, 0.75)
  c = masking.random_masking(jax.random.key(4), 4, 16, 0.75)
  np.testing.assert_array_equal(a.mask, b.mask)
  assert not np.array_equal(a.mask, c.mask)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_invalid_mask_ratio(ratio):
  with pytest.raises(ValueError, match="mask_ratio"):
    masking.random_masking(jax.random.key(0), 2, 16, ratio)


def test_patchify_layout_and_inverse():
  images = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  patches = masking.patchify(images, 2)
  assert patches.shape == (2, 6, 12)
  # Patch 1 is rows 0-1, columns 2-3, flattened as (row, column, channel).
  np.testing.assert_array_equal(patches[0, 1], images[0, 0:2, 2:4].reshape(-1))
  np.testing.assert_array_equal(patches[1, 4], images[1, 2:4, 2:4].reshape(-1))
  np.testing.assert_array_equal(masking.unpatchify(patches, 2, 4, 6), images)
  with pytest.raises(ValueError, match="divisible"):
    masking.patchify(images, 4)

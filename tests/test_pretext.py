import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import pretext


def test_rotations_are_exact_and_labelled():
  x = jnp.asarray(np.random.default_rng(0).random((3, 5, 5, 2)), jnp.float32)
  r, y = pretext.rotations(x)
  assert r.shape == (12, 5, 5, 2) and y.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
  np.testing.assert_array_equal(r[:3], x)
  np.testing.assert_array_equal(r[3:6], np.rot90(np.asarray(x), 1, axes=(1, 2)))
  np.testing.assert_array_equal(r[6:9], np.asarray(x)[:, ::-1, ::-1])
  with pytest.raises(ValueError, match="square"):
    pretext.rotations(jnp.zeros((1, 4, 6, 1)))


def test_jigsaw_permutation_set_is_greedy_max_hamming():
  p = pretext.jigsaw_permutations(30)
  assert p.shape == (30, 9) and len({tuple(r) for r in p}) == 30
  assert all(sorted(r) == list(range(9)) for r in p)
  # Greedy property: each added permutation maximises the summed distance to those before it.
  import itertools
  perms = np.array(list(itertools.permutations(range(9))))
  for i in (1, 5, 20):
    totals = sum((perms != p[j]).sum(1) for j in range(i))
    chosen = {tuple(r) for r in p[:i]}
    best = max(t for t, q in zip(totals, perms) if tuple(q) not in chosen)
    assert totals[np.flatnonzero((perms == p[i]).all(1))[0]] == best
  d = (p[:, None] != p[None]).sum(-1)[np.triu_indices(30, 1)]
  assert d.mean() > 8.0      # random pairs of permutations differ in 8 of 9 places on average


def test_jigsaw_tiles_follow_the_label_permutation():
  x = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6, 1)
  perms = pretext.jigsaw_permutations(10)
  tiles, labels = pretext.jigsaw(jax.random.key(0), x, perms)      # whole 2x2 cells, no crop jitter
  for b in range(2):
    for slot in range(9):
      cell = perms[int(labels[b])][slot]
      r, c = divmod(int(cell), 3)
      np.testing.assert_array_equal(tiles[b, slot], x[b, 2 * r:2 * r + 2, 2 * c:2 * c + 2])
  jittered, _ = pretext.jigsaw(jax.random.key(1), jnp.zeros((4, 9, 9, 3)), perms, tile_crop=2)
  assert jittered.shape == (4, 9, 2, 2, 3)
  with pytest.raises(ValueError, match="tile_crop"):
    pretext.jigsaw(jax.random.key(0), x, perms, tile_crop=3)


def test_rgb_to_lab_reference_colours():
  lab = np.asarray(pretext.rgb_to_lab(jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])))
  np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.1)
  np.testing.assert_allclose(lab[1], [0, 0, 0], atol=0.1)
  np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.2)     # sRGB red, D65


def test_colorization_targets_soft_encode_on_nearby_bins():
  bins = pretext.ab_gamut_bins()
  assert 250 <= len(bins) <= 320
  img = jnp.asarray(np.random.default_rng(0).random((2, 4, 4, 3)), jnp.float32)
  lum, target = pretext.colorization_targets(img)
  assert lum.shape == (2, 4, 4, 1) and target.shape == (2, 4, 4, len(bins))
  np.testing.assert_allclose(target.sum(-1), 1.0, rtol=1e-5)
  assert int((np.asarray(target[0, 0, 0]) > 0).sum()) == 5
  ab = np.asarray(pretext.rgb_to_lab(img))[..., 1:]
  mode = bins[np.asarray(target).argmax(-1)]
  assert np.abs(mode - ab).max() < 10     # the heaviest bin is within one cell of the true ab


def test_inpainting_masks():
  center = pretext.inpainting_mask(jax.random.key(0), 2, 128, 128)
  assert float(center.mean()) == pytest.approx(0.25) and float(center[0, 64, 64, 0]) == 1.0
  blocks = pretext.inpainting_mask(jax.random.key(0), 16, 32, 32, kind="random_block")
  per_image = np.asarray(blocks).mean((1, 2, 3))
  assert (per_image <= 0.25 + 1e-6).all() and (per_image > 0.05).all()
  assert not np.array_equal(blocks[0], blocks[1])
  with pytest.raises(ValueError, match="kind"):
    pretext.inpainting_mask(jax.random.key(0), 1, 8, 8, kind="ring")


def test_pretext_docstring_examples():
  import doctest
  result = doctest.testmod(pretext, extraglobs={"jnp": jnp, "jax": jax})
  assert result.attempted > 0 and result.failed == 0

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import pretext


def test_rotations_are_exact_and_labelled():
  x = jnp.asarray(np.random.default_rng(0).random((3, 5, 5, 2)), jnp.float32)
  r, y = pretext.rotations(x)
  assert r.shape == (12, 5, 5, 2) and y.tolist() == [0, 1, 2, 3] * 3        # example-major, as the official loader
  np.testing.assert_array_equal(r[0::4], x)
  # The official `rotate_img`: 90 = flipud(transpose), 180 = fliplr(flipud), 270 = transpose(flipud).
  official = {1: lambda a: np.flipud(np.transpose(a, (1, 0, 2))), 2: lambda a: np.fliplr(np.flipud(a)),
              3: lambda a: np.transpose(np.flipud(a), (1, 0, 2))}
  for k, rotate in official.items():
    np.testing.assert_array_equal(r[k::4], np.stack([rotate(a) for a in np.asarray(x)]))
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


def test_tile_jitter_and_standardisation_are_the_reimplementations():
  """`rgb_jittering`: a factor in [0.8, 1.2] per tile and channel, one shift per tile of a whole number of 1/255 in
  -5..5, clipped to [0, 1]; each tile standardised over its pixels and channels (unbiased std), a flat one centred."""
  tiles = jnp.full((64, 9, 4, 4, 3), 0.5)
  out = np.asarray(pretext.jitter_tiles(jax.random.key(0), tiles))
  # A flat grey tile: out = 0.5 * factor_c + shift, so channels differ by 0.5 * (factor_c - factor_0), at most 0.2.
  spread = out[..., 0, 0, :] - out[..., 0, 0, :1]
  assert np.all(np.abs(spread) <= 0.2 + 1e-6) and np.std(spread) > 0.03
  assert out.min() >= 0 and out.max() <= 1 and np.all(np.ptp(out, axis=(2, 3)) < 1e-6)   # one value per channel
  # The shift alone: factors fixed at 1.
  shifted = np.asarray(pretext.jitter_tiles(jax.random.key(1), tiles, scale=(1.0, 1.0)))[..., 0, 0, 0] * 255 - 127.5
  assert set(np.round(shifted).astype(int).ravel()) == set(range(-5, 6))
  np.testing.assert_allclose(shifted, np.round(shifted), atol=1e-3)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 5, 5, 3)) * 3 + 1, jnp.float32)
  z = np.asarray(pretext.standardize_tiles(x))
  np.testing.assert_allclose(z.mean(axis=(2, 3, 4)), 0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=(2, 3, 4), ddof=1), 1, rtol=1e-5)
  np.testing.assert_array_equal(pretext.standardize_tiles(jnp.ones((1, 2, 2, 3))), 0)


def test_lab_round_trip_annealed_mean_and_subsampled_targets():
  """`lab_to_rgb` inverts `rgb_to_lab` over the cube; the annealed mean runs from the mean (T = 1) towards the mode
  (T -> 0); the targets at stride 2 encode every second pixel's ab."""
  rgb = jnp.asarray(np.random.default_rng(0).random((500, 3)), jnp.float32)
  np.testing.assert_allclose(pretext.lab_to_rgb(pretext.rgb_to_lab(rgb)), rgb, atol=2e-4)
  bins = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0]])
  logits = jnp.log(jnp.array([0.5, 0.3, 0.2]))
  np.testing.assert_allclose(pretext.annealed_mean(logits, bins, 1.0), [3.0, 4.0], rtol=1e-5)
  np.testing.assert_allclose(pretext.annealed_mean(logits, bins, 0.01), [0.0, 0.0], atol=1e-6)
  images = jnp.asarray(np.random.default_rng(1).random((2, 4, 4, 3)), jnp.float32)
  _, full = pretext.colorization_targets(images, bins, neighbours=2)
  lum, half = pretext.colorization_targets(images, bins, neighbours=2, stride=2)
  assert lum.shape == (2, 4, 4, 1) and half.shape == (2, 2, 2, 3)
  np.testing.assert_allclose(half, full[:, ::2, ::2], rtol=1e-6)

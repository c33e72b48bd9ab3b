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


def test_mask_to_indices():
  ids, ok = masking.mask_to_indices(jnp.array([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0]]), 3)
  assert ids[0].tolist() == [1, 3, 4] and ok[0].tolist() == [True] * 3
  assert ids[1, 0] == 0 and ok[1].tolist() == [True, False, False]


def test_mlm_masking_counts_specials_and_80_10_10():
  b, t = 400, 40
  tokens = jnp.asarray(np.random.default_rng(0).integers(5, 1000, (b, t)), jnp.int32)
  special = np.zeros((b, t), bool)
  special[:, 0] = special[:, -1] = True           # [CLS] ... [SEP]
  special[:, 30:] = np.arange(30, 40)[None] >= 30 + np.arange(b)[:, None] % 10   # padding of varied length
  inputs, mask = masking.mlm_masking(jax.random.key(0), tokens, vocab_size=1000, mask_token_id=3,
                                     special_mask=jnp.asarray(special))
  inputs, mask, tokens = np.asarray(inputs), np.asarray(mask), np.asarray(tokens)
  n = (~special).sum(1)
  np.testing.assert_array_equal(mask.sum(1), np.maximum(1, np.round(0.15 * n)))
  assert not (mask[special] > 0).any()
  np.testing.assert_array_equal(inputs[mask == 0], tokens[mask == 0])     # unchosen tokens are untouched
  chosen = mask > 0
  frac_mask = np.mean(inputs[chosen] == 3)
  frac_same = np.mean(inputs[chosen] == tokens[chosen])
  frac_random = 1 - frac_mask - frac_same
  total = chosen.sum()
  se = np.sqrt(0.25 / total)
  assert abs(frac_mask - 0.8) < 4 * se and abs(frac_same - 0.1) < 4 * se + 0.002 and abs(frac_random - 0.1) < 4 * se


def _runs(row):
  runs, current = [], 0
  for v in row:
    if v:
      current += 1
    elif current:
      runs.append(current)
      current = 0
  return runs + ([current] if current else [])


def test_span_masking_matches_wav2vec2_statistics():
  m = np.asarray(masking.span_masking(jax.random.key(0), 256, 500))
  assert 0.46 < m.mean() < 0.52               # the paper: about 49% of time steps masked
  assert all(r >= 10 for row in m[:32] for r in _runs(row))      # unions of whole spans of 10
  few = np.asarray(masking.span_masking(jax.random.key(1), 64, 100, mask_prob=0.0, span_length=5, min_spans=2))
  assert set(few.sum(1).tolist()) <= set(range(5, 11)) and (few.sum(1) >= 5).all()
  with pytest.raises(ValueError, match="span_length"):
    masking.span_masking(jax.random.key(0), 1, 5, span_length=6)


def test_blockwise_masking_budget_and_blocks():
  m = np.asarray(jax.jit(lambda k: masking.blockwise_masking(k, 256, (14, 14), num_masking_patches=75))(
      jax.random.key(0)))
  counts = m.sum(1)
  assert counts.max() <= 75 and counts.mean() > 72
  assert len({row.tobytes() for row in m}) == 256          # different per example
  # Blocks have at least min_num_patches = 16 area, so isolated masked patches are rare; check 4-connectivity holds
  # for most masked patches (a random 75-of-196 mask has many isolated patches).
  grid = m.reshape(-1, 14, 14)
  padded = np.pad(grid, ((0, 0), (1, 1), (1, 1)))
  neighbours = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
  isolated = ((grid > 0) & (neighbours == 0)).sum() / grid.sum()
  assert isolated < 0.01


def test_multiblock_masking_geometry():
  m = masking.multiblock_masking(jax.random.key(0), 64, (14, 14))
  context, targets = np.asarray(m.context), np.asarray(m.targets)
  assert context.shape == (64, 196) and targets.shape == (64, 4, 196)
  assert not (context[:, None] & targets).any()            # the context never overlaps a target
  sizes = targets.sum(-1)
  assert (sizes == sizes[0, 0]).all()                       # one target size per batch
  assert 0.15 * 196 * 0.8 <= sizes[0, 0] <= 0.2 * 196 * 1.1
  for b in range(8):                                        # each target is a rectangle
    for blk in targets[b].reshape(4, 14, 14):
      rows, cols = np.flatnonzero(blk.any(1)), np.flatnonzero(blk.any(0))
      assert blk.sum() == len(rows) * len(cols) == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
  assert (context.sum(1) >= 10).all()
  other = masking.multiblock_masking(jax.random.key(1), 64, (14, 14))
  assert not np.array_equal(np.asarray(other.targets), targets)


def test_masking_docstring_examples():
  import doctest
  result = doctest.testmod(masking, extraglobs={"jnp": jnp, "jax": jax})
  assert result.attempted > 0 and result.failed == 0

"""I-JEPA against the official code (facebookresearch/ijepa): the mask sampler against a numpy transcription of its
`MaskCollator`, and one loss and its gradients against a PyTorch transcription of its training step.

The sampler tests need only numpy; the step test needs PyTorch (the `export` extra) and is skipped without it.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import image_run
from ssl_jax import convert
from ssl_jax import masking
from ssl_jax.methods import ijepa
from ssl_jax.models import vit


# ---- the official collator, transcribed (src/masks/multiblock.py) with numpy's generator in place of torch's --------

def _official_block_size(u, height, width, scale, aspect):
  s = scale[0] + u * (scale[1] - scale[0])
  max_keep = int(height * width * s)
  ar = aspect[0] + u * (aspect[1] - aspect[0])
  h, w = int(round(math.sqrt(max_keep * ar))), int(round(math.sqrt(max_keep / ar)))
  while h >= height:
    h -= 1
  while w >= width:
    w -= 1
  return h, w


def _official_block_mask(rng, height, width, size, acceptable, min_keep):
  h, w = size
  tries, timeout = 0, 20
  while True:
    top, left = rng.integers(0, height - h), rng.integers(0, width - w)
    mask = np.zeros((height, width), np.int32)
    mask[top:top + h, left:left + w] = 1
    if acceptable is not None:
      for k in range(max(len(acceptable) - tries, 0)):
        mask *= acceptable[k]
    ids = np.flatnonzero(mask)
    if len(ids) > min_keep:
      break
    timeout -= 1
    if timeout == 0:
      tries, timeout = tries + 1, 20
  complement = np.ones((height, width), np.int32)
  complement[top:top + h, left:left + w] = 0
  return ids, complement


def _official_collate(rng, batch, height, width, npred=4, pred_scale=(0.15, 0.2), enc_scale=(0.85, 1.0),
                      aspect=(0.75, 1.5), min_keep=10):
  p_size = _official_block_size(rng.random(), height, width, pred_scale, aspect)
  e_size = _official_block_size(rng.random(), height, width, enc_scale, (1.0, 1.0))
  preds, encs = [], []
  for _ in range(batch):
    blocks = [_official_block_mask(rng, height, width, p_size, None, min_keep) for _ in range(npred)]
    preds.append([b[0] for b in blocks])
    encs.append(_official_block_mask(rng, height, width, e_size, [b[1] for b in blocks], min_keep)[0])
  return p_size, e_size, preds, encs


def test_block_size_is_the_official_function_of_one_uniform():
  for grid in ((14, 14), (16, 16), (8, 8)):
    for scale, aspect in (((0.15, 0.2), (0.75, 1.5)), ((0.85, 1.0), (1.0, 1.0))):
      for u in np.linspace(0, 1, 257, endpoint=False):
        ours = masking.multiblock_block_size(float(u), grid, scale, aspect)
        assert ours == _official_block_size(u, *grid, scale, aspect)
        traced = masking.multiblock_block_size(jnp.float32(u), grid, scale, aspect)
        assert tuple(int(v) for v in traced) == ours, (grid, scale, u)


def test_mask_statistics_match_the_official_collator():
  grid, batch, rounds = (14, 14), 64, 12
  rng = np.random.default_rng(0)
  theirs = [_official_collate(rng, batch, *grid) for _ in range(rounds)]
  ours = [masking.multiblock_masking(jax.random.key(i), batch, grid) for i in range(rounds)]
  ours = [(np.asarray(m.context), np.asarray(m.targets)) for m in ours]

  # Targets: rectangles of one size per batch, never touching the last row or column (randint(0, H - h)).
  for context, targets in ours:
    sizes = targets.sum(-1)
    assert (sizes == sizes[0, 0]).all()
    blocks = targets.reshape(-1, *grid)
    assert not blocks[:, -1, :].any() and not blocks[:, :, -1].any()
    assert (context.sum(-1) > 10).all()
  # Contexts: the same distribution of sizes (mean and batch minimum) and of overlap with the targets.
  ctx_ours = np.concatenate([c.sum(-1) for c, _ in ours])
  ctx_theirs = np.concatenate([[len(e) for e in encs] for *_, encs in theirs])
  pooled_std = np.sqrt((ctx_ours.var() + ctx_theirs.var()) / len(ctx_ours))
  assert abs(ctx_ours.mean() - ctx_theirs.mean()) < 4 * pooled_std, (ctx_ours.mean(), ctx_theirs.mean())
  # Every target cell is equally likely to be covered: per-cell frequencies agree (both ~ uniform over allowed tops).
  cover_ours = np.mean([t.reshape(-1, *grid).mean(0) for _, t in ours], axis=0)
  cover_theirs = np.zeros(grid)
  for _, _, preds, _ in theirs:
    for example in preds:
      for ids in example:
        cover_theirs.flat[ids] += 1
  cover_theirs /= rounds * batch * 4
  assert np.abs(cover_ours.sum() - cover_theirs.sum()) / cover_theirs.sum() < 0.15
  assert cover_ours[-1].sum() == cover_theirs[-1].sum() == 0


def test_an_unsatisfiable_sampler_is_refused():
  with pytest.raises(ValueError, match="min_keep"):
    masking.multiblock_masking(jax.random.key(0), 2, (8, 8), min_keep=10)


def test_truncation_to_the_groups_smallest_context():
  method = _method(image_run(16), mask_group=4)
  masks = method.masks(jax.random.key(3), 8, group=4)
  counts = np.asarray(masks.context_counts)
  used = np.asarray(masks.context_valid).sum(1)
  assert (used[:4] == counts[:4].min()).all() and (used[4:] == counts[4:].min()).all()
  ids = np.asarray(masks.context_ids)
  for b in range(8):                  # the first `used` patches of the context, in increasing order
    m = ids[b, :used[b]]
    assert (np.diff(m) > 0).all()


# ---- one step against a PyTorch transcription of src/train.py and src/models/vision_transformer.py ----------------

PATCH, WIDTH, DEPTH, HEADS, PRED_WIDTH, PRED_DEPTH = 2, 32, 2, 2, 16, 2


def _method(run, **kw):
  model = dict(arch="vit", patch_size=PATCH, width=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_dim=2 * WIDTH,
               class_token=False, init_std=0.02)
  return ijepa.IJEPA.create(model=model, run=run, predictor=dict(width=PRED_WIDTH, depth=PRED_DEPTH, num_heads=HEADS,
                                                                   mlp_dim=4 * PRED_WIDTH), min_keep=4, **kw)


def _torch_blocks(torch, prefix, blocks, depth):
  """timm-named tensors of our blocks `{block{i}: ...}` (the same layout as `convert.to_timm`'s)."""
  spec = dict(arch="vit", patch_size=PATCH, width=blocks["block0"]["ln1"]["scale"].shape[0], depth=depth,
              num_heads=HEADS, mlp_dim=blocks["block0"]["mlp"]["fc1"]["kernel"].shape[1], class_token=False)
  d = spec["width"]
  fake = {"params": {"vit": {"embedding": {"kernel": np.zeros((PATCH * PATCH * 3, d)), "bias": np.zeros(d)},
                             "encoder": dict(blocks)}}}
  sd, _ = convert.to_timm(spec, fake, image_size=4 * PATCH)
  return {prefix + k: torch.tensor(np.ascontiguousarray(v), requires_grad=True) for k, v in sd.items()
          if k.startswith("blocks.") or k.startswith("norm.")}


def _torch_vit_blocks(torch, p, prefix, x, depth, width):
  F = torch.nn.functional
  n, hd = x.shape[0], width // HEADS
  for i in range(depth):
    b = lambda name: p[f"{prefix}blocks.{i}.{name}"]
    y = F.layer_norm(x, (width,), b("norm1.weight"), b("norm1.bias"), eps=1e-6)
    q, k, v = F.linear(y, b("attn.qkv.weight"), b("attn.qkv.bias")).reshape(n, -1, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
    y = (((q @ k.transpose(-2, -1)) * hd ** -0.5).softmax(dim=-1) @ v).transpose(1, 2).reshape(n, -1, width)
    x = x + F.linear(y, b("attn.proj.weight"), b("attn.proj.bias"))
    y = F.layer_norm(x, (width,), b("norm2.weight"), b("norm2.bias"), eps=1e-6)
    x = x + F.linear(F.gelu(F.linear(y, b("mlp.fc1.weight"), b("mlp.fc1.bias"))), b("mlp.fc2.weight"),
                     b("mlp.fc2.bias"))
  return F.layer_norm(x, (width,), p[prefix + "norm.weight"], p[prefix + "norm.bias"], eps=1e-6)


def _apply_masks(torch, x, masks):
  return torch.cat([torch.gather(x, 1, m.unsqueeze(-1).repeat(1, 1, x.size(-1))) for m in masks], dim=0)


def _repeat_interleave_batch(torch, x, b, repeat):
  n = len(x) // b
  return torch.cat([torch.cat([x[i * b:(i + 1) * b] for _ in range(repeat)], dim=0) for i in range(n)], dim=0)


def test_loss_and_gradients_equal_the_official_step():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  size, batch = 16, 6
  method = _method(image_run(size), context_capacity=1.0)
  images = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
  params, extra = method.init(jax.random.key(1), {"image": images})
  params = jax.tree.map(np.asarray, __import__("flax").linen.unbox(params))
  # A target encoder that differs from the context encoder (as after EMA steps).
  extra = {"target": jax.tree.map(lambda x: np.asarray(x) * 1.1, params["encoder"])}
  key = jax.random.key(5)
  masks = method.masks(jax.random.split(key)[0], batch)                 # the masks `loss` draws from `key`
  assert int(masks.context_valid.sum(1).min()) < method.context_capacity       # padding is exercised
  loss_of = lambda p: method.loss(p, extra, {"image": images}, key, jnp.int32(0))[0]
  loss, grads = jax.value_and_grad(loss_of)(params)

  # The official step: index lists truncated to the batch's smallest, as the collator hands them over.
  k_ctx = int(masks.context_valid.sum(1).min())
  k_tgt = int(masks.target_valid[0, 0].sum())
  masks_enc = [torch.tensor(np.asarray(masks.context_ids)[:, :k_ctx], dtype=torch.int64)]
  masks_pred = [torch.tensor(np.asarray(masks.target_ids)[:, i, :k_tgt], dtype=torch.int64)
                for i in range(masks.target_ids.shape[1])]
  tp = lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32, requires_grad=True)
  enc = params["encoder"]
  p = {"patch_embed.weight": tp(enc["embedding"]["kernel"].reshape(PATCH, PATCH, 3, WIDTH).transpose(3, 2, 0, 1)),
       "patch_embed.bias": tp(enc["embedding"]["bias"])}
  p.update(_torch_blocks(torch, "encoder.", enc["encoder"], DEPTH))
  tgt = {k: v.detach() for k, v in _torch_blocks(torch, "target.", extra["target"]["encoder"], DEPTH).items()}
  tgt_embed = (torch.tensor(extra["target"]["embedding"]["kernel"].reshape(PATCH, PATCH, 3, WIDTH)
                            .transpose(3, 2, 0, 1).copy()), torch.tensor(extra["target"]["embedding"]["bias"]))
  pred = params["predictor"]
  p.update(_torch_blocks(torch, "predictor.", pred["predictor"], PRED_DEPTH))
  p.update({"predictor_embed.weight": tp(pred["embed"]["kernel"].T), "predictor_embed.bias": tp(pred["embed"]["bias"]),
            "mask_token": tp(pred["mask_token"]), "predictor_proj.weight": tp(pred["proj"]["kernel"].T),
            "predictor_proj.bias": tp(pred["proj"]["bias"])})
  grid = size // PATCH
  pos = torch.tensor(vit.sincos_2d(WIDTH, grid, grid))[None]
  pred_pos = torch.tensor(vit.sincos_2d(PRED_WIDTH, grid, grid))[None]
  imgs = torch.tensor(np.asarray(images)).permute(0, 3, 1, 2)

  def encoder(weight, bias, blocks, prefix, x, masks=None):
    x = F.conv2d(x, weight, bias, stride=PATCH).flatten(2).transpose(1, 2) + pos
    if masks is not None:
      x = _apply_masks(torch, x, masks)
    return _torch_vit_blocks(torch, blocks, prefix, x, DEPTH, WIDTH)

  with torch.no_grad():                                                   # forward_target
    h = encoder(*tgt_embed, tgt, "target.", imgs)
    h = F.layer_norm(h, (h.size(-1),))
    h = _repeat_interleave_batch(torch, _apply_masks(torch, h, masks_pred), batch, repeat=len(masks_enc))
  z = encoder(p["patch_embed.weight"], p["patch_embed.bias"], p, "encoder.", imgs, masks_enc)   # forward_context
  x = F.linear(z, p["predictor_embed.weight"], p["predictor_embed.bias"])
  x = x + _apply_masks(torch, pred_pos.repeat(batch, 1, 1), masks_enc)
  n_ctxt = x.shape[1]
  pos_embs = _repeat_interleave_batch(torch, _apply_masks(torch, pred_pos.repeat(batch, 1, 1), masks_pred), batch,
                                      repeat=len(masks_enc))
  pred_tokens = p["mask_token"].repeat(pos_embs.size(0), pos_embs.size(1), 1) + pos_embs
  x = torch.cat([x.repeat(len(masks_pred), 1, 1), pred_tokens], dim=1)
  x = _torch_vit_blocks(torch, p, "predictor.", x, PRED_DEPTH, PRED_WIDTH)[:, n_ctxt:]
  z = F.linear(x, p["predictor_proj.weight"], p["predictor_proj.bias"])
  ref = F.smooth_l1_loss(z, h)
  ref.backward()

  np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
  # Gradients: the patch embedding (through the context encoder), the mask token, the predictor's projection, a block.
  g = lambda t: t.grad.numpy()
  as_conv = lambda kernel: kernel.reshape(PATCH, PATCH, 3, WIDTH).transpose(3, 2, 0, 1)
  np.testing.assert_allclose(as_conv(grads["encoder"]["embedding"]["kernel"]), g(p["patch_embed.weight"]), atol=2e-6,
                             rtol=1e-4)
  np.testing.assert_allclose(grads["predictor"]["mask_token"], g(p["mask_token"]), atol=2e-6, rtol=1e-4)
  np.testing.assert_allclose(grads["predictor"]["proj"]["kernel"].T, g(p["predictor_proj.weight"]), atol=2e-6,
                             rtol=1e-4)
  np.testing.assert_allclose(grads["encoder"]["encoder"]["block1"]["mlp"]["fc2"]["kernel"].T,
                             g(p["encoder.blocks.1.mlp.fc2.weight"]), atol=2e-6, rtol=1e-4)


def test_bad_settings_are_refused_before_anything_runs():
  predictor = dict(width=16, depth=1, num_heads=2, mlp_dim=32)
  model = dict(patch_size=2, width=32, depth=1, num_heads=2, mlp_dim=64, class_token=False)
  with pytest.raises(ValueError, match="does not divide the batch of each step, 12"):
    ijepa.IJEPA.create(model=model, run=image_run(16, batch_size=12), predictor=predictor, min_keep=4, mask_group=8)
  with pytest.raises(ValueError, match="class_token=False"):
    ijepa.IJEPA.create(model=dict(model, class_token=True), run=image_run(16), predictor=predictor, min_keep=4)
  with pytest.raises(ValueError, match="can have 9 patches, not more than method.min_keep=10"):
    ijepa.IJEPA.create(model=model, run=image_run(16), predictor=predictor)

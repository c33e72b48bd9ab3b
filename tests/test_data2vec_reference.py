"""data2vec (vision) against the official code (facebookresearch/data2vec_vision, `beit/`): BEiT's relative position
index and block-wise mask generator transcribed in numpy, and one loss and its gradients against a PyTorch
transcription of `modeling_cyclical.py`, `modeling_finetune.py` and the target construction of
`engine_for_cyclical.py`.

The index and mask tests need only numpy; the step test needs PyTorch (the `export` extra) and is skipped without it.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import image_run
from ssl_jax import masking
from ssl_jax.methods import data2vec
from ssl_jax.models import vit


# ---- modeling_finetune.RelativePositionBias.__init__, transcribed ------------------------------------------------

def _official_relative_position_index(window_size):
  coords = np.stack(np.meshgrid(np.arange(window_size[0]), np.arange(window_size[1]), indexing="ij"))
  coords_flatten = coords.reshape(2, -1)
  relative_coords = (coords_flatten[:, :, None] - coords_flatten[:, None, :]).transpose(1, 2, 0).copy()
  relative_coords[:, :, 0] += window_size[0] - 1
  relative_coords[:, :, 1] += window_size[1] - 1
  relative_coords[:, :, 0] *= 2 * window_size[1] - 1
  num_relative_distance = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) + 3
  index = np.zeros((window_size[0] * window_size[1] + 1,) * 2, relative_coords.dtype)
  index[1:, 1:] = relative_coords.sum(-1)
  index[0, 0:] = num_relative_distance - 3
  index[0:, 0] = num_relative_distance - 2
  index[0, 0] = num_relative_distance - 1
  return index, num_relative_distance


@pytest.mark.parametrize("grid", [(14, 14), (8, 8), (3, 5)])
def test_relative_position_index_is_beits(grid):
  ours, size = vit.relative_position_index(grid)
  theirs, their_size = _official_relative_position_index(grid)
  assert size == their_size
  np.testing.assert_array_equal(ours, theirs)
  without_cls, size = vit.relative_position_index(grid, class_token=False)
  np.testing.assert_array_equal(without_cls, theirs[1:, 1:])
  assert size == their_size - 3


# ---- masking_generator.MaskingGenerator, transcribed with numpy's generator in place of `random` ------------------

def _official_mask(rng, height, width, num_masking_patches, min_num_patches, max_num_patches, min_aspect=0.3):
  log_aspect_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
  mask = np.zeros((height, width), np.int64)

  def add(max_mask_patches):
    delta = 0
    for _ in range(10):
      target_area = min_num_patches + rng.random() * (max_mask_patches - min_num_patches)   # random.uniform
      aspect_ratio = math.exp(rng.uniform(*log_aspect_ratio))
      h = int(round(math.sqrt(target_area * aspect_ratio)))
      w = int(round(math.sqrt(target_area / aspect_ratio)))
      if w < width and h < height:
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        num_masked = mask[top:top + h, left:left + w].sum()
        if 0 < h * w - num_masked <= max_mask_patches:
          delta += h * w - num_masked
          mask[top:top + h, left:left + w] = 1
        if delta > 0:
          break
    return delta

  count = 0
  while count < num_masking_patches:
    delta = add(min(num_masking_patches - count, max_num_patches))
    if delta == 0:
      break
    count += delta
  return mask


def test_mask_counts_match_the_official_generator():
  """data2vec ViT-B/16's masks (120 of 196 patches, blocks of at least 16, no per-block limit): the distribution of
  the masked count and the per-cell frequency agree with the official generator's."""
  rng = np.random.default_rng(0)
  theirs = np.stack([_official_mask(rng, 14, 14, 120, 16, 196).reshape(-1) for _ in range(600)])
  ours = np.asarray(masking.blockwise_masking(jax.random.key(0), 600, (14, 14), num_masking_patches=120,
                                              min_num_patches=16, max_num_patches=196))
  assert ours.sum(1).max() <= 120 and theirs.sum(1).max() <= 120
  for stat in (np.mean, lambda c: np.mean(c == 120), lambda c: np.percentile(c, 10)):
    a, b = stat(ours.sum(1)), stat(theirs.sum(1))
    assert abs(a - b) <= 0.05 * max(abs(b), 1), (a, b)
  # Corners are masked less often than the centre, alike.
  np.testing.assert_allclose(ours.mean(0).reshape(14, 14)[[0, 0, 7], [0, 13, 7]],
                             theirs.mean(0).reshape(14, 14)[[0, 0, 7], [0, 13, 7]], atol=0.08)


# ---- one step against a PyTorch transcription of the official student, teacher and loss ---------------------------

PATCH, WIDTH, DEPTH, HEADS, TOP_K = 2, 32, 3, 2, 2


def _method(run, **kw):
  model = dict(arch="vit", patch_size=PATCH, width=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_dim=2 * WIDTH,
               posemb="none", relative_position_bias=True, mask_token=True, layer_scale=0.1, init_std=0.02,
               init_truncation=1.0, depth_scaled_init=True)
  return data2vec.Data2Vec.create(model=model, run=run, num_mask_patches=18, min_mask_patches_per_block=4,
                                  top_k=TOP_K, **kw)


def _torch_vit(torch, vp, tensor):
  """Our ViT's parameters `vp` as the official module's tensors (q and v biases only: `attn.qkv` has no k bias)."""
  d, hd = WIDTH, WIDTH // HEADS
  p = {"patch_embed.proj.weight": vp["embedding"]["kernel"].reshape(PATCH, PATCH, 3, d).transpose(3, 2, 0, 1),
       "patch_embed.proj.bias": vp["embedding"]["bias"], "cls_token": vp["cls"], "mask_token": vp["mask_token"],
       "rel_pos_bias.relative_position_bias_table": vp["rel_pos_bias"]["relative_position_bias_table"],
       "norm.weight": vp["encoder"]["norm"]["scale"], "norm.bias": vp["encoder"]["norm"]["bias"]}
  for i in range(DEPTH):
    b, t = vp["encoder"][f"block{i}"], f"blocks.{i}."
    qkv_bias = b["attn"]["qkv_bias"]                                   # [heads, 3, head_dim]
    p.update({
        t + "norm1.weight": b["ln1"]["scale"], t + "norm1.bias": b["ln1"]["bias"],
        t + "attn.qkv.weight": b["attn"]["qkv_kernel"].transpose(0, 2, 1, 3).reshape(d, 3 * d).T,
        t + "attn.q_bias": qkv_bias[:, 0].reshape(-1), t + "attn.v_bias": qkv_bias[:, 2].reshape(-1),
        t + "attn.proj.weight": b["attn"]["out_kernel"].reshape(d, d).T, t + "attn.proj.bias": b["attn"]["out_bias"],
        t + "norm2.weight": b["ln2"]["scale"], t + "norm2.bias": b["ln2"]["bias"],
        t + "mlp.fc1.weight": b["mlp"]["fc1"]["kernel"].T, t + "mlp.fc1.bias": b["mlp"]["fc1"]["bias"],
        t + "mlp.fc2.weight": b["mlp"]["fc2"]["kernel"].T, t + "mlp.fc2.bias": b["mlp"]["fc2"]["bias"],
        t + "gamma_1": b["ls1"], t + "gamma_2": b["ls2"]})
  return {k: tensor(v) for k, v in p.items()}


def _torch_forward(torch, p, imgs, grid, bool_masked_pos=None, layer_results=False):
  """`VisionTransformerForCyclicalTraining.forward_features` (no absolute position embedding, shared relative
  position bias, LayerScale, no dropout): the final normalised tokens, or every block's output ('end')."""
  F = torch.nn.functional
  x = F.conv2d(imgs, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=PATCH).flatten(2).transpose(1, 2)
  b, n, d = x.shape
  if bool_masked_pos is not None:
    w = bool_masked_pos.view(b, -1, 1).type_as(x)
    x = x * (1 - w) + p["mask_token"].expand(b, n, -1) * w
  x = torch.cat((p["cls_token"].expand(b, -1, -1), x), dim=1)
  index, _ = _official_relative_position_index(grid)
  rel = p["rel_pos_bias.relative_position_bias_table"][torch.tensor(index.reshape(-1))].view(n + 1, n + 1, -1)
  rel = rel.permute(2, 0, 1)
  hd = d // HEADS
  z = []
  for i in range(DEPTH):
    q_ = lambda name: p[f"blocks.{i}.{name}"]
    y = F.layer_norm(x, (d,), q_("norm1.weight"), q_("norm1.bias"), eps=1e-6)
    qkv_bias = torch.cat((q_("attn.q_bias"), torch.zeros_like(q_("attn.v_bias")), q_("attn.v_bias")))
    qkv = F.linear(y, q_("attn.qkv.weight"), qkv_bias).reshape(b, n + 1, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1) + rel).softmax(dim=-1)
    y = F.linear((attn @ v).transpose(1, 2).reshape(b, n + 1, -1), q_("attn.proj.weight"), q_("attn.proj.bias"))
    x = x + q_("gamma_1") * y
    y = F.layer_norm(x, (d,), q_("norm2.weight"), q_("norm2.bias"), eps=1e-6)
    x = x + q_("gamma_2") * F.linear(F.gelu(F.linear(y, q_("mlp.fc1.weight"), q_("mlp.fc1.bias"))),
                                     q_("mlp.fc2.weight"), q_("mlp.fc2.bias"))
    z.append(x)
  if layer_results:
    return [t[:, 1:] for t in z]
  return F.layer_norm(x, (d,), p["norm.weight"], p["norm.bias"], eps=1e-6)


def test_loss_and_gradients_equal_the_official_step():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  size, batch = 12, 4                                   # a 6x6 grid, 18 patches masked (one example gets 17)
  method = _method(image_run(size))
  grid = method.grid
  images = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
  params, _ = method.init(jax.random.key(1), {"image": images})
  params = jax.tree.map(np.asarray, nn.unbox(params))
  # Away from the initialisation: a non-zero relative position bias and k bias (which cannot change the output:
  # it adds q.b_k to every logit of a query), and a teacher that differs from the student (as after EMA steps).
  enc = params["encoder"]
  enc["rel_pos_bias"]["relative_position_bias_table"] = np.asarray(
      jax.random.normal(jax.random.key(2), enc["rel_pos_bias"]["relative_position_bias_table"].shape))
  for i in range(DEPTH):
    enc["encoder"][f"block{i}"]["attn"]["qkv_bias"] = np.asarray(
        jax.random.normal(jax.random.key(10 + i), enc["encoder"][f"block{i}"]["attn"]["qkv_bias"].shape) * 0.3)
  extra = {"teacher": jax.tree.map(lambda x: x * 1.1, enc)}
  key = jax.random.key(5)
  mask, ids, valid = method.masks(jax.random.split(key)[0], batch)       # the masks `loss` draws from `key`
  assert int(valid.sum(1).min()) < method.num_mask_patches < grid[0] * grid[1]     # padding slots exercised
  loss_of = lambda p: method.loss(p, extra, {"image": images}, key, jnp.int32(0))[0]
  loss, grads = jax.value_and_grad(loss_of)(params)

  tp = lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32, requires_grad=True)
  p = _torch_vit(torch, enc, tp)
  teacher = _torch_vit(torch, extra["teacher"], lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32))
  lm_w, lm_b = tp(params["lm_head"]["kernel"].T), tp(params["lm_head"]["bias"])
  imgs = torch.tensor(np.asarray(images)).permute(0, 3, 1, 2)
  bool_masked_pos = torch.tensor(np.asarray(mask))
  with torch.no_grad():                                                      # engine_for_cyclical.train_one_epoch
    targets = _torch_forward(torch, teacher, imgs, grid, layer_results=True)
    layer_vals = [F.layer_norm(targets[i].float(), (WIDTH,)) for i in range(DEPTH - TOP_K, DEPTH)]
    targets = sum(layer_vals) / TOP_K
    targets = F.layer_norm(targets.float(), (WIDTH,))                     # post_target_layer_norm
    targets = targets.reshape(-1, WIDTH)[bool_masked_pos.flatten()]
  x = _torch_forward(torch, p, imgs, grid, bool_masked_pos)[:, 1:]
  outputs = F.linear(x.reshape(-1, WIDTH)[bool_masked_pos.flatten()], lm_w, lm_b)
  ref = F.smooth_l1_loss(outputs, targets, beta=2.0)
  ref.backward()

  np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
  g = lambda t: t.grad.numpy()
  ge = grads["encoder"]
  np.testing.assert_allclose(ge["rel_pos_bias"]["relative_position_bias_table"],
                             g(p["rel_pos_bias.relative_position_bias_table"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(ge["mask_token"], g(p["mask_token"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(ge["cls"], g(p["cls_token"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(ge["embedding"]["kernel"].reshape(PATCH, PATCH, 3, WIDTH).transpose(3, 2, 0, 1),
                             g(p["patch_embed.proj.weight"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(ge["encoder"]["block1"]["ls1"], g(p["blocks.1.gamma_1"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(ge["encoder"]["block0"]["attn"]["qkv_bias"][:, 0].reshape(-1),
                             g(p["blocks.0.attn.q_bias"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(grads["lm_head"]["kernel"].T, g(lm_w), atol=1e-6, rtol=1e-4)
  # The k bias has no effect, so no gradient (up to rounding).
  k_grad = ge["encoder"]["block0"]["attn"]["qkv_bias"][:, 1]
  assert float(np.abs(k_grad).max()) < 1e-6 * float(np.abs(g(p["blocks.0.attn.q_bias"])).max()) + 1e-8


def test_targets_are_the_layer_normalised_average_of_the_top_blocks():
  """`Data2Vec.targets` on a hand-checkable case: the teacher's block outputs, each layer-normalised (eps 1e-5),
  averaged over the top K, layer-normalised again, [CLS] dropped."""
  method = _method(image_run(12))
  images = jax.random.normal(jax.random.key(0), (2, 12, 12, 3))
  params, extra = jax.jit(method.init)(jax.random.key(1), {"image": images})    # jitted: one compile, not hundreds
  teacher = nn.unbox(extra["teacher"])
  _, layers = jax.jit(lambda t: method.teacher.apply({"params": t}, images, return_layers=True))(teacher)
  layers = np.asarray(layers, np.float64)[:, :, 1:]
  ln = lambda x: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  want = ln(sum(ln(layers[i]) for i in range(DEPTH - TOP_K, DEPTH)) / TOP_K)
  np.testing.assert_allclose(jax.jit(method.targets)(teacher, images), want, atol=2e-5)


def test_bad_settings_are_refused_before_anything_runs():
  model = dict(patch_size=2, width=32, depth=2, num_heads=2, mlp_dim=64, mask_token=True)
  with pytest.raises(ValueError, match="mask_token=True"):
    data2vec.Data2Vec.create(model=dict(model, mask_token=False), run=image_run(8))
  with pytest.raises(ValueError, match="num_mask_patches=16: mask between 1 and 15"):
    data2vec.Data2Vec.create(model=model, run=image_run(8), num_mask_patches=16, top_k=1)
  with pytest.raises(ValueError, match="top_k=3: average between 1 and the encoder's 2 blocks"):
    data2vec.Data2Vec.create(model=model, run=image_run(8), num_mask_patches=8, top_k=3)
  with pytest.raises(ValueError, match="'batch'"):
    data2vec.Data2Vec.create(model=model, run=image_run(8), num_mask_patches=8, top_k=1, layer_norm_targets="batch")
  with pytest.raises(ValueError, match="pool='gap'"):
    data2vec.Data2Vec.create(model=dict(model, pool="cls"), run=image_run(8), num_mask_patches=8, top_k=1)

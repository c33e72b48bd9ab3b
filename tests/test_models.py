import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import image_run
from ssl_jax import masking
from ssl_jax.methods import mae
from ssl_jax.models import attention
from ssl_jax.models import vit


def _param_count(module, *args):
  shapes = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a), *args)
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)["params"]))


# Parameter counts of timm's `vit_*_patch16_224(num_classes=0)` less their learned position embedding
# (ours are fixed sin-cos): e.g. ViT-B/16 85,798,656 - 197 * 768.
@pytest.mark.parametrize("variant,count", [
    ("Ti/16", 5_524_416 - 197 * 192),
    ("S/16", 21_665_664 - 197 * 384),
    ("B/16", 85_798_656 - 197 * 768),
    ("L/16", 303_301_632 - 197 * 1024),
])
def test_vit_variant_parameter_counts(variant, count):
  kw = vit.vit_kwargs(variant=variant)
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  assert _param_count(vit.ViT(**kw), images) == count


@pytest.mark.parametrize("variant", ["Ti/16", "S/16", "B/16", "L/16", "H/14"])
def test_vit_output_shapes_with_and_without_token_dropping(variant):
  size = vit.parse_variant(variant)
  model = vit.ViT(**vit.vit_kwargs(variant=variant))
  images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  t = (224 // size.patch_size) ** 2
  keep = jax.ShapeDtypeStruct((2, t // 4), jnp.int32)
  full = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], images)
  dropped = jax.eval_shape(lambda x, k: model.init_with_output(jax.random.key(0), x, k)[0], images, keep)
  assert full.shape == (2, 1 + t, size.width)
  assert dropped.shape == (2, 1 + t // 4, size.width)


def test_parse_variant_errors():
  assert vit.parse_variant("S/8") == vit.ViTSize(384, 12, 6, 1536, 8)
  with pytest.raises(ValueError, match="unknown ViT variant"):
    vit.parse_variant("X/16")


def test_sincos_matches_mae_formula():
  width, gh, gw = 16, 3, 4
  emb = vit.sincos_2d(width, gh, gw)
  assert emb.shape == (gh * gw, width)
  omega = 1.0 / 10000 ** (np.arange(4) / 4.0)
  row, col = 2, 3
  expected = np.concatenate([np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)])
  np.testing.assert_allclose(emb[row * gw + col], expected, rtol=1e-6)


def test_token_dropping_equals_encoding_the_kept_patches():
  """Dropping tokens after adding position embeddings == attending over only the kept tokens (no leakage)."""
  model = vit.ViT(patch_size=4, width=32, depth=2, num_heads=4, mlp_dim=64)
  images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  keep = jnp.array([[0, 5, 9, 15], [3, 4, 7, 12]], jnp.int32)
  params = jax.jit(model.init)(jax.random.key(1), images)         # jitted: one compile, not one per primitive
  apply = jax.jit(model.apply)
  out = apply(params, images, keep)
  # Changing pixels of dropped patches must not change the output.
  patches = masking.patchify(images, 4)
  noise = jax.random.normal(jax.random.key(2), patches.shape)
  kept_mask = jnp.zeros((2, 16)).at[jnp.arange(2)[:, None], keep].set(1.0)
  changed = masking.unpatchify(patches + noise * (1 - kept_mask)[..., None], 4, 16, 16)
  np.testing.assert_allclose(apply(params, changed, keep), out, rtol=1e-5, atol=1e-5)


def test_mask_token_hides_masked_patches_and_layer_scale_scales_the_branches():
  """BEiT-style input masking: the pixels of masked patches no longer reach any output (their embedding is the
  [MASK] token's, plus their position); LayerScale's `ls1`/`ls2` start at its value and gate each branch (0 leaves
  the blocks as the identity: the output is the final LayerNorm of the embeddings)."""
  model = vit.ViT(patch_size=4, width=32, depth=2, num_heads=4, mlp_dim=64, mask_token=True, layer_scale=0.1)
  images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  mask = jnp.zeros((2, 16), bool).at[0, jnp.array([1, 2, 6])].set(True).at[1, jnp.array([0, 15])].set(True)
  params = nn.unbox(model.init(jax.random.key(1), images))
  assert np.all(np.asarray(params["params"]["encoder"]["block1"]["ls2"]) == np.float32(0.1))
  out = model.apply(params, images, mask=mask)
  noise = jax.random.normal(jax.random.key(2), (2, 16, 48)) * mask[..., None]
  changed = masking.unpatchify(masking.patchify(images, 4) + noise, 4, 16, 16)
  np.testing.assert_array_equal(model.apply(params, changed, mask=mask), out)
  assert not np.allclose(model.apply(params, changed), model.apply(params, images))     # unmasked, they differ
  gated = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.zeros_like(x) if path[-1].key in ("ls1", "ls2") else x, params)
  embedded = model.apply(gated, images, mask=mask, return_layers=True)[1][0]       # block 0's output = its input
  x = masking.patchify(images, 4) @ params["params"]["embedding"]["kernel"] + params["params"]["embedding"]["bias"]
  x = jnp.where(mask[..., None], params["params"]["mask_token"][0], x) + vit.sincos_2d(32, 4, 4)
  np.testing.assert_allclose(embedded[:, 1:], x, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="mask_token=True"):
    vit.ViT(patch_size=4, width=32, depth=1, num_heads=4, mlp_dim=64).init(jax.random.key(0), images, mask=mask)


def test_relative_position_bias_and_beit_initialisation():
  """BEiT's shared relative position bias: one zero-initialised `[(2H-1)(2W-1) + 3, heads]` table, read at
  `relative_position_index` (checked against the official code in tests/test_data2vec_reference.py) and added to
  every block's logits, learned (it gets a gradient); no absolute position embedding ("none"). BEiT's initialisation:
  N(0, 0.02) truncated at +-1 std (std 0.02 * 0.5396) for every linear map and both tokens, and block i's output
  projections divided by sqrt(2 i)."""
  model = vit.ViT(patch_size=4, width=64, depth=3, num_heads=4, mlp_dim=256, posemb="none", mask_token=True,
                  relative_position_bias=True, init_std=0.02, init_truncation=1.0, depth_scaled_init=True,
                  layer_scale=0.1)
  images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  params = nn.unbox(jax.jit(model.init)(jax.random.key(1), images))["params"]      # jitted: one compile per call
  table = params["rel_pos_bias"]["relative_position_bias_table"]
  assert table.shape == (7 * 7 + 3, 4) and not np.any(table)
  assert "pos_embedding" not in params
  for name, x in jax.tree_util.tree_leaves_with_path(params):
    if name[-1].key in ("kernel", "qkv_kernel", "out_kernel", "cls", "mask_token"):
      assert float(jnp.max(jnp.abs(x))) <= 0.02, name
  stds = {i: float(jnp.std(params["encoder"][f"block{i}"]["mlp"]["fc2"]["kernel"])) for i in range(3)}
  np.testing.assert_allclose(float(jnp.std(params["encoder"]["block0"]["mlp"]["fc1"]["kernel"])), 0.02 * 0.5396,
                             rtol=0.03)
  np.testing.assert_allclose([stds[i] * (2 * (i + 1)) ** 0.5 for i in range(3)], [0.02 * 0.5396] * 3, rtol=0.03)
  out_std = float(jnp.std(params["encoder"]["block2"]["attn"]["out_kernel"]))
  np.testing.assert_allclose(out_std * 6 ** 0.5, 0.02 * 0.5396, rtol=0.05)
  # A non-zero table changes the output; the table is learned.
  biased = jax.tree_util.tree_map_with_path(
      lambda path, x: jax.random.normal(jax.random.key(5), x.shape) if path[-1].key.startswith("relative") else x,
      params)
  apply = jax.jit(lambda p: model.apply({"params": p}, images))
  assert not np.allclose(apply(biased), apply(params))
  grad = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(model.apply({"params": p}, images)))))(biased)
  assert float(jnp.max(jnp.abs(grad["rel_pos_bias"]["relative_position_bias_table"]))) > 1e-4
  scanned = model.clone(remat="full", scan=True)          # the bias reaches the scanned, rematerialised blocks
  np.testing.assert_allclose(jax.jit(lambda p: scanned.apply({"params": p}, images))(biased), apply(biased),
                             atol=1e-5)
  grad_scanned = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(scanned.apply({"params": p}, images)))))(biased)
  np.testing.assert_allclose(grad_scanned["rel_pos_bias"]["relative_position_bias_table"],
                             grad["rel_pos_bias"]["relative_position_bias_table"], atol=1e-5)
  with pytest.raises(ValueError, match="mask with mask_token=True"):
    model.apply({"params": params}, images, keep_ids=jnp.zeros((2, 4), jnp.int32))
  with pytest.raises(ValueError, match="set model.init_std"):
    vit.vit_kwargs(variant="Ti/16", init_truncation=1.0)


def test_mae_decoder_output_and_bfloat16_compute():
  method = mae.MAE.create(model=dict(patch_size=4, width=32, depth=1, num_heads=2, mlp_dim=64, dtype="bfloat16"),
                      run=image_run(16), decoder=dict(width=16, depth=1, num_heads=2, mlp_dim=32))
  batch = {"image": jnp.zeros((3, 16, 16, 3), jnp.float32)}
  params, extra = jax.jit(method.init)(jax.random.key(0), batch)      # jitted: one compile, not one per primitive
  params = nn.unbox(params)
  # Parameters stay float32 under bfloat16 compute.
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  m = masking.random_masking(jax.random.key(1), 3, 16, 0.75)
  pred = jax.jit(method.model.apply)({"params": params}, jnp.zeros((3, 16, 16, 3)), m.ids_keep, m.ids_restore)
  assert pred.shape == (3, 16, 4 * 4 * 3) and pred.dtype == jnp.float32
  assert jax.jit(method.represent)(params, extra, batch)["image"].shape == (3, 32)


def test_remat_and_scan_keep_parameters_outputs_and_gradients():
  """Every remat policy, with and without scan over the blocks, in training mode with stochastic depth: the same
  parameter tree, the same output, and gradients equal up to float reassociation."""
  images = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  weights = jax.random.normal(jax.random.key(1), (4, 17, 32))
  results = {}
  for remat in ("none", "full", "dots_saveable"):
    for scan in (False, True):
      model = vit.ViT(**vit.vit_kwargs(patch_size=4, width=32, depth=3, num_heads=2, mlp_dim=64, drop_path=0.3,
                                       remat=remat, scan=scan))
      params = nn.unbox(model.init(jax.random.key(2), images))["params"]
      loss = lambda p: jnp.sum(weights * model.apply({"params": p}, images, train=True,
                                                     rngs={"dropout": jax.random.key(3)}))
      results[remat, scan] = (params, *jax.jit(jax.value_and_grad(loss))(params))
  params, loss, grads = results["none", False]
  for key, (p, value, g) in results.items():
    assert jax.tree.structure(p) == jax.tree.structure(params), key
    np.testing.assert_allclose(value, loss, rtol=1e-6, err_msg=str(key))
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads)):
      np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.max(jnp.abs(b))), err_msg=str(key))
  # Stochastic depth is on (the same keys in every mode): without it the loss differs.
  plain = vit.ViT(**vit.vit_kwargs(patch_size=4, width=32, depth=3, num_heads=2, mlp_dim=64))
  assert abs(float(jnp.sum(weights * plain.apply({"params": params}, images))) - float(loss)) > 1e-2
  with pytest.raises(ValueError, match="model.remat='some' is unknown"):
    vit.vit_kwargs(variant="Ti/16", remat="some")


def test_uniform_drop_path_reaches_the_first_block():
  """Stochastic depth rises linearly from 0 (the first block never dropped) unless `drop_path_uniform` (DINOv2):
  then every block is dropped at the rate, the first one included."""
  images = jax.random.normal(jax.random.key(0), (64, 8, 8, 3))
  first = {}
  for uniform in (False, True):
    model = vit.ViT(**vit.vit_kwargs(patch_size=4, width=16, depth=2, num_heads=2, mlp_dim=32, drop_path=0.5,
                                     drop_path_uniform=uniform))
    params = nn.unbox(model.init(jax.random.key(1), images))["params"]
    run = lambda key: model.apply({"params": params}, images, train=True, return_layers=True,
                                  rngs={"dropout": jax.random.key(key)})[1][0]          # the first block's output
    changed = np.any(np.abs(np.asarray(run(2) - run(3))) > 1e-6, axis=(1, 2))          # per example
    first[uniform] = changed.mean()
  # Two branches, each kept with probability 1/2: two keys draw the same for an example with probability 1/4.
  assert first[False] == 0.0 and 0.6 < first[True] < 0.9


@pytest.mark.parametrize("length", [17, 50])
def test_attention_padded_for_cudnn_equals_unpadded_attention(length):
  """`attention.dot_product_attention` pads odd lengths (197 = 1 + 14 x 14) for cuDNN's gradient; the padded keys are
  masked and the padded queries dropped, so values and gradients are those of plain attention (run here with XLA's
  implementation and padding to 8, since this machine has no cuDNN)."""
  q, k, v = (jax.random.normal(jax.random.key(i), (2, length, 3, 8)) for i in range(3))
  weights = jax.random.normal(jax.random.key(3), (2, length, 3, 8))

  def loss(fn, q, k, v):
    return jnp.sum(fn(q, k, v) * weights)

  plain = lambda q, k, v: jax.nn.dot_product_attention(q, k, v)
  padded = lambda q, k, v: attention.dot_product_attention(q, k, v, implementation="xla", pad_to=8)
  np.testing.assert_allclose(padded(q, k, v), plain(q, k, v), atol=1e-6)
  for got, want in zip(jax.grad(loss, (1, 2, 3))(padded, q, k, v), jax.grad(loss, (1, 2, 3))(plain, q, k, v)):
    np.testing.assert_allclose(got, want, atol=1e-5)
  # Without cuDNN nothing is padded: the same primitive as jax.nn.dot_product_attention.
  assert str(jax.make_jaxpr(lambda *a: attention.dot_product_attention(*a, implementation="xla"))(q, k, v)) == str(
      jax.make_jaxpr(lambda *a: jax.nn.dot_product_attention(*a, implementation="xla"))(q, k, v))


def _attention_float64(q, k, v):
  """softmax(q k^T / sqrt(d)) v in float64 for `[B, T, heads, d]` operands, and the float32 error bound above."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  t, d = q.shape[1], q.shape[-1]
  scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
  p = np.exp(scores - scores.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  u = 2.0 ** -24
  score_error = d * u * np.einsum("bqhd,bkhd->bhqk", np.abs(q), np.abs(k)).max() / np.sqrt(d)
  bound = (t * u + 2 * score_error + 4 * u) * np.abs(v).max()
  return np.einsum("bhqk,bkhd->bqhd", p, v), bound


@pytest.mark.parametrize("shape", [(2, 17, 3, 8), (3, 50, 4, 16)])
def test_einsum_attention_equals_jax_attention(shape):
  """`einsum_attention` (the default off cuDNN) has the values and gradients of `jax.nn.dot_product_attention`: its
  hand-written backward pass (FlashAttention's dS = P * (dP - rowsum(dY * Y))) is the softmax's exact gradient."""
  q, k, v = (jax.random.normal(jax.random.key(i), shape) * (1.0 + i) for i in range(3))
  weights = jax.random.normal(jax.random.key(3), shape)
  loss = lambda fn, q, k, v: jnp.sum(jnp.sin(fn(q, k, v)) * weights)
  ours = lambda q, k, v: attention.dot_product_attention(q, k, v)        # None -> "einsum" on this CPU
  theirs = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla")
  # Both against the exact (float64) attention, within the float32 error bound of the computation, whatever order
  # a CPU's kernels sum in (AVX2 and AVX-512 kernels differ): a score is a d-term dot product (error <= d u sum
  # |q_i k_i| / sqrt(d)), which the softmax turns into a relative error of the weights of about twice that; the
  # output sums T weighted values (error <= T u max|v|). u = 2^-24.
  exact, bound = _attention_float64(q, k, v)
  for implementation in (ours, theirs):
    np.testing.assert_allclose(implementation(q, k, v), exact, rtol=0, atol=bound)
  for got, want in zip(jax.grad(loss, (1, 2, 3))(ours, q, k, v), jax.grad(loss, (1, 2, 3))(theirs, q, k, v)):
    np.testing.assert_allclose(got, want, atol=2e-5 * float(jnp.max(jnp.abs(want))))
  assert "custom_vjp_call" in str(jax.make_jaxpr(ours)(q, k, v))
  # Second order through the custom VJP is not needed by any method; first order under jit and vmap is.
  per_query = lambda fn: jax.jit(jax.vmap(jax.grad(lambda q1: jnp.sum(jnp.sin(fn(q1, k[:1], v[:1]))))))
  np.testing.assert_allclose(per_query(attention.einsum_attention)(q[:, None]), per_query(theirs)(q[:, None]),
                             atol=1e-4)


def _masked_attention_float64(q, k, v, mask):
  """softmax(q k^T / sqrt(d) restricted to `mask` [B|1, 1, T, T]) v in float64."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
  scores = np.where(mask, scores, -np.inf)
  p = np.exp(scores - scores.max(-1, keepdims=True))
  return np.einsum("bhqk,bkhd->bqhd", p / p.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_masked_attention_every_implementation_against_numpy(causal, packed):
  """Causal and segment masks (packed documents) give the float64 masked softmax on the einsum path, XLA's, and
  XLA's padded as for cuDNN (17 tokens padded to 24); the einsum path's hand-written gradient is XLA's."""
  b, t, h, d = 2, 17, 2, 8
  q, k, v = (jax.random.normal(jax.random.key(i), (b, t, h, d)) for i in range(3))
  weights = jax.random.normal(jax.random.key(3), (b, t, h, d))
  # Example 0: documents of 5, 9 and 3 tokens; example 1: 12 tokens then 5 of padding (segment 0).
  segments = jnp.asarray([[1] * 5 + [2] * 9 + [3] * 3, [1] * 12 + [0] * 5]) if packed else None
  mask = np.ones((1, 1, t, t), bool)
  if causal:
    mask = mask & np.tril(np.ones((t, t), bool))
  if packed:
    mask = mask & (np.asarray(segments)[:, None, :, None] == np.asarray(segments)[:, None, None, :])
  got = attention.attention_mask(length=t, causal=causal, segment_ids=segments)
  if causal or packed:
    np.testing.assert_array_equal(np.broadcast_to(got, (b, 1, t, t)), np.broadcast_to(mask, (b, 1, t, t)))
  else:
    assert got is None
  exact = _masked_attention_float64(q, k, v, mask)
  impls = {name: functools.partial(attention.dot_product_attention, implementation=impl, pad_to=pad, causal=causal,
                                   segment_ids=segments)
           for name, impl, pad in (("einsum", "einsum", None), ("xla", "xla", None), ("padded", "xla", 8))}
  for name, fn in impls.items():
    np.testing.assert_allclose(fn(q, k, v), exact, rtol=0, atol=2e-5, err_msg=name)
  loss = lambda fn, q, k, v: jnp.sum(jnp.sin(fn(q, k, v)) * weights)
  want = jax.grad(loss, (1, 2, 3))(impls["xla"], q, k, v)
  for name in ("einsum", "padded"):
    for g, w in zip(jax.grad(loss, (1, 2, 3))(impls[name], q, k, v), want):
      np.testing.assert_allclose(g, w, atol=2e-5 * float(jnp.max(jnp.abs(w))), err_msg=name)


@pytest.mark.parametrize("per_example", [False, True])
def test_attention_bias_every_implementation_with_gradients(per_example):
  """An additive logit bias (BEiT's relative position bias), shared `[heads, T, T]` or per example, gives the float64
  biased softmax on every path, with a segment mask too; the einsum path's hand-written gradients, the bias's
  included (summed over the batch when shared), are those of XLA's autodiff, and so are the padded path's."""
  b, t, h, d = 2, 17, 2, 8
  q, k, v = (jax.random.normal(jax.random.key(i), (b, t, h, d)) for i in range(3))
  bias = jax.random.normal(jax.random.key(4), (b, h, t, t) if per_example else (h, t, t))
  weights = jax.random.normal(jax.random.key(3), (b, t, h, d))
  segments = jnp.asarray([[1] * 5 + [2] * 12, [1] * 17])
  mask = np.asarray(segments)[:, None, :, None] == np.asarray(segments)[:, None, None, :]
  q64, k64, v64, bias64 = (np.asarray(x, np.float64) for x in (q, k, v, bias))
  scores = np.einsum("bqhd,bkhd->bhqk", q64, k64) / np.sqrt(d) + (bias64 if per_example else bias64[None])
  scores = np.where(mask, scores, -np.inf)
  p = np.exp(scores - scores.max(-1, keepdims=True))
  exact = np.einsum("bhqk,bkhd->bqhd", p / p.sum(-1, keepdims=True), v64)
  impls = {name: functools.partial(attention.dot_product_attention, implementation=impl, pad_to=pad,
                                   segment_ids=segments)
           for name, impl, pad in (("einsum", "einsum", None), ("xla", "xla", None), ("padded", "xla", 8))}
  loss = lambda fn, q, k, v, bias: jnp.sum(jnp.sin(fn(q, k, v, bias=bias)) * weights)
  want = jax.grad(loss, (1, 2, 3, 4))(impls["xla"], q, k, v, bias)
  assert want[3].shape == bias.shape and float(jnp.max(jnp.abs(want[3]))) > 1e-3
  for name, fn in impls.items():
    np.testing.assert_allclose(fn(q, k, v, bias=bias), exact, rtol=0, atol=2e-5, err_msg=name)
    for g, w in zip(jax.grad(loss, (1, 2, 3, 4))(fn, q, k, v, bias), want):
      np.testing.assert_allclose(g, w, atol=2e-5 * float(jnp.max(jnp.abs(w))), err_msg=name)
  with pytest.raises(ValueError, match="does not fit 2 heads over 17 tokens"):
    attention.dot_product_attention(q, k, v, bias=bias[..., 1:])


def test_transformer_masks_isolate_documents_and_the_future():
  """A packed window encodes each document as if it were alone (segment ids), a causal stack's token t does not
  depend on later tokens, and the per-layer outputs are the same with a scanned, rematerialised stack."""
  from ssl_jax.models import transformer
  kw = dict(depth=2, num_heads=2, mlp_dim=32)
  x = jax.random.normal(jax.random.key(0), (1, 12, 16))
  segments = jnp.asarray([[1] * 7 + [2] * 5])
  for causal in (False, True):
    model = transformer.Transformer(**kw, causal=causal)
    params = jax.jit(model.init)(jax.random.key(1), x)
    packed = model.apply(params, x, segment_ids=segments)
    np.testing.assert_allclose(packed[:, :7], model.apply(params, x[:, :7]), atol=1e-5)
    np.testing.assert_allclose(packed[:, 7:], model.apply(params, x[:, 7:]), atol=1e-5)
  future = x.at[:, 6:].set(jax.random.normal(jax.random.key(2), (1, 6, 16)))
  np.testing.assert_allclose(model.apply(params, future)[:, :6], model.apply(params, x)[:, :6], atol=1e-6)
  assert np.abs(model.apply(params, future)[:, 6:] - model.apply(params, x)[:, 6:]).max() > 1e-2
  out, layers = model.apply(params, x, segment_ids=segments, return_layers=True)
  assert layers.shape == (2, 1, 12, 16)
  scanned = transformer.Transformer(**kw, causal=True, scan=True, remat="full")
  out_scan, layers_scan = scanned.apply(params, x, segment_ids=segments, return_layers=True)
  np.testing.assert_allclose(out_scan, out, atol=1e-6)
  np.testing.assert_allclose(layers_scan, layers, atol=1e-6)


def test_encoders_give_per_layer_outputs_on_request():
  """`return_layers=True` adds each layer's output and changes nothing else: a ViT's block outputs, whose last one
  through the final LayerNorm is the output tokens (and the same under scan); a ResNet's stage outputs."""
  from ssl_jax.models import backbone, transformer
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  kw = dict(patch_size=4, width=32, depth=3, num_heads=2, mlp_dim=64)
  vit_enc = backbone.create(arch="vit", **kw)
  variables = vit_enc.init(jax.random.key(1), x)
  plain, full = vit_enc.apply(variables, x), vit_enc.apply(variables, x, return_layers=True)
  assert full["layers"].shape == (3, 2, 17, 32)
  np.testing.assert_array_equal(full["tokens"], plain["tokens"])
  norm = variables["params"]["vit"]["encoder"]["norm"]
  np.testing.assert_allclose(transformer.layer_norm(jnp.float32).apply({"params": norm}, full["layers"][-1]),
                             full["tokens"], atol=1e-5)
  scanned = backbone.create(arch="vit", **kw, scan=True, remat="full").apply(variables, x, return_layers=True)
  np.testing.assert_allclose(scanned["layers"], full["layers"], atol=1e-5)
  resnet = backbone.create(arch="resnet", stages=(1, 1, 1), block="basic", width=8, stem="small")
  variables = resnet.init(jax.random.key(1), x)
  out = resnet.apply(variables, x, return_layers=True)
  assert [l.shape for l in out["layers"]] == [(2, 256, 8), (2, 64, 16), (2, 16, 32)]
  np.testing.assert_array_equal(out["layers"][-1], out["tokens"])


def test_einsum_attention_in_bfloat16():
  """In bfloat16 the scores and softmax run in float32 (as jax's XLA attention); outputs and gradients stay
  bfloat16 and within bfloat16 rounding of the float32 attention."""
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 50, 4, 16)) for i in range(3))
  weights = jax.random.normal(jax.random.key(3), (2, 50, 4, 16))
  loss = lambda q, k, v: jnp.sum(attention.einsum_attention(q, k, v).astype(jnp.float32) * weights)
  half = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  y = attention.einsum_attention(*half)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(jnp.float32), attention.einsum_attention(q, k, v), atol=3e-2)
  for got, want in zip(jax.grad(loss, (0, 1, 2))(*half), jax.grad(loss, (0, 1, 2))(q, k, v)):
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(jnp.float32), want, atol=0.05 * float(jnp.max(jnp.abs(want))))


def test_attention_implementation_choice(monkeypatch):
  """None picks cuDNN only where it can run (never on this CPU); an explicit choice is passed on; a wrong name fails
  before anything is traced, naming the choices."""
  q = jnp.zeros((2, 17, 3, 8), jnp.bfloat16)
  assert not attention._cudnn_likely(q)
  calls = []
  fake = lambda *a, implementation=None, **kw: calls.append(implementation) or a[0][:, :17]
  monkeypatch.setattr(jax.nn, "dot_product_attention", fake)
  attention.dot_product_attention(q, q, q, implementation="xla")
  monkeypatch.setattr(attention, "_cudnn_likely", lambda q: True)
  attention.dot_product_attention(q, q, q)
  assert calls == ["xla", "cudnn"]
  with pytest.raises(ValueError, match=r"'flash' is unknown; use one of \('einsum', 'xla', 'cudnn'\)"):
    vit.vit_kwargs(variant="Ti/16", attention_impl="flash")

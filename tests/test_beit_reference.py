"""BEiT against its official formulation: the random-projection quantizer against a numpy transcription of BEST-RQ's
(Chiu et al. 2022, section 3.1), and one loss and its gradients against a PyTorch transcription of the official
`engine_for_pretraining.train_one_epoch` on the official student (`modeling_pretrain.py`, which
tests/test_data2vec_reference.py transcribes for data2vec's identical student).

The quantizer tests need only numpy; the step test needs PyTorch (the `export` extra) and is skipped without it.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import image_run
from ssl_jax import masking
from ssl_jax.methods import beit
from ssl_jax.ops import quantize
from test_data2vec_reference import DEPTH
from test_data2vec_reference import HEADS
from test_data2vec_reference import PATCH
from test_data2vec_reference import WIDTH
from test_data2vec_reference import _torch_forward
from test_data2vec_reference import _torch_vit

VOCAB = 64


def test_random_projection_codes_are_best_rqs():
  """BEST-RQ: project with the frozen Xavier-normal matrix, l2-normalise, take the nearest of the l2-normalised
  random codebook vectors (by distance, which for unit vectors is the largest dot product)."""
  params = quantize.random_projection_init(jax.random.key(0), 48, dim=16, vocab_size=VOCAB)
  proj, book = (np.asarray(params[k], np.float64) for k in ("projection", "codebook"))
  np.testing.assert_allclose(np.linalg.norm(book, axis=1), 1.0, atol=1e-6)
  assert abs(proj.std() - (2 / (48 + 16)) ** 0.5) < 0.03 and abs(proj.mean()) < 0.02
  x = np.random.default_rng(0).normal(size=(500, 48))
  z = x @ proj
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  want = np.argmin(((z[:, None, :] - book[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(quantize.random_projection_codes(params, jnp.asarray(x, jnp.float32)), want)
  stats = quantize.code_usage(jnp.asarray(want), VOCAB)
  freq = np.bincount(want, minlength=VOCAB) / len(want)
  nz = freq[freq > 0]
  np.testing.assert_allclose(float(stats["perplexity"]), np.exp(-(nz * np.log(nz)).sum()), rtol=1e-5)
  np.testing.assert_allclose(float(stats["usage"]), (freq > 0).mean())
  # Scale does not change a code (the projection is normalised): brighter or darker, the same token.
  np.testing.assert_array_equal(quantize.random_projection_codes(params, jnp.asarray(3 * x, jnp.float32)), want)


def _method(run):
  model = dict(arch="vit", patch_size=PATCH, width=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_dim=2 * WIDTH,
               posemb="none", relative_position_bias=True, mask_token=True, layer_scale=0.1, init_std=0.02,
               init_truncation=1.0, depth_scaled_init=True)
  return beit.BEiT.create(model=model, run=run, num_mask_patches=18, min_mask_patches_per_block=4, vocab_size=VOCAB)


def test_loss_and_gradients_equal_the_official_step():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  size, batch = 12, 4                                   # a 6x6 grid, 18 patches masked (one example gets 17)
  method = _method(image_run(size))
  images = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
  params, extra = method.init(jax.random.key(1), {"image": images})
  params = jax.tree.map(np.asarray, nn.unbox(params))
  enc = params["encoder"]
  enc["rel_pos_bias"]["relative_position_bias_table"] = np.asarray(
      jax.random.normal(jax.random.key(2), enc["rel_pos_bias"]["relative_position_bias_table"].shape))
  key = jax.random.key(5)
  mask, ids, valid = method.masks(jax.random.split(key)[0], batch)       # the masks `loss` draws from `key`
  assert int(valid.sum(1).min()) < method.num_mask_patches
  loss_of = lambda p: method.loss(p, extra, {"image": images}, key, jnp.int32(0))
  (loss, (metrics, _)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)

  tp = lambda x: torch.tensor(np.ascontiguousarray(x), dtype=torch.float32, requires_grad=True)
  p = _torch_vit(torch, enc, tp)
  lm_w, lm_b = tp(params["lm_head"]["kernel"].T), tp(params["lm_head"]["bias"])
  imgs = torch.tensor(np.asarray(images)).permute(0, 3, 1, 2)
  bool_masked_pos = torch.tensor(np.asarray(mask))
  with torch.no_grad():                               # d_vae.get_codebook_indices(images): here the quantizer
    input_ids = torch.tensor(np.asarray(quantize.random_projection_codes(
        extra["tokenizer"], masking.patchify(images, PATCH))), dtype=torch.int64).flatten(1)
    labels = input_ids[bool_masked_pos]
  x = _torch_forward(torch, p, imgs, method.grid, bool_masked_pos)[:, 1:]
  outputs = F.linear(x[bool_masked_pos], lm_w, lm_b)            # modeling_pretrain: self.lm_head(x[bool_masked_pos])
  ref = torch.nn.CrossEntropyLoss()(input=outputs, target=labels)
  ref.backward()
  mlm_acc = (outputs.max(-1)[1] == labels).float().mean().item()

  np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["masked_token_accuracy"]), mlm_acc, rtol=1e-6)
  g = lambda t: t.grad.numpy()
  ge = grads["encoder"]
  np.testing.assert_allclose(ge["rel_pos_bias"]["relative_position_bias_table"],
                             g(p["rel_pos_bias.relative_position_bias_table"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(ge["mask_token"], g(p["mask_token"]), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(ge["encoder"]["block2"]["mlp"]["fc1"]["kernel"].T, g(p["blocks.2.mlp.fc1.weight"]),
                             atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(grads["lm_head"]["kernel"].T, g(lm_w), atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(grads["lm_head"]["bias"], g(lm_b), atol=1e-6, rtol=1e-4)


def test_bad_settings_are_refused_before_anything_runs():
  model = dict(patch_size=2, width=32, depth=2, num_heads=2, mlp_dim=64, mask_token=True)
  with pytest.raises(ValueError, match="tokenizer='dall-e' is unknown"):
    beit.BEiT.create(model=model, run=image_run(8), num_mask_patches=6, tokenizer="dall-e")
  with pytest.raises(ValueError, match="mask_token=True"):
    beit.BEiT.create(model=dict(model, mask_token=False), run=image_run(8), num_mask_patches=6)
  with pytest.raises(ValueError, match="a vocabulary of 2 or more"):
    beit.BEiT.create(model=model, run=image_run(8), num_mask_patches=6, vocab_size=1)


def test_beit_reads_a_trained_tokenizer_run(tmp_path):
  """`method.tokenizer="vq_tokenizer"`: the trainer opens the tokenizer's run before writing anything, BEiT's state
  starts with that run's parameters and codebook (`extra["tokenizer"]`), its targets are that tokenizer's codes, and
  a run whose tokenizer does not fit is refused with the fix."""
  from ssl_jax import pretrained
  from ssl_jax import train
  from test_fault_matrix import devices
  from test_fault_matrix import shrunk
  tok = shrunk("vq_tokenizer")
  tok.update(dict(total_steps=2, ckpt_every=2))
  tok.debug.nonfinite_at_steps = ()
  tok.eval.evaluators = {}
  train.run(tok, str(tmp_path / "tok"), devices=devices())        # one device, as the fault matrix runs it
  c = shrunk("beit")
  c.update(dict(total_steps=2, ckpt_every=2))
  c.debug.nonfinite_at_steps = ()
  c.eval.evaluators = {}
  c.method.update(dict(tokenizer="vq_tokenizer", tokenizer_workdir=str(tmp_path / "tok"), vocab_size=512))
  train.run(c, str(tmp_path / "beit"), devices=devices())
  source = pretrained.open_workdir(str(tmp_path / "tok"))
  tok_params, tok_extra = source.state()
  saved = pretrained.open_workdir(str(tmp_path / "beit"))
  _, extra = saved.state()
  for got, want in zip(jax.tree.leaves(extra["tokenizer"]), jax.tree.leaves({"params": tok_params,
                                                                             "extra": tok_extra})):
    np.testing.assert_array_equal(got, want)        # unchanged by BEiT's training steps
  images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  np.testing.assert_array_equal(saved.method.visual_tokens(extra["tokenizer"], images),
                                source.method.codes(tok_params, tok_extra, images))
  with pytest.raises(ValueError, match="set method.vocab_size=512"):
    train.run(dict_update(c, method=dict(vocab_size=64)), str(tmp_path / "other"))
  with pytest.raises(FileNotFoundError, match="config.method.tokenizer_workdir=.*holds no complete checkpoint"):
    train.run(dict_update(c, method=dict(tokenizer_workdir=str(tmp_path / "none"))), str(tmp_path / "other"))
  assert not (tmp_path / "other").exists()          # refused before anything was written
  with pytest.raises(ValueError, match="set method.tokenizer_workdir"):
    beit.BEiT.create(model=dict(c.model), run=image_run(16), num_mask_patches=6, min_mask_patches_per_block=2,
                     tokenizer="vq_tokenizer", vocab_size=512)


def dict_update(config, **groups):
  """A copy of `config` with the fields of each group (`method=dict(...)`) replaced."""
  c = config.copy_and_resolve_references()
  for group, fields in groups.items():
    c[group].update(fields)
  return c

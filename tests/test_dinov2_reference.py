"""DINOv2 against a PyTorch transcription of the official code (facebookresearch/dinov2).

The reference below re-implements, from `train/ssl_meta_arch.py` (`forward_backward` after the heads),
`loss/dino_clstoken_loss.py`, `loss/ibot_patch_loss.py`, `loss/koleo_loss.py` and `data/collate.py`, what one
DINOv2 iteration computes from the heads' outputs on several GPUs: the teacher's [CLS] targets chunked and swapped,
the local- and global-crop DINO terms scaled by `1 / (n_global_terms + n_local_terms)`, KoLeo on each global crop's
[CLS] tokens within the GPU's batch, the iBOT loss over the masked patches weighted by `masks_weight`, the centres
(all-reduced) and Sinkhorn-Knopp (all-reduced sums); DDP averages the GPUs' gradients. Our `dinov2.objective` sees
the same numbers in our layout (example-major crops, a group per GPU, the masked patches in static-size buffers via
`masked_patch_slots`); the test compares the losses, the centres and the gradients with respect to the student's
outputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses
from ssl_jax import masking
from ssl_jax.methods import dinov2


# -- the official code, transcribed (torch, one GPU at a time, the collectives written out) --------------------------

def _sinkhorn(torch, outputs, temp, rows_total, n_iterations=3):
  """`sinkhorn_knopp_teacher` over several GPUs: `outputs` one [n_g, K] tensor per GPU; the all-reduces are sums."""
  qs = [torch.exp(o.float() / temp).t() for o in outputs]
  total = sum(q.sum() for q in qs)
  qs = [q / total for q in qs]
  k = qs[0].shape[0]
  for _ in range(n_iterations):
    rows = sum(q.sum(dim=1, keepdim=True) for q in qs)
    qs = [q / rows / k for q in qs]
    qs = [q / q.sum(dim=0, keepdim=True) / rows_total for q in qs]
  return [(q * rows_total).t() for q in qs]


def _koleo(torch, x, eps=1e-8):
  x = torch.nn.functional.normalize(x, eps=eps, p=2, dim=-1)
  dots = x @ x.t()
  n = x.shape[0]
  dots.view(-1)[:: (n + 1)].fill_(-1)
  _, nn_idx = torch.max(dots, dim=1)
  distances = torch.nn.functional.pairwise_distance(x, x[nn_idx], p=2, eps=eps)
  return -torch.log(distances + eps).mean()


def official_step(torch, gpus, *, teacher_temp, centering, dino_center, ibot_center, n_local, koleo_weight=0.1,
                  student_temp=0.1, center_momentum=0.9):
  """The mean over GPUs of `forward_backward`'s `loss_accumulator`, and the centres after the step.

  `gpus`: one dict per GPU of tensors in the official layout (crops collated crop-major):
  t_cls `[2n, K]`, t_patch `[2n, T, K']`, s_global `[2n, K]`, s_local `[L n, K]`, s_patch `[2n, T, K']`,
  s_cls_feats `[2n, D]`, masks `[2n, T]` bool."""
  world = len(gpus)
  n_global = 2
  teacher = []
  for g in gpus:
    chunks = g["t_cls"].chunk(n_global)
    t_cls = torch.cat((chunks[1], chunks[0]))                           # swapped: A is matched to B
    idx = g["masks"].flatten().nonzero().flatten()
    t_patch = g["t_patch"].flatten(0, 1)[idx]
    teacher.append((t_cls, t_patch, idx))
  if centering == "center":
    dino_probs = [torch.softmax((t - dino_center) / teacher_temp, dim=-1) for t, _, _ in teacher]
    ibot_probs = [torch.softmax((p - ibot_center) / teacher_temp, dim=-1) for _, p, _ in teacher]
  else:
    dino_probs = _sinkhorn(torch, [t for t, _, _ in teacher], teacher_temp, sum(len(t) for t, _, _ in teacher))
    ibot_probs = _sinkhorn(torch, [p for _, p, _ in teacher], teacher_temp, sum(len(p) for _, p, _ in teacher))
  dino_batch = sum(t.sum(dim=0) for t, _, _ in teacher) / (len(teacher[0][0]) * world)
  ibot_batch = sum(p.mean(dim=0) for _, p, _ in teacher) / world
  new_dino_center = dino_center * center_momentum + dino_batch * (1 - center_momentum)
  new_ibot_center = ibot_center * center_momentum + ibot_batch * (1 - center_momentum)

  def dino_loss(student_list, teacher_list):
    total = 0
    for s in student_list:
      lsm = torch.log_softmax(s / student_temp, dim=-1)
      for t in teacher_list:
        total -= torch.sum(t * lsm, dim=-1).mean()
    return total

  n_local_terms = max(n_local * n_global, 1)
  n_global_terms = (n_global - 1) * n_global
  per_gpu = []
  for g, (_, _, idx), q_cls, q_patch in zip(gpus, teacher, dino_probs, ibot_probs):
    q_list = q_cls.view(n_global, -1, q_cls.shape[-1])
    loss = dino_loss(g["s_local"].chunk(n_local), q_list) / (n_global_terms + n_local_terms)
    loss = loss + dino_loss([g["s_global"]], [q_list.flatten(0, 1)]) * 2 / (n_global_terms + n_local_terms)
    loss = loss + koleo_weight * sum(_koleo(torch, p) for p in g["s_cls_feats"].chunk(2))
    masks = g["masks"]
    masks_weight = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
    s_patch = g["s_patch"].flatten(0, 1)[idx]
    ce = torch.sum(q_patch * torch.log_softmax(s_patch / student_temp, dim=-1), dim=-1)
    loss = loss + (-(ce * masks_weight).sum() / masks.shape[0]) * 2 * (1.0 / n_global)
    per_gpu.append(loss)
  return sum(per_gpu) / world, new_dino_center, new_ibot_center


# -- the comparison -----------------------------------------------------------------------------------------------

def _case(seed, groups=2, n=3, n_local=2, t=6, k=7, d=5):
  """Random heads' outputs and masks in our layout (crops example-major, `[2B, ...]`, B = groups * n)."""
  r = np.random.default_rng(seed)
  b = groups * n
  masks = r.random((2 * b, t)) < 0.4
  masks[::3] = False                                                   # some crops unmasked
  return dict(t_cls=r.normal(size=(2 * b, k)) * 3, t_patch=r.normal(size=(2 * b, t, k)) * 3,
              s_global=r.normal(size=(2 * b, k)) * 3, s_local=r.normal(size=(b, n_local, k)) * 3,
              s_patch=r.normal(size=(2 * b, t, k)) * 3, s_cls_feats=r.normal(size=(2 * b, d)), masks=masks,
              dino_center=r.normal(size=(k,)) * 0.3, ibot_center=r.normal(size=(k,)) * 0.3,
              groups=groups, n=n, n_local=n_local)


def _ours(case, centering, teacher_temp):
  """`dinov2.objective` on the case, the student outputs as function arguments (for their gradients)."""
  groups, n, n_local = case["groups"], case["n"], case["n_local"]
  b = groups * n
  mask = jnp.asarray(case["masks"])
  t = mask.shape[1]
  capacity = int(mask.reshape(groups, -1).sum(1).max())
  ids, valid, weight = dinov2.masked_patch_slots(mask, groups, capacity)
  view_major = lambda x: jnp.swapaxes(x.reshape((b, -1) + x.shape[1:]), 0, 1)      # [2B, ...] -> [2, B, ...]
  gather = lambda x: masking.gather_tokens(x.reshape(groups, 2 * n * t, -1), ids)
  t_cls, t_patch = view_major(jnp.asarray(case["t_cls"])), gather(jnp.asarray(case["t_patch"]))

  def total(s_global, s_local, s_patch, s_cls_feats):
    s_cls = jnp.concatenate([view_major(s_global), jnp.swapaxes(s_local, 0, 1)], axis=0)
    out = dinov2.objective(s_cls=s_cls, s_patch=gather(s_patch), s_cls_feats=s_cls_feats.reshape(groups, n, 2, -1),
                           t_cls=t_cls, t_patch=t_patch, valid=valid, weight=weight,
                           dino_center=jnp.asarray(case["dino_center"]), ibot_center=jnp.asarray(case["ibot_center"]),
                           teacher_temp=teacher_temp, centering=centering)
    return out[0], out
  args = [jnp.asarray(case[name], jnp.float32) for name in ("s_global", "s_local", "s_patch", "s_cls_feats")]
  (loss, out), grads = jax.value_and_grad(total, argnums=(0, 1, 2, 3), has_aux=True)(*args)
  return loss, out[2], grads


def _official(torch, case, centering, teacher_temp):
  """The official step on the case: each group is a GPU, its crops collated crop-major."""
  groups, n, n_local = case["groups"], case["n"], case["n_local"]
  tensors = {name: torch.tensor(np.asarray(case[name], np.float32), requires_grad=name.startswith("s_"))
             for name in ("t_cls", "t_patch", "s_global", "s_local", "s_patch", "s_cls_feats")}
  masks = torch.tensor(case["masks"])
  gpus = []
  for g in range(groups):
    crops = [(i, v) for v in range(2) for i in range(g * n, (g + 1) * n)]    # crop-major within the GPU
    rows = torch.tensor([2 * i + v for i, v in crops])                       # their rows in our [2B] layout
    images = torch.arange(g * n, (g + 1) * n)
    gpus.append(dict(t_cls=tensors["t_cls"][rows], t_patch=tensors["t_patch"][rows],
                     s_global=tensors["s_global"][rows], s_patch=tensors["s_patch"][rows],
                     s_cls_feats=tensors["s_cls_feats"][rows], masks=masks[rows],
                     s_local=tensors["s_local"][images].transpose(0, 1).flatten(0, 1)))
  loss, dino_center, ibot_center = official_step(
      torch, gpus, teacher_temp=teacher_temp, centering=centering, n_local=n_local,
      dino_center=torch.tensor(np.float32(case["dino_center"])),
      ibot_center=torch.tensor(np.float32(case["ibot_center"])))
  loss.backward()
  grads = [tensors[name].grad.numpy() for name in ("s_global", "s_local", "s_patch", "s_cls_feats")]
  return loss.item(), (dino_center.numpy(), ibot_center.numpy()), grads


@pytest.mark.parametrize("centering", ["center", "sinkhorn"])
def test_loss_centres_and_gradients_equal_the_official_step(centering):
  torch = pytest.importorskip("torch")
  case = _case(0)
  loss, centres, grads = _ours(case, centering, teacher_temp=0.5)
  ref_loss, ref_centres, ref_grads = _official(torch, case, centering, teacher_temp=0.5)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=2e-5)
  if centering == "center":
    for ours, ref in zip(centres, ref_centres):
      np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5, atol=1e-6)
  for name, ours, ref in zip(("s_global", "s_local", "s_patch", "s_cls_feats"), grads, ref_grads):
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=2e-4, atol=2e-6, err_msg=name)


def test_ibot_loss_on_a_hand_computed_case():
  """Two crops of one image, 2 patches each, 2 prototypes: crop 0 masks patch 1 only, crop 1 masks nothing.

  Teacher patch logits (1, 0) at temperature 1 after a zero centre: q = (e/(e+1), 1/(e+1)) = (0.7311, 0.2689);
  student logits (0, 0): log p = log 1/2 for both prototypes at any temperature. The patch's cross-entropy is
  log 2 = 0.6931, crop 0's mean over its one masked patch 0.6931, crop 1's 0, and the loss the mean over the two
  crops: 0.34657."""
  mask = jnp.array([[False, True], [False, False]])
  ids, valid, weight = dinov2.masked_patch_slots(mask, 1, 2)
  assert ids[0, 0] == 1 and valid.tolist() == [[True, False]] and weight.tolist() == [[1.0, 0.0]]
  t_patch = jnp.array([[[1.0, 0.0], [1.0, 0.0]]])                        # [G=1, C=2, K=2]
  s_patch = jnp.zeros((1, 2, 2))
  _, parts, (_, ibot_center), (_, q_patch) = dinov2.objective(
      s_cls=jnp.zeros((2, 1, 2)), s_patch=s_patch, s_cls_feats=jnp.eye(2).reshape(1, 1, 2, 2),
      t_cls=jnp.zeros((2, 1, 2)), t_patch=t_patch, valid=valid, weight=weight, dino_center=jnp.zeros(2),
      ibot_center=jnp.zeros(2), teacher_temp=1.0)
  np.testing.assert_allclose(q_patch[0, 0], [np.e / (np.e + 1), 1 / (np.e + 1)], rtol=1e-6)
  np.testing.assert_allclose(float(parts["ibot_loss"]), np.log(2) / 2, rtol=1e-6)
  # The centre moves towards the mean of the masked patches' teacher logits only: 0.1 * (1, 0).
  np.testing.assert_allclose(ibot_center, [0.1, 0.0], atol=1e-7)


def test_mask_counts_follow_the_official_collate():
  """`stratified_mask_counts` against `collate_data_and_cast`: half the crops masked, one count per stratum of
  [0.1, 0.5] (sorted, the masked counts fall in consecutive strata), and the buffer size equals `upperbound`."""
  torch = pytest.importorskip("torch")
  n_crops, t = 128, 196
  probs = torch.linspace(0.1, 0.5, n_crops // 2 + 1)
  upperbound = sum(int(t * probs[i + 1]) for i in range(n_crops // 2))
  assert masking.ibot_capacity(n_crops, t) == upperbound
  for seed in range(3):
    counts = np.asarray(masking.stratified_mask_counts(jax.random.key(seed), n_crops, t))
    assert (counts == 0).sum() == n_crops // 2 and counts.sum() <= upperbound
    masked = np.sort(counts[counts > 0])
    lo = np.array([int(t * float(probs[i])) for i in range(n_crops // 2)])
    hi = np.array([int(t * float(probs[i + 1])) for i in range(n_crops // 2)])
    assert np.all(masked >= lo) and np.all(masked <= hi)
  # The block-wise generator reaches each target (blocks of >= 4 patches, at most 98, on the 14x14 grid) or stops a
  # little short of it, as the official `MaskingGenerator`.
  counts = masking.stratified_mask_counts(jax.random.key(0), n_crops, t)
  m = masking.blockwise_masking(jax.random.key(1), n_crops, (14, 14), num_masking_patches=counts, min_num_patches=4,
                                max_num_patches=98)
  got = np.asarray(m.sum(1))
  assert np.all(got <= np.asarray(counts)) and got.sum() >= 0.97 * float(counts.sum())
  assert np.all(got[np.asarray(counts) == 0] == 0)


def test_sinkhorn_over_valid_rows_ignores_the_padding():
  x = jax.random.normal(jax.random.key(0), (7, 4)) * 3
  valid = jnp.array([1, 0, 1, 1, 0, 1, 1], bool)
  q = losses.sinkhorn_knopp(x, 0.3, valid=valid)
  np.testing.assert_allclose(q[np.asarray(valid)], losses.sinkhorn_knopp(x[np.asarray(valid)], 0.3), rtol=1e-5)
  assert float(jnp.abs(q[~np.asarray(valid)]).max()) == 0.0


def test_bad_settings_are_refused_before_anything_runs():
  from ssl_jax.methods import contract
  views = lambda n: {"views": {"global_crops": jax.ShapeDtypeStruct((n, 16, 16, 3), jnp.float32),
                               "local_crops": jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)}}
  model = dict(arch="vit", patch_size=4, width=32, depth=1, num_heads=2, mlp_dim=64, mask_token=True)
  head = dict(out_dim=16, hidden_dim=16, bottleneck_dim=8)
  build = lambda run, **kw: dinov2.DINOv2.create(**dict(dict(model=model, run=run, dino_head=head, group_size=8), **kw))
  run = contract.RunInfo(inputs=views(2), total_steps=10, batch_size=32)
  assert build(run).capacity(16) == masking.ibot_capacity(16, 16)
  with pytest.raises(ValueError, match="exactly 2 global crops"):
    build(contract.RunInfo(inputs=views(3), batch_size=32))
  with pytest.raises(ValueError, match="group_size=12 must divide the batch of 32"):
    build(run, group_size=12)
  with pytest.raises(ValueError, match="set config.model.mask_token=True"):
    build(run, model=dict(model, mask_token=False))
  with pytest.raises(ValueError, match="centering='centre'"):
    build(run, centering="centre")
  with pytest.raises(ValueError, match="features are the \\[CLS\\] token"):
    build(run, model=dict(model, pool="gap"))

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ssl_jax import sharding
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.data import transforms


def test_random_resized_crop_box_bounds_and_area():
  rng = np.random.default_rng(0)
  fractions = []
  for _ in range(500):
    top, left, h, w = transforms.random_resized_crop_box(rng, 60, 80, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3))
    assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80 and h > 0 and w > 0
    fractions.append(h * w / (60 * 80))
  # Rounding of h and w moves the area fraction a little outside the sampled range.
  assert 0.17 < min(fractions) and max(fractions) <= 1.0 and 0.45 < np.mean(fractions) < 0.65


def test_center_crop_shapes():
  img = np.zeros((50, 100, 3), np.uint8)
  assert transforms.center_crop(img, 32).shape == (32, 32, 3)
  assert transforms.center_crop(img, 32, crop_pct=1.0).shape == (32, 32, 3)


def test_digits_source():
  train, test = sources.digits("train"), sources.digits("test")
  assert len(train) == 1437 and len(test) == 360
  ex = train[0]
  assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8 and 0 <= ex["label"] < 10
  assert ex["image"].max() > 200   # ink is dark-on-light scaled to 0..255
  # ImageNet configs' evaluation splits work unchanged on digits: "validation" is the held-out set, and a slice
  # longer than the split is the whole split.
  assert len(sources.digits("validation")) == 360 and len(sources.digits("train[:50000]")) == 1437
  np.testing.assert_array_equal(sources.digits("validation")[5]["image"], test[5]["image"])
  # Read from scikit-learn's file without importing scikit-learn: what its loader gives, in a process of its own.
  from sklearn import datasets
  d = datasets.load_digits()
  images, labels = sources._digits_8x8()
  np.testing.assert_array_equal(images, d.images)
  np.testing.assert_array_equal(labels, d.target)
  code = "import sys; from ssl_jax.data import sources; sources.digits('train'); print('sklearn' in sys.modules)"
  assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_emoji_near_duplicate_clusters_and_split():
  from ssl_jax.data import emoji
  # Hand-derived: skin tones, joiners, gender signs dropped; man / woman / person one symbol.
  assert emoji.cluster_key("1F3C3") == emoji.cluster_key("1F3C3-1F3FF-200D-2642-FE0F") == "1F3C3"
  assert emoji.cluster_key("1F468-200D-1F33E") == emoji.cluster_key("1F9D1-1F3FB-200D-1F33E") == "P-1F33E"
  assert emoji.cluster_key("1F474-1F3FD") == "O" and emoji.cluster_key("1F1E9-1F1EA") == "1F1E9-1F1EA"
  cat = emoji.catalogue()
  assert len(cat) == 3773 and {e.group for e in cat} == set(emoji.GROUPS)
  test = emoji.split_test(cat)
  np.testing.assert_array_equal(test, emoji.split_test(cat))           # deterministic
  sides = {}
  for e, t in zip(cat, test):
    sides.setdefault(emoji.cluster_key(e.codepoints), set()).add(bool(t))
  assert all(len(s) == 1 for s in sides.values())                      # no cluster straddles the split
  for g in emoji.GROUPS:
    in_group = np.array([e.group == g for e in cat])
    assert 0.2 <= test[in_group].mean() < 0.3, g                         # 20% of each group, whole clusters


def test_emoji_prepare_renders_colour_drawings_once(tmp_path):
  from ssl_jax.data import emoji
  renderer = emoji.Renderer(16)
  assert renderer.render("\U0010FFFD") is None                         # the font's missing-glyph box
  assert renderer.render("\U0001F600\U0001F600") is None              # two glyphs, not one drawing
  thumbs = renderer.render("\U0001F44D\U0001F3FF")                    # a ZWJ-free modifier sequence: one glyph
  assert thumbs.shape == (16, 16, 3) and thumbs.dtype == np.uint8
  assert not np.array_equal(thumbs, renderer.render("\U0001F44D"))     # the skin tone is drawn
  path = emoji.prepare(str(tmp_path), size=16)
  arrays = emoji.load(str(tmp_path), 16)
  n = len(arrays["images"])
  assert arrays["images"].shape == (n, 16, 16, 3) and n == 3773
  assert set(np.unique(arrays["labels"])) == set(range(9))
  assert (arrays["images"][:, 0, 0] == 255).all()                      # drawn on white, with a border
  spread = arrays["images"].astype(int).max(-1) - arrays["images"].astype(int).min(-1)
  assert (spread.max(axis=(1, 2)) > 60).mean() > 0.85                   # colour drawings (some symbols are black)
  assert arrays["names"][0] == "grinning face" and arrays["groups"][0] == "Smileys & Emotion"
  mtime = os.path.getmtime(path)
  assert emoji.prepare(str(tmp_path), size=16) == path and os.path.getmtime(path) == mtime   # cached


def test_emoji_source():
  train, test = sources.make("emoji", "train"), sources.make("emoji", "test")
  assert (len(train), len(test), train.num_classes) == (3005, 768, 9)
  ex = test[3]
  assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8 and 0 <= ex["label"] < 9
  np.testing.assert_array_equal(sources.make("emoji", "validation")[3]["image"], ex["image"])
  assert len(sources.make("emoji", "train[:100]")) == 100
  with pytest.raises(ValueError, match="emoji has splits"):
    sources.make("emoji", "val")


def test_emoji_subgroups_are_the_same_images_with_finer_labels():
  """`emoji_subgroups`: the images and split of `emoji`, labelled by their 99 Unicode subgroups, each a part of one
  group, and every subgroup of the test split also in the training split (kNN can find each class)."""
  from ssl_jax.data import emoji
  groups, subgroups = sources.make("emoji", "all"), sources.make("emoji_subgroups", "all")
  assert subgroups.num_classes == 99 and len(subgroups) == len(groups)
  np.testing.assert_array_equal(subgroups.images, groups.images)
  assert len(set(zip(subgroups.labels.tolist(), groups.labels.tolist()))) == 99     # a subgroup lies in one group
  arrays = emoji.load()
  names = emoji.subgroup_labels(arrays)[1]
  assert names[subgroups.labels[list(arrays["codepoints"]).index("1F600")]] == "face-smiling"   # grinning face
  train, test = sources.make("emoji_subgroups", "train"), sources.make("emoji_subgroups", "test")
  assert set(test.labels.tolist()) <= set(train.labels.tolist())
  assert np.bincount(test.labels).max() / len(test) < 0.2                   # its largest class: "person-role"
  with pytest.raises(ValueError, match="emoji labels are 'group' or 'subgroup'"):
    sources.emoji("train", labels="name")


def test_synthetic_source_splits():
  train = sources.make("synthetic", "train", image_size=16, num_examples=100)
  val = sources.make("synthetic", "validation", image_size=16, num_examples=100)
  part = sources.make("synthetic", "train[10:20]", image_size=16, num_examples=100)
  assert (len(train), len(val), len(part)) == (100, 25, 10)
  assert train[0]["image"].shape == (16, 16, 3)
  np.testing.assert_array_equal(part[0]["image"], train[10]["image"])
  assert not np.array_equal(val[0]["image"], train[0]["image"])


def _stream(process_index=0, process_count=1, **kw):
  ds = pipeline.train_dataset(sources.digits("train"), seed=3, global_batch_size=8,
                              transform=transforms.train_transform(image_size=16), process_index=process_index,
                              process_count=process_count, **kw)
  return iter(ds)


def test_train_stream_is_seeded_and_resumable():
  a, b = _stream(), _stream()
  first = [next(a) for _ in range(3)]
  np.testing.assert_array_equal(first[2]["image"], next(b) and next(b) and next(b)["image"])
  state = a.get_state()
  expected = [next(a)["index"] for _ in range(3)]
  c = _stream()
  c.set_state(state)
  np.testing.assert_array_equal(np.stack([next(c)["index"] for _ in range(3)]), np.stack(expected))


def test_epochs_are_permutations_and_reshuffled():
  it = _stream()
  per_epoch = 1437 // 8
  ids = np.concatenate([next(it)["index"] for _ in range(2 * per_epoch + 2)])
  first, second = ids[:1437], ids[1437:2 * 1437]
  assert sorted(first.tolist()) == list(range(1437))
  assert sorted(second.tolist()) == list(range(1437))
  assert not np.array_equal(first, second)


def test_processes_read_contiguous_slices_of_the_global_batch():
  single = _stream()
  parts = [_stream(p, 2) for p in range(2)]
  for _ in range(3):
    whole = next(single)
    local = [next(p) for p in parts]
    assert local[0]["image"].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(np.concatenate([l["index"] for l in local]), whole["index"])
    np.testing.assert_array_equal(np.concatenate([l["image"] for l in local]), whole["image"])


def test_eval_dataset_pads_and_flags_validity():
  ds, n = pipeline.eval_dataset(sources.digits("test[:50]"), global_batch_size=16,
                                transform=transforms.EvalView(16, 0.875))
  batches = list(ds)
  assert n == 4 and len(batches) == 4
  valid = np.concatenate([b["valid"] for b in batches])
  assert valid.sum() == 50 and valid[:50].all()
  np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches])[:50], np.arange(50))


def test_batch_larger_than_data_is_an_error():
  with pytest.raises(ValueError, match="larger than the data set"):
    pipeline.train_dataset(sources.digits("test[:10]"), seed=0, global_batch_size=16,
                           transform=transforms.train_transform(image_size=16))


def test_tfds_source_under_mock_data():
  with tfds.testing.mock_data(num_examples=24):
    src = sources.make("imagenet2012", "train")
    assert len(src) == 24 and src.num_classes == 1000
    it = iter(pipeline.train_dataset(src, seed=0, global_batch_size=8,
                                     transform=transforms.train_transform(image_size=32)))
    batch = next(it)
  assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (8,) and ((0 <= batch["label"]) & (batch["label"] < 1000)).all()


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds build imagenet2012 --file_format=array_record"):
    sources.make("imagenet2012", "train", data_dir=str(tmp_path / "tfds"))
  assert not (tmp_path / "tfds").exists()   # nothing written


def test_grain_worker_processes_give_the_same_stream_and_state():
  plain = _stream()
  workers = _stream(num_workers=2)
  for _ in range(3):
    np.testing.assert_array_equal(next(plain)["image"], next(workers)["image"])
  state = workers.get_state()
  expected = next(plain)["index"]
  resumed = _stream(num_workers=2)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["index"], expected)


def test_unknown_tfds_split_is_named(monkeypatch):
  def fake_data_source(name, split, **kwargs):   # what TFDS raises for a prepared data set without that split
    raise ValueError(f"Unknown split {split!r}. Should be one of ['train', 'validation'].")
  monkeypatch.setattr(tfds, "data_source", fake_data_source)
  with pytest.raises(ValueError, match="has no split 'valid'.*Should be one of \\['train', 'validation'\\]"):
    sources.make("imagenet2012", "valid")


def test_input_spec_matches_the_global_batches():
  """The input spec (the abstract batch of the trainer's init, the dry run and the benchmarks) is what the pipeline
  delivers, single and multi-view; what the method receives after the device stage is what `method_inputs` says."""
  import jax
  from ssl_jax import config as config_lib
  from ssl_jax.data import inputs
  mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
  views = dict(global_crops=dict(count=2, size=16, scale=(0.3, 1.0), photometric="byol1"),
               local_crops=dict(count=3, size=8, scale=(0.05, 0.3), photometric="dino_local"))
  shapes = lambda tree: jax.tree.map(lambda v: (v.shape, v.dtype), tree)
  for v in ({}, views):
    data = config_lib.image_data("digits", size=16, views=v)
    local = next(iter(inputs.train_stream(data, sources.digits("train"), seed=0, global_batch_size=16)))
    real = pipeline.to_global(local, sharding.batch_sharding(mesh))
    assert shapes(real) == shapes(inputs.batch_spec(data, 16))
    # Shapes only: the stage's values are checked by the photometric tests below and in test_augment.py.
    seen = jax.eval_shape(inputs.device_stage(data), real, jax.random.key(0))
    assert shapes(seen) == shapes(jax.tree.map(lambda s: jax.ShapeDtypeStruct((16,) + s.shape, s.dtype),
                                               inputs.method_inputs(data)))
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(seen.get("views", {})))


def test_single_view_photometric_recipe_on_the_device():
  """`config.data.image.photometric` (data2vec's and BEiT's colour jitter): the single view is jittered on the device
  with the stage's key (per example, so the same on any sharding), then normalised; without it the stage draws no
  random numbers and only normalises. A recipe beside view groups, or an unknown one, is refused."""
  import jax
  from ssl_jax import config as config_lib
  from ssl_jax.data import inputs
  from ssl_jax.ops import augment
  from ssl_jax.ops import image
  images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
  batch = {"image": images, "label": np.arange(4, dtype=np.int32)}
  plain = inputs.device_stage(config_lib.image_data("digits", size=16))
  assert not plain.random
  np.testing.assert_array_equal(plain(batch)["image"], image.normalize(images))
  jitter = inputs.device_stage(config_lib.image_data("digits", size=16, photometric="beit"))
  assert jitter.random and jitter.image_recipe == augment.RECIPES["beit"]
  out = jitter(batch, jax.random.key(3))
  want = augment.augment_views(images[:, None], jax.random.fold_in(jax.random.key(3), 0), (augment.RECIPES["beit"],))
  np.testing.assert_array_equal(out["image"], want[:, 0])
  assert not np.allclose(out["image"], image.normalize(images)) and out["image"].dtype == np.float32
  np.testing.assert_array_equal(out["label"], batch["label"])
  np.testing.assert_array_equal(jitter(dict(batch, image=images[:2]), jax.random.key(3))["image"], out["image"][:2])
  c = config_lib.base_config()
  c.data = config_lib.image_data("digits", size=16, photometric="nope")
  with pytest.raises(ValueError, match="unknown photometric recipe 'nope'"):
    config_lib._validate_image(c.data.image)
  c.data = config_lib.image_data("digits", size=16, photometric="beit",
                                 views=dict(g=dict(count=2, size=16, scale=(0.3, 1.0), photometric="byol1")))
  with pytest.raises(ValueError, match="augments the single view"):
    config_lib._validate_image(c.data.image)

"""Image-text pretraining (CLIP, SigLIP): the global-batch losses in their three forms on 1 and 8 devices, the text
towers' pooling and masks, the captions as the data yields them, and the zero-shot and retrieval evaluators against
hand-computed values. The contract test and the fault matrix cover both methods as registered methods."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import evaluators
from ssl_jax import sharding
from ssl_jax.data import image_text
from ssl_jax.data import sources
from ssl_jax.evaluators import image_text as image_text_eval
from ssl_jax.models import text as text_model
from test_contract import _batches
from test_contract import _build


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_ring_and_chunked_losses_equal_the_plain_loss_and_gradients_on_1_and_8_devices(name):
  """The method's loss over the global batch of 16 pairs: "plain" (the whole [16, 16] similarity matrix), "chunked"
  (4 rows at a time) and "ring" (shard_map over the 8 devices' batch axes, 2 pairs per device, the text blocks passed
  around the ring) give one loss and one gradient; "ring" on 1 device is the plain loss. Float32 sums in another
  order: within 1e-5 of the loss and 1e-5 of each gradient's largest element (the contract test's bound)."""
  config, method, run = _build(name)
  train_batch, _ = _batches(config, run)
  params, extra = jax.jit(lambda rng, b: nn.unbox(method.init(rng, b)))(jax.random.key(0), train_batch)
  grad = lambda m: jax.jit(jax.value_and_grad(lambda p: m.loss(p, extra, train_batch, jax.random.key(1),
                                                                jnp.int32(0))[0]))
  results = {}
  for devices in (1, 8):
    mesh = sharding.make_mesh(dict(data=devices // 2 or 1, fsdp=2 if devices == 8 else 1, tensor=1),
                              jax.devices()[:devices])
    for impl, chunk in (("plain", None), ("chunked", 4), ("ring", None)):
      variant = _build(name, loss_impl=impl, chunk_size=chunk)[1]
      with jax.set_mesh(mesh), nn.logical_axis_rules(config.sharding_rules):
        placed = jax.device_put(params, sharding.replicated(mesh))
        results[devices, impl] = grad(variant)(placed)
  loss, grads = results[1, "plain"]
  for key, (other, other_grads) in results.items():
    np.testing.assert_allclose(float(other), float(loss), rtol=1e-5, err_msg=str(key))
    for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(other_grads)):
      np.testing.assert_allclose(np.asarray(h), np.asarray(g), rtol=1e-4, atol=1e-5 * np.abs(g).max() + 1e-8,
                                 err_msg=str(key))


def test_text_towers_pool_and_mask_as_clip_and_siglip_do():
  """CLIP's tower: causal (a token's state ignores later tokens) and pooled at the last token of segment 1 (the
  end-of-text token); SigLIP's: pooled at the window's last position and attending to the whole window (the segment
  ids change nothing)."""
  tokens = jnp.asarray(np.random.default_rng(0).integers(2, 50, (2, 8)), jnp.int32)
  segments = jnp.asarray([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0]], jnp.int32)
  for style in ("clip", "siglip"):
    model = text_model.TextTransformer(vocab_size=64, max_length=8, width=16, depth=2, num_heads=2, mlp_dim=32,
                                       style=style)
    params = model.init(jax.random.key(0), tokens, segment_ids=segments)
    out = model.apply(params, tokens, segment_ids=segments)
    hidden, pooled = np.asarray(out["tokens"]), np.asarray(out["pooled"])
    changed = tokens.at[:, 7].set(1)
    later = np.asarray(model.apply(params, changed, segment_ids=segments)["tokens"])
    if style == "clip":
      np.testing.assert_allclose(pooled, hidden[[0, 1], [2, 5]], rtol=1e-6)
      np.testing.assert_allclose(later[:, :7], hidden[:, :7], rtol=1e-6)        # causal: position 7 unseen before
    else:
      np.testing.assert_allclose(pooled, hidden[:, -1], rtol=1e-6)
      assert np.abs(later[:, 0] - hidden[:, 0]).max() > 1e-4                   # bidirectional
      np.testing.assert_allclose(np.asarray(model.apply(params, tokens)["pooled"]), pooled, rtol=1e-6)  # no mask


def test_captions_end_with_end_of_text_padded_with_it_and_cut_to_keep_it():
  tok = image_text.train_tokenizer(["a red apple", "a green apple", "a red car"] * 5, vocab_size=300)
  again = image_text.train_tokenizer(["a red apple", "a green apple", "a red car"] * 5, vocab_size=300)
  assert tok.to_str() == again.to_str()                                    # the same in every process
  end, start = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|startoftext|>")
  assert (end, start) == (0, 1)
  words = tok.encode("A Red apple", add_special_tokens=False).ids           # lower-cased
  assert words == tok.encode("a red apple", add_special_tokens=False).ids
  ids, segments = image_text.encode_captions(["a red apple", "a red apple " * 10], tok, length=8, start_token=True)
  n = len(words)
  assert ids[0, :n + 2].tolist() == [start] + words + [end] and (ids[0, n + 2:] == end).all()
  assert segments[0].tolist() == [1] * (n + 2) + [0] * (6 - n)
  assert ids[1, 0] == start and ids[1, -1] == end and segments[1].all()     # cut, the end-of-text token kept
  ids, _ = image_text.encode_captions(["a red apple"], tok, length=8, start_token=False)
  assert ids[0, :n + 1].tolist() == words + [end]
  with pytest.raises(ValueError, match="no room"):
    image_text.encode_captions(["x"], tok, length=2, start_token=True)


def test_pair_sources_of_the_embedded_sets():
  """The emoji's captions are their Unicode names and subgroups, the digits' a sentence naming the digit; a pair
  source yields each image with its caption's tokens."""
  emoji = sources.make("emoji", "test[:4]")
  assert emoji.captions[0] == "smiling face with open mouth and smiling eyes (face smiling)"
  assert len(emoji.class_names) == 9
  digits = sources.make("digits", "train[:40]")
  for caption, label in zip(digits.captions, digits.labels):
    assert sources.DIGIT_WORDS[label] in caption or str(label) in caption
  tok = image_text.train_tokenizer(digits.captions, vocab_size=300)
  pairs = image_text.PairSource(digits, tok, length=12, start_token=False)
  item = pairs[3]
  assert item["text"].shape == (12,) and item["text"].dtype == np.int32 and item["label"] == digits.labels[3]
  assert tok.decode(item["text"][item["text_segment_ids"] == 1].tolist()).strip() == digits.captions[3]
  with pytest.raises(ValueError, match="no captions"):
    image_text.PairSource(sources.make("synthetic", "train", num_examples=8, image_size=8), tok, length=12,
                          start_token=False)


def test_zero_shot_and_retrieval_against_hand_computed_values():
  # Zero-shot: two classes x two templates; image 0 nearest class 0, image 1 nearest class 0 too (label 1: a miss).
  prompts = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0.8, 0.6]], np.float32)
  classes = image_text_eval.class_embeddings(prompts, 2)
  np.testing.assert_allclose(classes[0], np.array([1.6, 0.8, 0]) / np.linalg.norm([1.6, 0.8, 0]), rtol=1e-6)
  images = np.array([[1, 0, 0], [0.9, 0.1, 0.42]], np.float32)
  assert image_text_eval.zero_shot_accuracy(images, np.array([0, 1]), classes, ks=(1, 2, 5)) == {1: 0.5, 2: 1.0}
  # Retrieval: pairs 0 and 1 share a caption. Image 2's nearest text is text 0 (r@1 miss), its second text 2.
  img = np.array([[1, 0], [0, 1], [0.8, 0.6]], np.float32)
  txt = np.array([[0.9, 0.44], [0.1, 1], [0.6, 0.8]], np.float32)
  r = image_text_eval.retrieval_recall(img, txt, np.array([7, 7, 3]), ks=(1, 2, 5))
  # image->text: image 0 -> text 0 (right), image 1 -> text 1 (right), image 2 -> text 0 (wrong), then text 2.
  # text->image: text 0 -> image 2 (wrong), then image 0; text 1 -> image 1 (right), text 2 -> image 2 (right).
  assert r == {"image_to_text_r@1": 2 / 3, "image_to_text_r@2": 1.0, "text_to_image_r@1": 2 / 3,
               "text_to_image_r@2": 1.0}
  assert image_text_eval.prompt_name("face-smiling") == "face smiling"


def test_zero_shot_and_retrieval_runners_over_a_context():
  """The runners over an in-memory `Context` whose embedding is the one-hot of the label (images) and of the
  caption's first token (texts): perfect zero-shot and retrieval; no result without a joint embedding."""
  labels = np.array([0, 1, 2, 1, 0, 2], np.int32)
  batch = {"image": np.eye(3, dtype=np.float32)[labels], "text": labels[:, None].repeat(4, 1), "label": labels,
           "valid": np.array([1, 1, 1, 1, 1, 0], np.int32)}
  embed = lambda b: {"image": jnp.asarray(b["image"]), "text": jnp.eye(3)[b["text"][:, 0]]}
  names = ("red", "green", "blue")
  embed_texts = lambda texts: np.eye(3, dtype=np.float32)[[next(i for i, n in enumerate(names) if n in t)
                                                           for t in texts]]
  context = evaluators.Context(represent=None, batches=lambda split, augment_seed=None: iter([batch]), mesh=None,
                               num_classes=3, class_names=names, embed=embed, embed_texts=embed_texts)
  out = evaluators.run({"zs": dict(type="zero_shot", templates=("a {}.", "{}")), "ret": dict(type="retrieval")},
                       context)
  assert out["eval/zs_top1"] == 1.0 and out["eval/ret_image_to_text_r@1"] == 1.0
  assert out["eval/ret_text_to_image_r@1"] == 1.0 and "eval/zs_top5" not in out     # 3 classes: no top-5
  with pytest.raises(ValueError, match="templates"):
    evaluators.run({"zs": dict(type="zero_shot", templates=("no slot",))}, context)
  context.embed = None
  assert evaluators.run({"zs": dict(type="zero_shot"), "ret": dict(type="retrieval")}, context) == {}


def _write_shard(path, members):
  import io
  import tarfile
  with tarfile.open(path, "w") as tar:
    for name, data in members:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


def _jpeg(colour):
  import io
  from PIL import Image
  out = io.BytesIO()
  Image.new("RGB", (12, 10), colour).save(out, format="JPEG")
  return out.getvalue()


def _img2dataset_folder(root):
  """Two shards of 5 pairs under `root/train/` (one undecodable image, one empty caption) and a key without caption."""
  (root / "train").mkdir(parents=True)
  _write_shard(root / "train" / "00000.tar", [
      ("000000.jpg", _jpeg((255, 0, 0))), ("000000.txt", b"a red square"), ("000000.json", b"{}"),
      ("000001.jpg", b"not a jpeg"), ("000001.txt", b"broken"),
      ("000002.jpg", _jpeg((0, 0, 255))), ("000002.txt", b"a blue square\n")])
  _write_shard(root / "train" / "00001.tar", [
      ("000003.jpg", _jpeg((0, 255, 0))), ("000003.txt", b"   "),
      ("000004.png", _jpeg((0, 255, 0))),                          # no caption: left out
      ("000005.jpg", _jpeg((0, 255, 0))), ("000005.txt", b"a green square")])


def test_webdataset_shards_are_indexed_read_by_key_and_bad_pairs_skipped_or_named(tmp_path):
  """Two shards as img2dataset writes them (`{key}.jpg`, `{key}.txt`, `{key}.json`): pairs by key across shards, a
  key without its caption left out, an undecodable image and an empty caption replaced by the next pair and counted
  ("skip") or named with their shard ("stop"); the split and slicing of `sources.make`."""
  _img2dataset_folder(tmp_path)
  source = sources.make("webdataset", "train", data_dir=str(tmp_path))
  assert len(source) == 5 and source.incomplete == 1
  assert list(source.captions) == ["a red square", "broken", "a blue square", "", "a green square"]
  example, caption = source.pair(0)
  assert caption == "a red square" and example["image"].shape == (10, 12, 3) and example["bad"] == 0
  assert example["image"][..., 0].mean() > 200 and example["image"][..., 2].mean() < 50
  example, caption = source.pair(1)                                 # the undecodable image: the next pair instead
  assert caption == "a blue square" and example["bad"] == 1 and example["index"] == 1
  assert source.pair(3)[1] == "a green square" and source.pair(3)[0]["bad"] == 1    # the empty caption
  assert len(sources.make("webdataset", "train[1:3]", data_dir=str(tmp_path))) == 2
  strict = sources.make("webdataset", "train", data_dir=str(tmp_path), bad_images="stop")
  with pytest.raises(sources.BadPairError, match=r"00000\.tar: key '000001' has an image that does not decode"):
    strict.pair(1)
  with pytest.raises(sources.BadPairError, match=r"00001\.tar: key '000003' has an empty caption"):
    strict.pair(3)
  with pytest.raises(FileNotFoundError, match="test/\\*.tar"):
    sources.make("webdataset", "test", data_dir=str(tmp_path))
  tok = image_text.train_tokenizer(source.captions, vocab_size=280)
  pairs = image_text.PairSource(source, tok, length=8, start_token=True)
  item = pairs[1]
  assert item["bad"] == 1 and tok.decode(item["text"][item["text_segment_ids"] == 1].tolist()).strip() == \
      "a blue square"


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_hugging_face_export_gives_our_embeddings(name, tmp_path):
  """`export --format=hf` of a (shrunk) CLIP / SigLIP run: transformers loads `CLIPModel` / `SiglipModel` and the
  caption tokenizer from the directory alone; the tokenizer frames and pads a caption as the run does, and the
  image and text embeddings equal ours within 1e-4 (normalised, as both compare them)."""
  torch = pytest.importorskip("torch", reason="the optional `export` extra: pip install -e '.[export]'")
  transformers = pytest.importorskip("transformers", reason="the optional `export` extra")
  from ssl_jax import export
  from ssl_jax import pretrained
  from ssl_jax import train
  from ssl_jax.data import inputs
  from test_fault_matrix import shrunk
  config = shrunk(name)
  config.debug.nonfinite_at_steps = ()
  config.eval.evaluators = {}
  config.eval.update(dict(init_baseline=False, report=False))
  workdir = tmp_path / "run"
  train.run(config, str(workdir))
  assert export.main([f"--workdir={workdir}", "--format=hf", f"--out={tmp_path / 'hf'}"]) == 0
  captions = ["grinning face with smiling eyes", "flag: germany", "a red apple"]
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  ids = tokenizer(captions, padding="max_length", max_length=config.data.text.length, truncation=True,
                  return_tensors="pt")["input_ids"]
  ours_text = inputs.encode_captions(config.data, captions)
  np.testing.assert_array_equal(ids.numpy(), ours_text["text"])
  net = {"clip": transformers.CLIPModel, "siglip": transformers.SiglipModel}[name].from_pretrained(
      str(tmp_path / "hf")).eval()
  images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
  pixels = np.asarray(inputs.eval_stage({"image": images})["image"])
  pooled = lambda out: out if isinstance(out, torch.Tensor) else out.pooler_output
  with torch.no_grad():
    theirs_image = pooled(net.get_image_features(
        pixel_values=torch.from_numpy(pixels.copy()).permute(0, 3, 1, 2))).numpy()
    theirs_text = pooled(net.get_text_features(input_ids=ids)).numpy()
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  source = pretrained.open_workdir(str(workdir))
  params, extra = source.state()
  ours = source.method.embed(params, extra, dict(ours_text, image=pixels))
  np.testing.assert_allclose(unit(theirs_image), np.asarray(ours["image"]), atol=1e-4)
  np.testing.assert_allclose(unit(theirs_text), np.asarray(ours["text"]), atol=1e-4)
  assert float(net.logit_scale.detach().exp()) == pytest.approx(float(np.exp(params["logit_scale"])), rel=1e-6)


def test_prepared_pairs_are_the_usable_webdataset_pairs_in_array_record_shards(tmp_path):
  """`python -m ssl_jax.data.prepare_pairs`: the 3 usable pairs of the shards above in ArrayRecord shards of 2, the
  undecodable image and the empty caption left out and counted (or, with --bad_pairs=stop, named), read back by
  `sources.make("prepared_pairs")` as the webdataset source reads them; an existing output is not replaced; the
  embedded emoji prepare too."""
  import pickle
  from ssl_jax.data import prepare_pairs
  _img2dataset_folder(tmp_path / "wds")
  out = tmp_path / "ar"
  assert prepare_pairs.main([f"--input={tmp_path / 'wds'}", f"--out={out}", "--shard_size=2"]) == 0
  meta = json.loads((out / "train" / "meta.json").read_text())
  assert meta["pairs"] == 3 and meta["left_out"] == {"undecodable": 1, "empty_caption": 1}
  assert meta["shards"] == ["pairs-00000-of-00002.array_record", "pairs-00001-of-00002.array_record"]
  prepared = sources.make("prepared_pairs", "train", data_dir=str(out))
  web = sources.make("webdataset", "train", data_dir=str(tmp_path / "wds"))
  assert list(prepared.captions) == ["a red square", "a blue square", "a green square"]
  for i, j in ((0, 0), (1, 2), (2, 4)):
    (a, caption), (b, web_caption) = prepared.pair(i), web.pair(j)
    assert caption == web_caption and np.array_equal(a["image"], b["image"]) and a["bad"] == 0
  again = pickle.loads(pickle.dumps(prepared))                   # as Grain hands it to a worker process
  assert again.pair(1)[1] == "a blue square"
  assert prepare_pairs.main([f"--input={tmp_path / 'wds'}", f"--out={out}"]) == 2          # not replaced
  assert prepare_pairs.main([f"--input={tmp_path / 'wds'}", f"--out={tmp_path / 'x'}", "--bad_pairs=stop"]) == 2
  with pytest.raises(sources.BadPairError, match=r"00000\.tar: key '000001' has an image that does not decode"):
    prepare_pairs.prepare(str(tmp_path / "wds"), "train", str(tmp_path / "y"), bad_pairs="stop")
  assert not (tmp_path / "y" / "train").exists()
  meta = prepare_pairs.prepare("emoji", "test", str(tmp_path / "emoji"))
  emoji = sources.make("emoji", "test")
  pairs = sources.make("prepared_pairs", "test", data_dir=str(tmp_path / "emoji"))
  assert meta["pairs"] == len(emoji) == 768 and pairs.caption(5) == emoji.captions[5]
  assert np.array_equal(pairs[5]["image"], emoji[5]["image"])


def test_siglip_bias_starts_at_the_paper_value_or_at_the_prior_of_the_batch():
  """b = -10 (the paper's, the log prior odds of a positive at its batch of 32k), or with "prior" -log(B - 1) of the
  batch each loss call sees (-5.54 at 256); anything else is refused."""
  import dataclasses
  import math
  from ssl_jax import methods
  config, method, run = _build("siglip")
  assert method.logit_bias_init == -10.0 and method.logit_scale_init == 10.0 and method.logit_scale_max is None
  hyper = {k: v for k, v in config.method.to_dict().items() if k not in ("name", "logit_bias_init")}
  build = lambda bias, batch=256: methods.create("siglip", model=config.model.to_dict(),
                                                 run=dataclasses.replace(run, batch_size=batch),
                                                 logit_bias_init=bias, **hyper)
  assert build("prior").logit_bias_init == pytest.approx(-math.log(255)) == pytest.approx(-5.5413, abs=1e-4)
  assert build("prior", 32768).logit_bias_init == pytest.approx(-10.397, abs=1e-3)
  with pytest.raises(ValueError, match="'prior'"):
    build("zero")

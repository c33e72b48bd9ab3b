"""Speech: audio files, sources and crops (`ssl_jax.data.audio`), the embedded spoken words (`ssl_jax.data.speech`),
the log-mel baseline (`ssl_jax.ops.audio`), wav2vec 2.0's networks (`ssl_jax.models.audio`) against Hugging Face's
parameter count and outputs, and the method's objective, schedule, monitors and export (`ssl_jax.methods.wav2vec2`).
The contract test and the fault matrix cover `wav2vec2` by its registration."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.io import wavfile

from ssl_jax import losses
from ssl_jax import masking
from ssl_jax.data import audio
from ssl_jax.data import inputs
from ssl_jax.methods import contract
from ssl_jax.methods import wav2vec2
from ssl_jax.models import audio as audio_models
from ssl_jax.ops import audio as audio_ops

RNG = np.random.default_rng(0)


def _tone(rate: int, seconds: float, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
  t = np.arange(int(rate * seconds)) / rate
  return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int) -> float:
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
  return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def test_wav_and_flac_files_read_as_mono_float_at_the_run_rate(tmp_path):
  """16-, 24- and 32-bit, 8-bit (unsigned, centred at 128), 32-bit float and stereo WAV (scipy) and FLAC (soundfile):
  each a 440 Hz tone of amplitude 0.5, read at 16 kHz with its pitch, length and amplitude kept through the
  resampling."""
  soundfile = pytest.importorskip("soundfile")
  tone8k, tone22k = _tone(8000, 0.5), _tone(22050, 0.5)
  wavfile.write(tmp_path / "int16.wav", 8000, np.round(tone8k * 32767).astype(np.int16))
  wavfile.write(tmp_path / "uint8.wav", 16000, np.round(_tone(16000, 0.5) * 127 + 128).astype(np.uint8))
  wavfile.write(tmp_path / "float.wav", 16000, _tone(16000, 0.5))
  wavfile.write(tmp_path / "stereo.wav", 16000, np.stack([_tone(16000, 0.5), _tone(16000, 0.5)], axis=1))
  soundfile.write(tmp_path / "tone.flac", tone22k, 22050, subtype="PCM_16")
  soundfile.write(tmp_path / "int24.wav", _tone(16000, 0.5), 16000, subtype="PCM_24")
  soundfile.write(tmp_path / "int32.wav", _tone(16000, 0.5), 16000, subtype="PCM_32")
  for name in ("int16.wav", "uint8.wav", "float.wav", "stereo.wav", "tone.flac", "int24.wav", "int32.wav"):
    x = audio.read(str(tmp_path / name), 16000)
    assert x.dtype == np.float32 and x.ndim == 1 and len(x) == 8000, name
    assert abs(_peak_hz(x, 16000) - 440) < 3, name
    assert np.abs(x[400:-400]).max() == pytest.approx(0.5, abs=0.02), name


def _write_tree(root):
  """`root/train/{cat,dog}/*.wav` (2 + 1 files of 0.5 s at 16 kHz, one of them undecodable and one empty) and a
  fairseq manifest of the same files."""
  for rel, seconds in (("train/cat/a.wav", 0.5), ("train/cat/b.wav", 0.3), ("train/dog/c.wav", 0.5)):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, 16000, _tone(16000, seconds))
  (root / "train/dog/broken.wav").write_bytes(b"RIFF....not a wave file")
  wavfile.write(root / "train/dog/empty.wav", 16000, np.zeros(0, np.int16))
  (root / "train.tsv").write_text(f"{root / 'train'}\ncat/a.wav\t8000\ncat/b.wav\t4800\ndog/broken.wav\t8000\n"
                                  "dog/c.wav\t8000\n")


def test_manifests_and_folders_with_bad_files_skipped_or_named(tmp_path, monkeypatch):
  """fairseq's manifest (the root, then path and length; lines under `min_length` left out and counted) and class
  folders (labels by sorted class name): an undecodable or empty file is replaced by the next usable one and counted
  in `bad` ("skip"), or named in the error ("stop"); a relative `data_dir` works; a split takes a slice."""
  _write_tree(tmp_path)
  manifest = audio.make("manifest", "train", data_dir=str(tmp_path), min_length=6000)
  assert len(manifest) == 3 and manifest.left_out == 1 and manifest.num_classes is None
  first = manifest[0]
  assert first["audio"].shape == (8000,) and first["label"] == -1 and first["bad"] == 0
  replaced = manifest[1]                         # broken.wav -> c.wav
  assert replaced["bad"] == 1 and replaced["index"] == 1 and replaced["audio"].shape == (8000,)
  strict = audio.make("manifest", "train", data_dir=str(tmp_path), bad_audio="stop")
  with pytest.raises(audio.BadAudioError, match=r"broken\.wav cannot be read"):
    strict[2]
  short = audio.make("manifest", "train", data_dir=str(tmp_path), min_length=0, bad_audio="stop")
  assert len(short) == 4 and short[1]["audio"].shape == (4800,)
  folder = audio.make("audio_folder", "train", data_dir=str(tmp_path))
  assert folder.class_names == ("cat", "dog") and len(folder) == 5
  # cat/a, cat/b, dog/broken (-> dog/c), dog/c, dog/empty (-> the next usable file, wrapping round: cat/a)
  assert [int(folder[i]["label"]) for i in range(5)] == [0, 0, 1, 1, 0]
  assert [int(folder[i]["bad"]) for i in range(5)] == [0, 0, 1, 0, 1]
  with pytest.raises(audio.BadAudioError, match=r"empty\.wav is empty"):
    audio.make("audio_folder", "train", data_dir=str(tmp_path), bad_audio="stop")[4]
  monkeypatch.chdir(tmp_path.parent)
  assert len(audio.make("manifest", "train[1:3]", data_dir=tmp_path.name, min_length=6000)) == 2
  (tmp_path / "bad.tsv").write_text(f"{tmp_path}\ncat/a.wav 8000\n")
  with pytest.raises(ValueError, match=r"bad\.tsv:2: expected '<relative path>\\t<number of samples>'"):
    audio.make("manifest", "bad", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="wav2vec_manifest.py"):
    audio.make("manifest", "valid", data_dir=str(tmp_path))


def test_crops_pad_and_normalise_to_a_fixed_shape():
  long, short = RNG.normal(size=500).astype(np.float32) * 3 + 1, RNG.normal(size=120).astype(np.float32)
  crop = audio.AudioCrop(200)
  for seed in range(5):
    out = crop.random_map({"audio": long, "label": 1}, np.random.default_rng(seed))
    assert out["audio"].shape == (200,) and out["audio_length"] == 200 and out["label"] == 1
    start = int(np.flatnonzero(np.isclose(long, out["audio"][0]))[0])
    np.testing.assert_array_equal(out["audio"], long[start:start + 200])
  padded = crop.random_map({"audio": short}, np.random.default_rng(0))
  assert padded["audio_length"] == 120 and np.all(padded["audio"][120:] == 0)
  np.testing.assert_array_equal(padded["audio"][:120], short)
  centre = audio.AudioEvalView(200).map({"audio": long})
  np.testing.assert_array_equal(centre["audio"], long[150:350])
  normal = audio.AudioEvalView(600, normalize=True).map({"audio": long})
  real = normal["audio"][:normal["audio_length"]]
  assert abs(real.mean()) < 1e-5 and real.std() == pytest.approx(1.0, abs=1e-4)


def test_spoken_words_hold_out_speakers_and_balance_the_words():
  """The embedded set: 35 words, each spoken once by every speaker; the test speakers never speak in training; clips
  are speech (not silence) of 0.2-0.8 s at 16 kHz; the same speakers' sentences, labelled by their first word."""
  pytest.importorskip("espeakng_loader", reason="the optional `speech` extra: pip install -e '.[speech]'")
  from ssl_jax.data import speech
  arrays = speech.load()
  train, test = audio.make("spoken_words", "train"), audio.make("spoken_words", "test")
  assert (len(train), len(test)) == (2660, 700) and train.num_classes == 35 and train.class_names[0] == "backward"
  assert set(np.bincount(train.labels)) == {76} and set(np.bincount(test.labels)) == {20}
  speakers = arrays["speakers"]
  assert not set(speakers[~arrays["test"]]) & set(speakers[arrays["test"]])
  for i in (0, 1234, 2659):
    x = train[i]["audio"]
    assert x.dtype == np.float32 and 0.2 * 16000 <= len(x) <= 0.8 * 16000 and np.abs(x).max() > 0.1
  assert len(audio.make("spoken_words", "test[:64]")) == 64
  sentences = audio.make("spoken_sentences", "train")
  assert len(sentences) == 760 and len(audio.make("spoken_sentences", "test")) == 200
  first = sentences[0]
  assert sentences.class_names[first["label"]] == str(sentences.texts[0]).split()[0]
  assert 3 <= len(str(sentences.texts[0]).split()) <= 6 and 0.5 * 16000 < len(first["audio"]) < 3.5 * 16000


def test_synthesis_is_the_same_in_every_process():
  """espeak-ng seeds its noise with the time and keeps state between utterances: a fresh `Synthesiser` (a private copy
  of the library, its generator seeded per clip) says the same sequence identically, whatever was said before."""
  pytest.importorskip("espeakng_loader", reason="the optional `speech` extra")
  from ssl_jax.data import speech
  say = lambda engine: [engine.say(w, voice=v, rate=150, pitch=40, range=60, seed=i)
                        for i, (w, v) in enumerate([("seven", "en-us+f5"), ("marvin", "en+m3"), ("go", "en+f2")])]
  first = say(speech.Synthesiser())
  noisy = speech.Synthesiser()
  noisy.say("hello there", voice="en+f3", rate=170, pitch=60, range=40, seed=7)
  second = say(speech.Synthesiser())
  assert all(np.array_equal(a, b) for a, b in zip(first, second))
  assert not all(np.array_equal(a, b) for a, b in zip(say(noisy), first))    # the state a used engine carries


def test_audio_batches_follow_the_input_spec():
  pytest.importorskip("espeakng_loader", reason="the optional `speech` extra")
  from ssl_jax import config as config_lib
  data = config_lib.audio_data("spoken_words", max_length=9600)
  source = inputs.open_source(data, "train")
  batch = next(iter(inputs.train_stream(data, source, seed=0, global_batch_size=8)))
  spec = inputs.batch_spec(data, 8)
  assert {k: (v.shape, v.dtype) for k, v in batch.items() if k != "bad"} == \
      {k: (v.shape, v.dtype) for k, v in spec.items()}
  lengths = batch["audio_length"]
  assert np.all(lengths <= 9600) and np.all(lengths > 3000)
  assert all(np.all(batch["audio"][i, lengths[i]:] == 0) for i in range(8))
  stream, n = inputs.eval_stream(data, inputs.open_source(data, "test[:20]"), global_batch_size=8)
  evals = list(stream)
  assert n == 3 and [int(b["valid"].sum()) for b in evals] == [8, 8, 4]


def test_log_mel_statistics_see_the_tone_and_ignore_the_padding():
  """The raw-input baseline: a 1 kHz tone's energy is in the mel band around 1 kHz; padding after the utterance
  changes nothing."""
  tone = _tone(16000, 0.5, hz=1000.0)
  padded = np.zeros((2, 16000), np.float32)
  padded[0, :8000] = tone
  padded[1, :8000] = tone
  short = np.zeros((1, 12000), np.float32)
  short[0, :8000] = tone
  stats = np.asarray(audio_ops.log_mel_statistics(jnp.asarray(padded), jnp.array([8000, 8000])))
  again = np.asarray(audio_ops.log_mel_statistics(jnp.asarray(short), jnp.array([8000])))
  np.testing.assert_allclose(stats[0], again[0], rtol=1e-5, atol=1e-5)
  fb = audio_ops.mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40)
  centre = np.argmax(fb, axis=0) * 16000 / 512          # each band's peak frequency
  assert np.argmax(stats[0, :40]) == np.argmin(np.abs(centre - 1000))
  inside = (np.arange(257) * 16000 / 512 > centre[0]) & (np.arange(257) * 16000 / 512 < centre[-1])
  np.testing.assert_allclose(fb[inside].sum(axis=1), 1.0, atol=1e-5)     # neighbouring triangles sum to 1
  assert np.all(fb >= 0) and np.all(fb <= 1)


BASE = dict(arch="wav2vec2")


def _method(model=None, seconds=1.0, **hp):
  model = dict(BASE, **(model or {}))
  length = int(16000 * seconds)
  run = contract.RunInfo(inputs={"audio": jax.ShapeDtypeStruct((length,), jnp.float32),
                                 "audio_length": jax.ShapeDtypeStruct((), jnp.int32)})
  return wav2vec2.Wav2Vec2.create(model=model, run=run, **hp)


def test_base_has_the_papers_sizes():
  """BASE: 95,044,608 parameters in all and 94,371,712 in the encoder, as Hugging Face's `Wav2Vec2ForPreTraining`
  with its default (base) config; one frame per 20 ms (49 of a second, 2 of the shortest input)."""
  method = _method()
  batch = {"audio": jax.ShapeDtypeStruct((2, 16000), jnp.float32),
           "audio_length": jax.ShapeDtypeStruct((2,), jnp.int32)}
  params, _ = jax.eval_shape(lambda b: nn.unbox(method.init(jax.random.key(0), b)), batch)
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  assert count(params) == 95_044_608 and count(params["encoder"]) == 94_371_712
  assert audio_models.num_frames(16000) == 49 and audio_models.num_frames(400) == 1
  assert audio_models.num_frames(399) == 0 and int(audio_models.num_frames(jnp.array(16000))) == 49


SMALL = dict(conv_layers=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2, width=32, depth=2, num_heads=2,
             mlp_dim=64, pos_conv_kernel=8, pos_conv_groups=4)


def test_weight_norm_and_padding():
  """The position convolution is weight-normalised (scaling `weight_v` changes nothing; at init the kernel is
  `weight_v` itself); with LayerNorms in the feature encoder an utterance's features do not depend on how much
  padding follows it. (Each init and apply jitted: one compile each, not one per primitive.)"""
  x = jnp.asarray(RNG.normal(size=(2, 20, 32)), jnp.float32)
  conv = audio_models.PositionalConv(8, 4)
  v = jax.jit(conv.init)(jax.random.key(0), x)
  scaled = jax.tree_util.tree_map_with_path(
      lambda p, a: a * 3.0 if "weight_v" in jax.tree_util.keystr(p) else a, v)
  apply = jax.jit(conv.apply)
  np.testing.assert_allclose(apply(scaled, x), apply(v, x), rtol=1e-5, atol=1e-6)
  weights = nn.unbox(v)["params"]
  norm = np.sqrt((np.asarray(weights["weight_v"]) ** 2).sum(axis=(1, 2)))
  np.testing.assert_allclose(np.asarray(weights["weight_g"]), norm, rtol=1e-6)
  enc = audio_models.Wav2Vec2Encoder(**dict(SMALL, extractor_mode="layer_norm"))
  wave = RNG.normal(size=(1, 6400)).astype(np.float32)
  long = np.concatenate([wave, np.zeros((1, 3200), np.float32)], axis=1)
  variables = jax.jit(enc.init)(jax.random.key(1), jnp.asarray(long), jnp.array([6400]))
  apply = jax.jit(enc.apply)
  a = apply(variables, jnp.asarray(wave), jnp.array([6400]))
  b = apply(variables, jnp.asarray(long), jnp.array([6400]))
  t = a["tokens"].shape[1]
  assert float(b["frames"].sum()) == t and b["tokens"].shape[1] > t
  np.testing.assert_allclose(np.asarray(b["tokens"][:, :t]), np.asarray(a["tokens"]), atol=2e-5)
  np.testing.assert_allclose(np.asarray(b["pooled"]), np.asarray(a["pooled"]), atol=2e-5)


def test_gumbel_quantizer_is_one_hot_with_the_soft_gradient():
  logits = jnp.asarray(RNG.normal(size=(6, 2, 5)), jnp.float32)
  key = jax.random.key(0)
  hard = audio_models.gumbel_softmax_hard(key, logits, 0.7)
  assert set(np.unique(np.asarray(hard)).tolist()) == {0.0, 1.0} and np.all(np.asarray(hard).sum(-1) == 1)
  w = jnp.asarray(RNG.normal(size=(6, 2, 5)), jnp.float32)
  soft = lambda l: jax.nn.softmax((l + jax.random.gumbel(key, l.shape)) / 0.7, axis=-1)
  np.testing.assert_allclose(jax.grad(lambda l: jnp.sum(audio_models.gumbel_softmax_hard(key, l, 0.7) * w))(logits),
                             jax.grad(lambda l: jnp.sum(soft(l) * w))(logits), rtol=1e-5, atol=1e-7)
  q = audio_models.GumbelQuantizer(groups=2, num_vars=5, dim=8)
  feats = jnp.asarray(RNG.normal(size=(3, 4, 12)), jnp.float32)
  v = q.init(jax.random.key(1), feats)
  out, code_logits, codes = q.apply(v, feats)
  book = np.asarray(nn.unbox(v)["params"]["codevectors"]).reshape(2, 5, 4)
  expect = np.concatenate([book[0][np.argmax(code_logits[..., 0, :], -1)], book[1][np.argmax(code_logits[..., 1, :], -1)]],
                          axis=-1)
  np.testing.assert_allclose(np.asarray(out), expect, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(codes), np.argmax(np.asarray(code_logits), -1))


def test_monitors_match_fairseqs_formulas():
  """Accuracy as fairseq's criterion counts it (the target's logit the largest, all-equal rows wrong) and the code
  perplexity as its quantizer's (exp of the entropy of each group's histogram, summed), over masked steps only."""
  logits = np.array([[[3.0, 1.0, 2.0], [1.0, 2.0, 0.0], [1.0, 1.0, 1.0], [5.0, 0.0, 0.0]]], np.float32)
  mask = np.array([[1, 1, 1, 0]], np.float32)
  assert float(losses.contrastive_accuracy(jnp.asarray(logits), jnp.asarray(mask))) == pytest.approx(1 / 3)
  codes = RNG.integers(0, 6, (4, 10, 2))
  keep = RNG.random((4, 10)) < 0.7
  expected = 0.0
  for g in range(2):
    hist = np.bincount(codes[..., g][keep], minlength=6) / keep.sum()
    expected += np.exp(-np.sum(hist * np.log(hist + 1e-7)))
  got = losses.code_perplexity(jnp.asarray(codes), 6, jnp.asarray(keep))
  assert float(got) == pytest.approx(expected, rel=1e-5)
  assert float(losses.code_perplexity(jnp.zeros((5, 2), jnp.int32), 6)) == pytest.approx(2.0, rel=1e-5)


def test_objective_weights_temperature_masks_and_collapse_warning():
  """loss = L_m + alpha L_d + lambda L_f (here alpha 0.1, lambda 10), each term reported; the Gumbel temperature
  2 -> 0.5 by 0.999995 per update; spans never reach the padding; a collapsed codebook warns."""
  method = _method(SMALL, seconds=0.6, mask_length=4, num_negatives=10, latent_vars=16, latent_dim=16, final_dim=16)
  lengths = np.array([9600, 6000, 4000, 9600], np.int32)
  waves = np.where(np.arange(9600)[None] < lengths[:, None], RNG.normal(size=(4, 9600)) * 0.1, 0).astype(np.float32)
  batch = {"audio": jnp.asarray(waves), "audio_length": jnp.asarray(lengths)}
  params, _ = jax.jit(method.init)(jax.random.key(0), batch)
  params = nn.unbox(params)
  loss, (m, _) = jax.jit(method.loss)(params, {}, batch, jax.random.key(1), 0)
  assert float(loss) == pytest.approx(float(m["contrastive_loss"] + 0.1 * m["diversity_loss"]
                                            + 10 * m["feature_penalty"]), rel=1e-6)
  assert float(m["monitor/gumbel_temperature"]) == 2.0
  assert float(method.temperature(100_000)) == pytest.approx(2 * 0.999995 ** 100_000, rel=1e-5)
  assert float(method.temperature(10_000_000)) == 0.5
  assert 0 < float(m["monitor/masked_fraction"]) < 1 and 0 <= float(m["monitor/contrastive_accuracy"]) <= 1
  assert float(m["monitor/prob_perplexity"]) == pytest.approx(32 * (1 - float(m["diversity_loss"])), rel=1e-5)
  frames = audio_models.num_frames(jnp.asarray(lengths))
  mask = np.asarray(jax.jit(method._mask)(jax.random.key(2), batch))
  assert all(mask[i, int(frames[i]):].sum() == 0 and mask[i].sum() >= 4 for i in range(4))
  warning, = method.health_warnings({"monitor/code_perplexity": 2.5})
  assert "codebook collapse" in warning and "diversity_weight" in warning
  assert method.health_warnings({"monitor/code_perplexity": 40.0}) == ()
  with pytest.raises(ValueError, match="mask span"):
    _method(SMALL, seconds=0.1)
  with pytest.raises(ValueError, match="speech"):
    wav2vec2.Wav2Vec2.create(model=BASE, run=contract.RunInfo(inputs={"image": jax.ShapeDtypeStruct((8, 8, 3),
                                                                                                     jnp.float32)}))


def test_span_masks_follow_fairseq_per_real_length():
  """fairseq's `compute_mask_indices` with a padding mask: `int(p L / M + u)` spans (at least `min_masks`) starting in
  [0, L - M - 1], counted on each sequence's real length L."""
  lengths = jnp.array([200, 120, 60, 200])
  m = np.asarray(masking.span_masking(jax.random.key(0), 4, 200, mask_prob=0.65, span_length=10, lengths=lengths))
  for i, n in enumerate(np.asarray(lengths)):
    assert m[i, n:].sum() == 0 and m[i, n - 1] == 0          # the last start is L - M - 1: the last step never masked
  big = np.asarray(masking.span_masking(jax.random.key(1), 512, 200, lengths=jnp.full((512,), 120)))
  assert 0.45 < big[:, :120].mean() < 0.55 and big[:, 120:].sum() == 0


def test_hugging_face_export_gives_our_hidden_states(tmp_path):
  """`export --format=hf` of a (shrunk) wav2vec 2.0 run: transformers loads `Wav2Vec2ForPreTraining` and
  `Wav2Vec2Model` from the directory with every weight used; the hidden states equal ours within 1e-4, and so do the
  projected context vectors and quantized targets of the pretraining head (evaluation mode: the argmax codewords)."""
  torch = pytest.importorskip("torch", reason="the optional `export` extra: pip install -e '.[export]'")
  transformers = pytest.importorskip("transformers", reason="the optional `export` extra")
  pytest.importorskip("espeakng_loader", reason="the optional `speech` extra")
  from ssl_jax import export
  from ssl_jax import pretrained
  from ssl_jax import train
  from test_fault_matrix import shrunk
  config = shrunk("wav2vec2")
  config.debug.nonfinite_at_steps = ()
  config.eval.evaluators = {}
  config.eval.update(dict(init_baseline=False, report=False))
  workdir = tmp_path / "run"
  train.run(config, str(workdir))
  assert export.main([f"--workdir={workdir}", "--format=hf", f"--out={tmp_path / 'hf'}"]) == 0
  net, info = transformers.Wav2Vec2ForPreTraining.from_pretrained(str(tmp_path / "hf"), output_loading_info=True)
  assert not any(info.values()), info
  base = transformers.Wav2Vec2Model.from_pretrained(str(tmp_path / "hf")).eval()
  source = pretrained.open_workdir(str(workdir))
  params, _ = source.state()
  waves = RNG.normal(size=(2, config.data.audio.max_length)).astype(np.float32) * 0.1
  ours = source.method.model.apply({"params": params}, jnp.asarray(waves), jnp.full((2,), waves.shape[1]), None)
  with torch.no_grad():
    hidden = base(torch.from_numpy(waves)).last_hidden_state.numpy()
    head = net.eval()(torch.from_numpy(waves))
  np.testing.assert_allclose(hidden, np.asarray(ours["tokens"]), atol=1e-4)
  np.testing.assert_allclose(head.projected_states.numpy(), np.asarray(ours["context"]), atol=1e-4)
  np.testing.assert_allclose(head.projected_quantized_states.numpy(), np.asarray(ours["quantized"]), atol=1e-4)
  assert os.path.exists(tmp_path / "hf" / "preprocessor_config.json")
  # The contrastive loss against Hugging Face's (fairseq's formulation): the same masked frames and distractors,
  # the mask embedding in the masked frames, the argmax codewords; HF sums the cross-entropy over masked frames.
  method, k = source.method, 7
  mask = method._mask(jax.random.key(5), {"audio": jnp.asarray(waves), "audio_length": jnp.full((2,), waves.shape[1])})
  masked = source.method.model.apply({"params": params}, jnp.asarray(waves), jnp.full((2,), waves.shape[1]), mask)
  logits = losses.wav2vec2_contrastive_logits(masked["context"], masked["quantized"], mask, jax.random.key(6), k, 0.1)
  ours_loss = float(jnp.sum((jax.nn.logsumexp(logits, -1) - logits[..., 0]) * mask))
  positions, _ = losses.sample_negative_positions(jax.random.key(6), mask, k)
  flat = np.asarray(positions) + np.arange(2)[:, None, None] * mask.shape[1]      # HF indexes the flattened batch
  net.config.contrastive_logits_temperature = 0.1
  with torch.no_grad():
    theirs = net(torch.from_numpy(waves), mask_time_indices=torch.from_numpy(np.asarray(mask) > 0),
                 sampled_negative_indices=torch.from_numpy(flat))
  assert float(theirs.contrastive_loss) == pytest.approx(ours_loss, rel=1e-4)


def test_layer_drop_skips_whole_blocks_in_every_execution_mode():
  """LayerDrop (wav2vec 2.0's `encoder_layerdrop`): at probability 1 every block is skipped in training (the input
  comes out unchanged), at 0.5 some are, the same ones in the plain, rematerialised and scanned loops; at evaluation
  nothing is dropped."""
  from ssl_jax.models import transformer
  x = jnp.asarray(RNG.normal(size=(2, 5, 16)), jnp.float32)
  style = transformer.BlockStyle(post_norm=True, eps=1e-5, init_std=0.02)
  make = lambda p, **kw: transformer.Transformer(depth=4, num_heads=2, mlp_dim=32, final_norm=False, style=style,
                                                 layer_drop=p, **kw)
  variables = jax.jit(make(0.0).init)(jax.random.key(0), x)
  run = lambda p, train=True, **kw: jax.jit(lambda v: make(p, **kw).apply(
      v, x, train=train, rngs={"dropout": jax.random.key(3)}))(variables)
  np.testing.assert_array_equal(run(1.0), x)
  plain = run(0.5)
  for kw in (dict(remat="full"), dict(remat="full", scan=True)):
    np.testing.assert_allclose(run(0.5, **kw), plain, atol=1e-6)
  assert not np.allclose(plain, x) and not np.allclose(plain, run(0.0))
  np.testing.assert_array_equal(run(1.0, train=False), run(0.0, train=False))

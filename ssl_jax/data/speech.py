"""The embedded speech set: spoken words and sentences synthesised by espeak-ng at preparation time, across accents
and voices.

    python -m ssl_jax.data.speech               # synthesises into ~/.cache/ssl_jax/speech (once; later runs reuse it)
    python -m ssl_jax.data.speech --out=DIR

`config.data.name = "spoken_words"` or `"spoken_sentences"` reads it (preparing it first if the cache is missing;
`config.data.data_dir` overrides the cache folder). Nothing is downloaded: the speech engine is pip `espeakng-loader`, which bundles the
espeak-ng library and its voices and is called here through ctypes (`pip install 'ssl_jax[speech]'`). espeak-ng is
GPL-3.0: it is an optional extra, used only to make the data on the user's machine; nothing of it is imported by
the training code, and the clips are never committed here.

What it holds (espeakng-loader 0.2.4): the 35 words of Speech Commands v2 (Warden 2018: "yes", "no", the digits,
"marvin", ...; `WORDS`, the labels in this order), each spoken once by each of 96 speakers: 8 English accents of
espeak-ng (`ACCENTS`: America, Great Britain, Caribbean, Scotland, Received Pronunciation, Lancaster, West Midlands,
New York City) x 12 voice variants (`VARIANTS`: seven male and five female formant sets), each speaker with a rate
(130-190 words/min), pitch (25-75) and pitch range (30-90) of its own, drawn once from a seeded generator. 3,360
clips, 16 kHz mono int16, trimmed to the speech with 20 ms of silence each side (0.2-0.8 s).
- `label`: the word (35 classes, balanced; chance is 1/35).
- split: "test" holds every clip of 20 held-out speakers (`NUM_TEST_SPEAKERS`, drawn with seed 1), "train" the other
  76 speakers' (2,660 clips, 700 test): a probe on the test split measures words spoken by voices the encoder never
  heard.
- sentences (`spoken_sentences`): every speaker also says `SENTENCES_PER_SPEAKER` = 10 sentences of 3 to 6 of the
  words in a row ("sheila go left seven"), drawn per speaker from a seeded generator and spoken as one phrase, with
  espeak-ng's prosody (960 clips of about 1-3 s; the same speakers held out). `label`: the sentence's first word;
  the text is kept (`sentence_texts`). Longer utterances for pretraining, where a masked frame has more context.
- Synthesis: espeak-ng at its native 22,050 Hz, resampled to 16 kHz by scipy's polyphase filter (`resample_poly`,
  320/441).
"""

import argparse
import ctypes
import fcntl
import functools
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

WORDS = ("backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go", "happy",
         "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop",
         "three", "tree", "two", "up", "visual", "wow", "yes", "zero")
ACCENTS = ("en-us", "en", "en-029", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SAMPLE_RATE = 16000
NUM_TEST_SPEAKERS = 20
SENTENCES_PER_SPEAKER = 10
_ESPEAK_RATE = 22050
_MARGIN = 0.02                       # seconds of silence kept before and after the speech


def _missing_package_error(e):
  return ImportError(f"the embedded speech set needs pip package espeakng-loader, which is not installed ({e}): run "
                     "`pip install 'ssl_jax[speech]'` (espeak-ng, GPL-3.0, used only to synthesise the data).")


def speakers() -> list[dict]:
  """The 96 speakers: accent x variant, each with its rate, pitch and range (seeded), and whether it is held out."""
  rng = np.random.default_rng(0)
  out = [dict(accent=a, variant=v) for a in ACCENTS for v in VARIANTS]
  for s in out:
    s.update(rate=int(rng.integers(130, 191)), pitch=int(rng.integers(25, 76)), range=int(rng.integers(30, 91)))
  for i in np.random.default_rng(1).choice(len(out), NUM_TEST_SPEAKERS, replace=False):
    out[i]["test"] = True
  return out


def sentences(speaker_index: int) -> list[tuple[str, int]]:
  """The `SENTENCES_PER_SPEAKER` sentences of speaker `speaker_index`: (text, index of its first word in `WORDS`)."""
  rng = np.random.default_rng(1000 + speaker_index)
  out = []
  for _ in range(SENTENCES_PER_SPEAKER):
    words = rng.choice(len(WORDS), int(rng.integers(3, 7)))
    out.append((" ".join(WORDS[w] for w in words), int(words[0])))
  return out


class Synthesiser:
  """espeak-ng through ctypes (one per process: the library keeps global state). `say(text, voice, rate, pitch,
  range, seed) -> int16 [n]` at 22,050 Hz.

  A clip depends on more than its text and voice: the breathy variants (f2, f3, f5) draw noise from espeak-ng's own
  generator, which it seeds with the time, and the pitch flutter and noise filters keep their state from one
  utterance to the next (even across `espeak_Terminate` and a new initialisation). So `say` seeds the generator
  first (`espeak_ng_SetRandSeed(seed)`), and each `Synthesiser` loads a private copy of the library, whose state
  starts afresh: the same sequence of `say` calls gives the same clips in every process and on every run."""

  def __init__(self):
    try:
      import espeakng_loader
    except ImportError as e:
      raise _missing_package_error(e) from None
    self._copy = tempfile.TemporaryDirectory(prefix="ssl_jax_espeak_")
    private = os.path.join(self._copy.name, "libespeak-ng.so")
    shutil.copy(espeakng_loader.get_library_path(), private)    # a new file: the loader maps fresh static state
    self.lib = ctypes.CDLL(private)
    rate = self.lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)   # synchronous, no playback
    if rate != _ESPEAK_RATE:
      raise RuntimeError(f"espeak-ng started at {rate} Hz, expected {_ESPEAK_RATE} (initialisation failed?).")
    self.chunks = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    self.callback = callback_type(self._collect)          # kept alive as long as the library may call it
    self.lib.espeak_SetSynthCallback(self.callback)

  def _collect(self, wav, n, events):
    del events
    if n > 0:
      self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
    return 0

  def say(self, text: str, *, voice: str, rate: int, pitch: int, range: int, seed: int = 0) -> np.ndarray:
    self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise ValueError(f"espeak-ng has no voice {voice!r}.")
    for parameter, value in ((1, rate), (3, pitch), (4, range)):       # espeakRATE, espeakPITCH, espeakRANGE
      self.lib.espeak_SetParameter(parameter, value, 0)
    self.chunks = []
    data = text.encode() + b"\0"
    self.lib.espeak_Synth(data, len(data), 0, 0, 0, 1, None, None)     # espeakCHARS_UTF8
    self.lib.espeak_Synchronize()
    return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


def trim(audio: np.ndarray, sample_rate: int, *, threshold: float = 0.02, margin: float = _MARGIN) -> np.ndarray:
  """The clip from `margin` seconds before the first sample above `threshold` x its peak to `margin` after the last."""
  loud = np.flatnonzero(np.abs(audio.astype(np.float32)) > threshold * max(1, np.abs(audio).max()))
  if not len(loud):
    return audio[:0]
  pad = int(margin * sample_rate)
  return audio[max(0, loud[0] - pad):loud[-1] + pad + 1]


def to_16k(audio: np.ndarray) -> np.ndarray:
  """int16 at 22,050 Hz -> int16 at 16 kHz (scipy's polyphase resampling, 320 / 441)."""
  from scipy import signal
  out = signal.resample_poly(audio.astype(np.float32), SAMPLE_RATE // 50, _ESPEAK_RATE // 50)
  return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def default_dir() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ssl_jax", "speech")


def versions() -> dict:
  from importlib import metadata
  try:
    return {p: metadata.version(p) for p in ("espeakng-loader", "scipy")}
  except metadata.PackageNotFoundError as e:
    raise _missing_package_error(e) from None


def cache_path(directory: str) -> str:
  v = versions()
  return os.path.join(directory, f"speech_espeakng-{v['espeakng-loader']}_scipy-{v['scipy']}.npz")


def prepare(directory: str | None = None, *, verbose: bool = False) -> str:
  """Synthesises the set into `directory` (default `default_dir()`) unless it is there already; returns the file.

  One `.npz` per package versions: `audio int16 [total]` (every word clip, one after another), `offsets int64 [N + 1]`
  (clip i is `audio[offsets[i]:offsets[i + 1]]`), `labels int32 [N]` (index into `WORDS`), `test bool [N]`,
  `speakers int32 [N]` (index into `speakers()`); the same with the prefix `sentence_` for the sentences, with
  `sentence_texts str [M]`; and `meta.json` beside it. Written under a temporary name and
  renamed, under a lock file, so that concurrent preparations (test workers, the processes of one run) synthesise
  once and never read a partial file.
  """
  directory = directory or default_dir()
  path = cache_path(directory)
  if os.path.exists(path):
    return path
  os.makedirs(directory, exist_ok=True)
  with open(path[:-len(".npz")] + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)          # one process synthesises; the others wait for it, then read its file
    if not os.path.exists(path):
      _synthesise_into(path, verbose)
  return path


def _clips(engine, items, first_seed: int = 0):
  """(`{audio, offsets, labels, test, speakers}` arrays) of `items`: (text, label, speaker index, speaker); item n
  synthesised with espeak-ng's noise generator seeded by `first_seed + n`."""
  clips, labels, test, who = [], [], [], []
  for n, (text, label, s_index, s) in enumerate(items):
    audio = trim(to_16k(engine.say(text, voice=f"{s['accent']}+{s['variant']}", rate=s["rate"], pitch=s["pitch"],
                                   range=s["range"], seed=first_seed + n)), SAMPLE_RATE)
    if not len(audio):
      raise RuntimeError(f"espeak-ng produced silence for {text!r} in voice {s}.")
    clips.append(audio)
    labels.append(label)
    test.append(bool(s.get("test")))
    who.append(s_index)
  offsets = np.concatenate([[0], np.cumsum([len(c) for c in clips])]).astype(np.int64)
  return dict(audio=np.concatenate(clips), offsets=offsets, labels=np.array(labels, np.int32), test=np.array(test),
              speakers=np.array(who, np.int32))


def _seconds(offsets):
  seconds = np.diff(offsets) / SAMPLE_RATE
  return dict(min=round(float(seconds.min()), 3), mean=round(float(seconds.mean()), 3),
              max=round(float(seconds.max()), 3))


def _synthesise_into(path, verbose):
  start = time.time()
  engine, everyone = Synthesiser(), speakers()
  words = _clips(engine, [(w, i, k, s) for k, s in enumerate(everyone) for i, w in enumerate(WORDS)])
  said = [(text, label, k, s) for k, s in enumerate(everyone) for text, label in sentences(k)]
  arrays = dict(words, **{f"sentence_{k}": v for k, v in _clips(engine, said, first_seed=1_000_000).items()},
                sentence_texts=np.array([text for text, *_ in said]))
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  np.savez(tmp, **arrays)
  meta = dict(versions=versions(), clips=len(words["labels"]), train=int((~words["test"]).sum()),
              test=int(words["test"].sum()), sentences=len(said), sample_rate=SAMPLE_RATE, words=list(WORDS),
              speakers=everyone, clip_seconds=_seconds(words["offsets"]),
              sentence_seconds=_seconds(arrays["sentence_offsets"]), seconds=round(time.time() - start, 1))
  with open(f"{path}.{os.getpid()}.tmp.json", "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(f"{path}.{os.getpid()}.tmp.json", path[:-len(".npz")] + ".json")
  os.replace(tmp, path)
  if verbose:
    print(f"synthesised {meta['clips']} clips of {len(WORDS)} words by {len(everyone)} speakers ({meta['train']} "
          f"train, {meta['test']} test; {meta['clip_seconds']['min']}-{meta['clip_seconds']['max']} s) and "
          f"{meta['sentences']} sentences ({meta['sentence_seconds']['min']}-{meta['sentence_seconds']['max']} s) in "
          f"{meta['seconds']} s: {path}")


@functools.cache
def load(directory: str | None = None) -> dict:
  """The prepared arrays (see `prepare`), preparing them first when the cache is missing."""
  path = prepare(directory)
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=None, help=f"folder of the cache (default {default_dir()})")
  args = parser.parse_args(argv)
  directory = args.out or default_dir()
  path = cache_path(directory)
  if os.path.exists(path):
    print(f"already prepared: {path}")
    return
  prepare(directory, verbose=True)


if __name__ == "__main__":
  sys.exit(main())

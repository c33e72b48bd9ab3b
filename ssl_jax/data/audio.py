"""Audio for speech pretraining (wav2vec 2.0): readers, random-access sources, and the per-example Grain maps.

Sources are sequences of `{"audio": float32 [n] in [-1, 1] at the run's sample rate, "label": int32, "index": int32,
"bad": int32}` (utterances of any length; `bad` counts unreadable files passed over), with `num_classes` and
`class_names` where labelled:

- `spoken_words`: the embedded speech set (`ssl_jax.data.speech`: 35 words spoken by 96 synthetic speakers; test
  speakers held out), labelled by the word; `spoken_sentences`: the same speakers' sentences of 3-6 of the words,
  labelled by their first word.
- `manifest`: fairseq's manifests, `<data_dir>/<split>.tsv`: the first line is the audio root, every other line
  `<path relative to it>\t<number of samples>` (what `wav2vec_manifest.py` writes for LibriSpeech); unlabelled.
- `audio_folder`: `<data_dir>/<split>/<class>/<file>` (the Speech Commands layout: labels are the class folders in
  sorted order), or the files directly in `<data_dir>/<split>/` (unlabelled, -1).

Files: WAV through `scipy.io.wavfile` (8/16/24/32-bit integer and float PCM); FLAC, OGG and the other formats of
libsndfile through `soundfile` (a dependency: its PyPI wheels bundle libsndfile with FLAC). Several channels are
averaged to mono; other sample rates are resampled by scipy's polyphase filter (`resample_poly`). A file that cannot
be read, is empty or is shorter than `min_length` samples after resampling is, by `bad_audio`, replaced by the next
usable one and counted ("skip"), or an error naming it ("stop"). Paths may be local, `~`, relative or a URL
(`etils.epath`: gs://).

The maps (`AudioCrop`, `AudioEvalView`) give every example a fixed shape: `audio` float32 `[max_length]` (a random
crop of a longer utterance, the utterance zero-padded after its end otherwise) and `audio_length` int32 (the real
samples at the start), after optional per-utterance normalisation to zero mean and unit variance over the whole
utterance before the crop (fairseq's `normalize=True`, the wav2vec 2.0 large configs; the base configs feed the
waveform as it is).
"""

import io
import math
import os

import grain
import numpy as np

from ssl_jax.data import sources
from ssl_jax.runtime import workdir as workdir_lib

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".aiff", ".aif")
SOURCES = ("spoken_words", "spoken_sentences", "manifest", "audio_folder")


class BadAudioError(ValueError):
  """An audio file that cannot be used (unreadable, empty, too short), under `bad_audio="stop"`."""


def decode(data: bytes, name: str) -> tuple[np.ndarray, int]:
  """The samples of an encoded file: (float32 `[n]` mono in [-1, 1], sample rate). `name` picks the reader by its
  extension (".wav": scipy; others: soundfile)."""
  if name.lower().endswith(".wav"):
    from scipy.io import wavfile
    rate, x = wavfile.read(io.BytesIO(data))
    if np.issubdtype(x.dtype, np.integer):
      info = np.iinfo(x.dtype)
      x = (x.astype(np.float32) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)   # uint8 centred
    x = x.astype(np.float32)
  else:
    import soundfile
    x, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=False)
  if x.ndim == 2:
    x = x.mean(axis=1)
  return x.astype(np.float32), int(rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
  """`x` at `rate` Hz -> `target` Hz by polyphase filtering (scipy `resample_poly`, the ratio in lowest terms)."""
  if rate == target:
    return x
  from scipy import signal
  g = math.gcd(rate, target)
  return signal.resample_poly(x, target // g, rate // g).astype(np.float32)


def read(path: str, sample_rate: int) -> np.ndarray:
  """A file (local path or URL) as float32 `[n]` mono at `sample_rate`."""
  from etils import epath
  data = epath.Path(path).read_bytes()
  x, rate = decode(data, os.fspath(path))
  return resample(x, rate, sample_rate)


class _FileSource:
  """Utterances read from files by index: `files[i] = (path, label)`; bad files replaced or raised (module doc)."""

  def __init__(self, files, *, sample_rate: int, min_length: int, bad_audio: str, where: str):
    if bad_audio not in ("skip", "stop"):
      raise ValueError(f"config.data.audio.bad_audio must be 'skip' or 'stop', got {bad_audio!r}.")
    if not files:
      raise ValueError(f"{where} lists no audio files.")
    self.files, self.sample_rate, self.min_length, self.bad_audio = files, sample_rate, max(1, min_length), bad_audio

  def __len__(self):
    return len(self.files)

  def __getitem__(self, i):
    for bad in range(len(self.files)):
      path, label = self.files[(int(i) + bad) % len(self.files)]
      try:
        audio = read(path, self.sample_rate)
        why = None if len(audio) >= self.min_length else (
            "is empty" if not len(audio) else f"has {len(audio)} samples at {self.sample_rate} Hz, fewer than "
            f"config.data.audio.min_length={self.min_length}")
      except (OSError, ValueError, RuntimeError, EOFError) as e:   # scipy: ValueError; soundfile: RuntimeError
        why = f"cannot be read ({type(e).__name__}: {e})"
      if why is None:
        return {"audio": audio, "label": np.int32(label), "index": np.int32(i), "bad": np.int32(bad)}
      if self.bad_audio == "stop":
        raise BadAudioError(f"{path} {why} (config.data.audio.bad_audio='stop'; 'skip' replaces and counts such "
                            "files)")
    raise BadAudioError(f"no usable audio file among the {len(self.files)} of {self.files[0][0]}'s source.")


class ManifestSource(_FileSource):
  """fairseq's manifest (`<root>` then `<relative path>\t<samples>` lines): unlabelled utterances. Lines whose
  stated length is below `min_length` (at the manifest's own rate, which the numbers are in) are left out when the
  manifest is read, as fairseq's `min_sample_size` does; `left_out` counts them."""

  def __init__(self, path: str, *, sample_rate: int, min_length: int = 0, bad_audio: str = "skip"):
    from etils import epath
    path = workdir_lib.absolute(path)
    if not epath.Path(path).exists():
      raise FileNotFoundError(f"no manifest {path} (fairseq's format: the audio root on the first line, then "
                              "'<relative path>\\t<number of samples>' lines; examples/wav2vec/wav2vec_manifest.py "
                              "writes it).")
    lines = epath.Path(path).read_text().splitlines()
    if not lines:
      raise ValueError(f"manifest {path} is empty (its first line must be the audio root).")
    root, files, self.left_out = lines[0].strip(), [], 0
    for n, line in enumerate(lines[1:], start=2):
      if not line.strip():
        continue
      fields = line.split("\t")
      if len(fields) < 2 or not fields[1].strip().isdigit():
        raise ValueError(f"{path}:{n}: expected '<relative path>\\t<number of samples>', got {line!r}.")
      if int(fields[1]) < min_length:
        self.left_out += 1
        continue
      files.append((os.path.join(root, fields[0]), -1))
    super().__init__(files, sample_rate=sample_rate, min_length=min_length, bad_audio=bad_audio, where=path)
    self.num_classes, self.class_names = None, None


class AudioFolderSource(_FileSource):
  """`root/<class>/<file>` (labels: the class folders, sorted) or `root/<file>` (unlabelled)."""

  def __init__(self, root: str, *, sample_rate: int, min_length: int = 0, bad_audio: str = "skip"):
    root = workdir_lib.absolute(root)
    if not os.path.isdir(root):
      raise FileNotFoundError(f"audio folder {root} does not exist (set config.data.data_dir to the folder that "
                              "holds one directory per split, each with one directory per class or the files).")
    audio = lambda d: sorted(f for f in os.listdir(d) if f.lower().endswith(AUDIO_EXTENSIONS))
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if classes:
      files = [(os.path.join(root, c, f), i) for i, c in enumerate(classes) for f in audio(os.path.join(root, c))]
      self.num_classes, self.class_names = len(classes), tuple(classes)
    else:
      files = [(os.path.join(root, f), -1) for f in audio(root)]
      self.num_classes, self.class_names = None, None
    if not files:
      raise ValueError(f"audio folder {root} holds no audio files (expected {root}/<class>/<file> or {root}/<file> "
                       f"with an extension of {AUDIO_EXTENSIONS}).")
    super().__init__(files, sample_rate=sample_rate, min_length=min_length, bad_audio=bad_audio, where=root)


class SpokenSource:
  """The embedded speech set's clips of one split (`ssl_jax.data.speech`), float32 at 16 kHz: its words
  (`kind="words"`) or its sentences ("sentences"), labelled by the (first) word."""

  def __init__(self, split: str, data_dir: str | None = None, *, kind: str = "words", sample_rate: int = 16000,
               part: slice = slice(None)):
    from ssl_jax.data import speech
    name = f"spoken_{kind}"
    if sample_rate != speech.SAMPLE_RATE:
      raise ValueError(f"{name} is made at {speech.SAMPLE_RATE} Hz; config.data.audio.sample_rate is "
                       f"{sample_rate}: set it to {speech.SAMPLE_RATE}.")
    if split not in ("train", "test"):
      raise ValueError(f"{name} has splits ['test', 'train'], not {split!r}.")
    arrays = speech.load(data_dir)
    prefix = "" if kind == "words" else "sentence_"
    chosen = np.flatnonzero(arrays[prefix + "test"] == (split == "test"))[part]
    self.audio, self.offsets = arrays[prefix + "audio"], arrays[prefix + "offsets"]
    self.clips, self.labels = chosen, arrays[prefix + "labels"][chosen]
    self.texts = arrays["sentence_texts"][chosen] if prefix else None
    self.num_classes, self.class_names = len(speech.WORDS), speech.WORDS

  def __len__(self):
    return len(self.clips)

  def __getitem__(self, i):
    c = self.clips[i]
    audio = self.audio[self.offsets[c]:self.offsets[c + 1]].astype(np.float32) / 32768.0
    return {"audio": audio, "label": np.int32(self.labels[i]), "index": np.int32(i), "bad": np.int32(0)}


def make(name: str, split: str, *, data_dir: str | None = None, sample_rate: int = 16000, min_length: int = 0,
         bad_audio: str = "skip"):
  """Opens an audio source by name (module docstring): `spoken_words` / `spoken_sentences` (their cache in
  `data_dir`), `manifest`
  (`data_dir/<split>.tsv`) or `audio_folder` (`data_dir/<split>/`); `split` may take a slice, "train[:64]"."""
  data_dir = workdir_lib.absolute(data_dir) if data_dir else None
  split, part = sources.split_slice(split)
  if name in ("spoken_words", "spoken_sentences"):
    return SpokenSource(split, data_dir, kind=name[len("spoken_"):], sample_rate=sample_rate, part=part)
  if name in ("manifest", "audio_folder") and not data_dir:
    raise ValueError(f"data.name={name!r} needs config.data.data_dir (the folder of "
                     f"{'<split>.tsv manifests' if name == 'manifest' else '<split>/<class>/<file>'}).")
  if name == "manifest":
    source = ManifestSource(os.path.join(data_dir, f"{split}.tsv"), sample_rate=sample_rate, min_length=min_length,
                            bad_audio=bad_audio)
  elif name == "audio_folder":
    source = AudioFolderSource(os.path.join(data_dir, split), sample_rate=sample_rate, min_length=min_length,
                               bad_audio=bad_audio)
  else:
    raise ValueError(f"unknown audio data set {name!r}; use one of {SOURCES}.")
  source.files = source.files[part]
  if not source.files:
    raise ValueError(f"split {split}[{part.start or ''}:{part.stop or ''}] of {data_dir} is empty.")
  return source


def normalize(audio: np.ndarray) -> np.ndarray:
  """Zero mean and unit variance over the utterance (fairseq's `F.layer_norm(wav, wav.shape)`, eps 1e-5)."""
  return ((audio - audio.mean()) / np.sqrt(audio.var() + 1e-5)).astype(np.float32)


def fixed_length(audio: np.ndarray, max_length: int, start: int) -> dict:
  """`{"audio": float32 [max_length], "audio_length": int32}`: `audio[start:start + max_length]`, zero-padded."""
  crop = audio[start:start + max_length]
  out = np.zeros(max_length, np.float32)
  out[:len(crop)] = crop
  return {"audio": out, "audio_length": np.int32(len(crop))}


class AudioCrop(grain.transforms.RandomMap):
  """The training map: (normalised, if `normalize`) utterance -> a uniformly random `max_length` crop, or the whole
  utterance zero-padded (`fixed_length`); other fields kept."""

  def __init__(self, max_length: int, normalize: bool = False):
    self.max_length, self.normalize = max_length, normalize

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    audio = normalize(element["audio"]) if self.normalize else element["audio"]
    start = int(rng.integers(0, len(audio) - self.max_length + 1)) if len(audio) > self.max_length else 0
    return dict(element, **fixed_length(audio, self.max_length, start))


class AudioEvalView(grain.transforms.Map):
  """The evaluation map: the centre `max_length` samples of a longer utterance, or the whole one zero-padded."""

  def __init__(self, max_length: int, normalize: bool = False):
    self.max_length, self.normalize = max_length, normalize

  def map(self, element: dict) -> dict:
    audio = normalize(element["audio"]) if self.normalize else element["audio"]
    return dict(element, **fixed_length(audio, self.max_length, max(0, (len(audio) - self.max_length) // 2)))

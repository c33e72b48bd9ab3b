"""On-device audio ops (jnp): log-mel filterbank features and their per-utterance statistics, the raw-input baseline
of the evaluators for speech (what a representation learned from the waveform must beat)."""

import jax.numpy as jnp
import numpy as np


def mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
  """float32 `[n_fft // 2 + 1, n_mels]` triangular filters equally spaced on the HTK mel scale (2595 log10(1 + f /
  700)) from 0 Hz to the Nyquist frequency, peak 1 (Kaldi's and torchaudio's `mel_scale="htk"`, no area norm)."""
  mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
  hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  edges = hz(np.linspace(0.0, mel(sample_rate / 2), n_mels + 2))              # [n_mels + 2]
  freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)[:, None]         # [F, 1]
  lower, centre, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
  rising = (freqs - lower) / (centre - lower)
  falling = (upper - freqs) / (upper - centre)
  return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(audio: jnp.ndarray, *, sample_rate: int = 16000, window_ms: float = 25.0, hop_ms: float = 10.0,
            n_mels: int = 40) -> jnp.ndarray:
  """`[B, S]` waveforms -> `[B, T, n_mels]` log mel energies, T = 1 + (S - window) // hop (25 ms Hann windows every
  10 ms, the power spectrum through `mel_filterbank`, log(x + 1e-6))."""
  window, hop = int(sample_rate * window_ms / 1000), int(sample_rate * hop_ms / 1000)
  n_fft = 1 << (window - 1).bit_length()
  frames = (audio.shape[1] - window) // hop + 1
  idx = np.arange(frames)[:, None] * hop + np.arange(window)[None, :]          # [T, window]
  x = audio.astype(jnp.float32)[:, idx] * jnp.asarray(np.hanning(window + 1)[:-1], jnp.float32)
  power = jnp.abs(jnp.fft.rfft(x, n=n_fft, axis=-1)) ** 2                        # [B, T, n_fft // 2 + 1]
  return jnp.log(power @ jnp.asarray(mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels)) + 1e-6)


def log_mel_statistics(audio: jnp.ndarray, lengths: jnp.ndarray, *, sample_rate: int = 16000,
                       n_mels: int = 40) -> jnp.ndarray:
  """`[B, S]` waveforms with their real lengths `[B]` -> float32 `[B, 2 n_mels]`: the mean and the standard deviation
  of each log mel band over the frames that lie inside the utterance (10 ms hop, `log_mel`)."""
  feats = log_mel(audio, sample_rate=sample_rate, n_mels=n_mels)
  window, hop = int(sample_rate * 0.025), int(sample_rate * 0.010)
  starts = jnp.arange(feats.shape[1]) * hop
  inside = (starts[None, :] + window <= jnp.maximum(lengths[:, None], window)).astype(jnp.float32)[..., None]
  count = jnp.maximum(inside.sum(axis=1), 1.0)
  mean = (feats * inside).sum(axis=1) / count
  var = (jnp.square(feats - mean[:, None]) * inside).sum(axis=1) / count
  return jnp.concatenate([mean, jnp.sqrt(var + 1e-6)], axis=-1)

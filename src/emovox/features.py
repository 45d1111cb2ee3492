"""Signal processing: spectrogram, log-mel, MFCC (+deltas) and prosody; batched, numerically librosa.

Also :class:`FeatureConfig`, the description of every feature kind (including those a
pretrained encoder computes, which :mod:`emovox.frontend` dispatches to; this module
loads no model). Every feature is a pure function of (audio, :class:`FeatureConfig`). The maths follows
librosa exactly: a periodic Hann window, ``center=True`` with zero (``"constant"``)
padding, librosa's Slaney mel filterbank, ``power_to_db(ref=1.0, amin=1e-10,
top_db=80)`` and an orthonormal DCT-II for MFCC. A test asserts the numbers agree.

Batching: signals are zero-padded to a common length and framed in one go (numpy +
scipy.fft, which measured faster than ``torch.stft`` here). Because librosa also pads with
zeros, every frame within a signal's own length is identical to librosa's; the frames
past it are cropped away.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import scipy.fft
import scipy.signal

from emovox.errors import ConfigError

SAMPLE_RATE = 16000  # Hz: the default, and the only rate the pretrained encoders take
KINDS = ("logmel", "mfcc", "spectrogram", "ssl", "waveform", "utterance")
ENCODED = ("ssl", "utterance")  # kinds a pretrained encoder computes (see emovox.frontend)
AMIN = 1e-10  # librosa.power_to_db's floor
PITCH_FMIN_HZ = 65.0
PITCH_FMAX_HZ = 500.0
# "voice": len(emovox.voice.NAMES), the torch eGeMAPS-style functionals (tests/test_voice.py checks it)
UTTERANCE_DIMS = {"egemaps": 88, "egemaps_rel": 83, "ge2e": 256, "ge2e_layers": 768,
                  "dvector": 256, "dvector_layers": 768, "dvector_spread": 768, "dvector_peak": 768, "voice": 83}


def vector_slices(parts: tuple[str, ...]) -> dict[str, slice]:
    """Where each utterance vector named in ``parts`` lies in their stacked column.

    Examples
    --------
    >>> vector_slices(("egemaps_rel", "ge2e"))["ge2e"]
    slice(83, 339, None)
    """
    out, start = {}, 0
    for part in parts:
        out[part] = slice(start, start + UTTERANCE_DIMS[part])
        start += UTTERANCE_DIMS[part]
    return out


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes a feature matrix ``(n_features, n_frames)``.

    Attributes
    ----------
    kind : {"logmel", "mfcc", "spectrogram", "ssl", "waveform", "utterance"}
        Log-mel power (dB), MFCC, log-magnitude STFT (dB), the stacked hidden states
        of a self-supervised encoder (see :mod:`emovox.ssl`), the waveform itself as a
        ``(1, samples)`` matrix (for fine-tuning an encoder), or one column per
        utterance of the vectors named in ``utterance`` (see :mod:`emovox.utterance`).
    sample_rate : int
        Audio is resampled to this rate (Hz) first.
    n_fft, hop_length : int
        STFT size and hop, in samples (window length = ``n_fft``).
    n_mels : int
        Mel bands (also used inside MFCC).
    fmin, fmax : float
        Mel filterbank range in Hz; ``fmax=None`` means ``sample_rate / 2``.
    n_mfcc : int
        Cepstral coefficients kept when ``kind="mfcc"``.
    deltas : int
        0, 1 or 2: append delta (and delta-delta) features.
    top_db : float
        Dynamic range kept below each utterance's peak, in dB.
    prosody : bool
        Append two rows: log pitch (YIN, Hz) and log RMS energy.
    trim_db : float or None
        Trim leading/trailing audio quieter than this many dB below the peak.
    clip_s : float
        Fixed model input length in seconds (crop or zero-pad features to it).
    backbone : str or None
        Encoder directory for ``kind="ssl"`` (16 kHz only).
    utterance : tuple of str
        For ``kind="utterance"``, stacked in this order: ``"egemaps"`` (88 eGeMAPSv02
        functionals), ``"egemaps_rel"`` (the 83 of them that do not move with the recording
        level), ``"ge2e"`` (256-dimensional GE2E speaker-encoder embedding), ``"ge2e_layers"``
        (the mean of each of the encoder's three LSTM layers, 768 values), ``"voice"`` (83
        level-free eGeMAPS-style functionals computed in torch, batched: :mod:`emovox.voice`).
    speaker_encoder : str or None
        GE2E weights file for ``"ge2e"`` (default: the one shipped in ``emovox/ge2e_weights``).
    """

    kind: str = "logmel"
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    n_mfcc: int = 40
    deltas: int = 0
    top_db: float = 80.0
    prosody: bool = False
    trim_db: float | None = 30.0
    clip_s: float = 2.0
    backbone: str | None = None
    utterance: tuple[str, ...] = ("egemaps", "ge2e")
    speaker_encoder: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown feature kind {self.kind!r}", fix=f"use one of {', '.join(KINDS)}")
        if self.deltas not in (0, 1, 2):
            raise ConfigError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if self.hop_length <= 0 or self.n_fft <= 0 or self.hop_length > self.n_fft:
            raise ConfigError("need 0 < hop_length <= n_fft")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ConfigError("n_mfcc cannot exceed n_mels")
        if (self.kind == "ssl") != (self.backbone is not None):
            raise ConfigError("kind='ssl' and a backbone go together", fix="pass --backbone DIR for the ssl model")
        if not self.utterance or set(self.utterance) - set(UTTERANCE_DIMS):
            raise ConfigError(f"unknown utterance vectors {list(self.utterance)}",
                              fix=f"use one or more of {', '.join(UTTERANCE_DIMS)}")
        if self.kind in ("ssl", "waveform", "utterance") and (
                self.sample_rate != SAMPLE_RATE or self.deltas or self.prosody):
            raise ConfigError(f"{self.kind} features need sample_rate {SAMPLE_RATE}, no deltas and no prosody")

    @property
    def n_features(self) -> int:
        """Feature rows; for ``kind="ssl"`` they depend on the encoder: ask
        :func:`emovox.frontend.n_features`, which reads it (a config loads no model)."""
        if self.kind == "ssl":
            raise ConfigError("the size of ssl features depends on the encoder",
                              fix="use emovox.frontend.n_features(config), which reads the encoder")
        if self.kind == "waveform":
            return 1
        if self.kind == "utterance":
            return sum(UTTERANCE_DIMS[v] for v in self.utterance)
        base = {"logmel": self.n_mels, "mfcc": self.n_mfcc, "spectrogram": self.n_fft // 2 + 1}[self.kind]
        return base * (1 + self.deltas) + (2 if self.prosody else 0)

    @property
    def clip_frames(self) -> int:
        """Frames of a ``clip_s`` clip (for ``kind="ssl"``: :func:`emovox.frontend.clip_frames`)."""
        return self.n_frames(int(self.clip_s * self.sample_rate))

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for a signal of ``n_samples`` (librosa's ``center=True`` count);
        for ``kind="ssl"`` see :func:`emovox.frontend.n_frames`."""
        if self.kind == "ssl":
            raise ConfigError("the frame rate of ssl features depends on the encoder",
                              fix="use emovox.frontend.n_frames(config, n_samples), which reads the encoder")
        if self.kind == "waveform":
            return n_samples
        if self.kind == "utterance":
            return 1
        return 1 + n_samples // self.hop_length


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


@lru_cache(maxsize=8)
def _dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    basis = scipy.fft.dct(np.eye(n_mels, dtype=np.float64), type=2, norm="ortho", axis=0)
    return np.ascontiguousarray(basis[:n_mfcc], dtype=np.float32)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    return scipy.signal.get_window("hann", n_fft, fftbins=True).astype(np.float32)


def _power_stft(signals: list[np.ndarray], cfg: FeatureConfig) -> np.ndarray:
    """Power STFT ``(batch, frames, 1 + n_fft // 2)`` of zero-padded, centred signals.

    Frames come first, as the FFT writes them, so the mel projection is one contiguous
    matrix product; the squares are taken in place on the interleaved real/imaginary parts.
    """
    pad = cfg.n_fft // 2
    longest = max(len(y) for y in signals)
    batch = np.zeros((len(signals), longest + 2 * pad), dtype=np.float32)
    for i, y in enumerate(signals):
        batch[i, pad : pad + len(y)] = y
    frames = np.lib.stride_tricks.sliding_window_view(batch, cfg.n_fft, axis=1)[:, :: cfg.hop_length]
    parts = scipy.fft.rfft(frames * _window(cfg.n_fft), axis=-1).view(np.float32)
    parts *= parts
    return parts[..., 0::2] + parts[..., 1::2]


def _to_db(power: np.ndarray, n_frames: list[int], top_db: float | None, scale: float) -> list[np.ndarray]:
    """``librosa.power_to_db(ref=1.0)`` (``scale=10``) per signal, peak over its own frames.

    ``power`` is ``(batch, frames, bins)``; each result is ``(bins, frames)``.
    """
    out = []
    for i, n in enumerate(n_frames):
        d = scale * np.log10(np.maximum(np.ascontiguousarray(power[i, :n].T), AMIN))
        if top_db is not None:
            np.maximum(d, d.max() - top_db, out=d)
        out.append(d)
    return out


def _n_frames(signals: list[np.ndarray], cfg: FeatureConfig) -> list[int]:
    return [cfg.n_frames(len(y)) for y in signals]


def spectrogram_batch(signals: list[np.ndarray], cfg: FeatureConfig) -> list[np.ndarray]:
    """Magnitude STFT ``np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length))``."""
    power = _power_stft(signals, cfg)
    return [np.sqrt(np.ascontiguousarray(power[i, :n].T)) for i, n in enumerate(_n_frames(signals, cfg))]


def _mel_power(signals: list[np.ndarray], cfg: FeatureConfig) -> np.ndarray:
    """Mel power ``(batch, frames, n_mels)``."""
    return _power_stft(signals, cfg) @ _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax).T


def mel_power_batch(signals: list[np.ndarray], cfg: FeatureConfig) -> list[np.ndarray]:
    """``melspectrogram(y=y, sr=sr, n_fft, hop_length, n_mels, fmin, fmax)``: power, no dB."""
    mel = _mel_power(signals, cfg)
    return [np.ascontiguousarray(mel[i, :n].T) for i, n in enumerate(_n_frames(signals, cfg))]


def logmel_batch(signals: list[np.ndarray], cfg: FeatureConfig) -> list[np.ndarray]:
    """``power_to_db(melspectrogram(y=y, sr=sr, n_fft, hop_length, n_mels, fmin, fmax), top_db)``."""
    return _to_db(_mel_power(signals, cfg), _n_frames(signals, cfg), cfg.top_db, 10.0)


def mfcc_from_logmel(logmel: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``librosa.feature.mfcc(S=logmel, n_mfcc=n_mfcc)`` (orthonormal DCT-II)."""
    return _dct_matrix(cfg.n_mels, cfg.n_mfcc) @ logmel


def mfcc_batch(signals: list[np.ndarray], cfg: FeatureConfig) -> list[np.ndarray]:
    """``librosa.feature.mfcc(y=y, sr=sr, n_mfcc, n_fft, hop_length, n_mels, fmin, fmax)``."""
    return [mfcc_from_logmel(d, cfg) for d in logmel_batch(signals, cfg)]


def _base_batch(signals: list[np.ndarray], cfg: FeatureConfig) -> list[np.ndarray]:
    if cfg.kind == "logmel":
        return logmel_batch(signals, cfg)
    if cfg.kind == "mfcc":
        return mfcc_batch(signals, cfg)
    if cfg.kind == "waveform":
        return [y[None].astype(np.float32) for y in signals]
    # log-magnitude: librosa.amplitude_to_db(|S|, ref=1.0, top_db) == 10*log10(max(amin², |S|²))
    return _to_db(_power_stft(signals, cfg), _n_frames(signals, cfg), cfg.top_db, 10.0)


def prosody(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Two rows per frame: log pitch in Hz (YIN) and log RMS energy."""
    f0 = librosa.yin(y, fmin=PITCH_FMIN_HZ, fmax=PITCH_FMAX_HZ, sr=cfg.sample_rate,
                     frame_length=2048, hop_length=cfg.hop_length, center=True)
    rms = librosa.feature.rms(y=y, frame_length=cfg.n_fft, hop_length=cfg.hop_length)[0]
    n = cfg.n_frames(len(y))
    return np.stack([np.log(f0[:n]), np.log(rms[:n] + 1e-6)]).astype(np.float32)


def trim(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Drop leading/trailing audio ``trim_db`` below the peak (librosa.effects.trim)."""
    if cfg.trim_db is None:
        return y
    trimmed, _ = librosa.effects.trim(y, top_db=cfg.trim_db, frame_length=cfg.n_fft, hop_length=cfg.hop_length)
    return trimmed if len(trimmed) >= cfg.n_fft else y


def extract_batch(signals: list[np.ndarray], cfg: FeatureConfig) -> list[np.ndarray]:
    """Features ``(n_features, n_frames)`` float32 for each mono signal at ``cfg.sample_rate``.

    The kinds computed here by signal processing (numpy, on the CPU); the encoder kinds
    (``ssl``, ``utterance``) go through :func:`emovox.frontend.extract_batch`, which
    dispatches every kind.

    Examples
    --------
    >>> cfg = FeatureConfig(kind="mfcc", deltas=1)
    >>> [f.shape for f in extract_batch([np.random.randn(16000).astype("float32")], cfg)]
    [(80, 101)]
    """
    if cfg.kind in ENCODED:
        raise ConfigError(f"{cfg.kind} features come from a pretrained encoder, not from signal processing",
                          fix="use emovox.frontend.extract_batch")
    if not signals:
        return []
    signals = [trim(np.asarray(y, dtype=np.float32), cfg) for y in signals]
    feats = _base_batch(signals, cfg)
    out = []
    for y, f in zip(signals, feats, strict=True):
        parts = [f]
        if cfg.deltas:
            width = min(9, _odd(f.shape[1]))
            parts += [librosa.feature.delta(f, order=o, width=width) for o in range(1, cfg.deltas + 1)]
        if cfg.prosody:
            parts.append(prosody(y, cfg))
        out.append(np.concatenate(parts).astype(np.float32, copy=False))
    return out


def extract(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Features of one signal; see :func:`extract_batch`."""
    return extract_batch([y], cfg)[0]


def _odd(n: int) -> int:
    return max(3, n if n % 2 else n - 1)


def fit_frames(feat: np.ndarray, n: int, *, start: int = 0, pad_value: float | None = None) -> np.ndarray:
    """Crop ``feat`` to ``n`` frames from ``start``, or pad it with ``pad_value`` (default:
    its own minimum, i.e. silence)."""
    f = feat[:, start : start + n]
    if f.shape[1] == n:
        return f
    out = np.full((feat.shape[0], n), feat.min() if pad_value is None else pad_value, dtype=np.float32)
    out[:, : f.shape[1]] = f
    return out


def windows(feat: np.ndarray, n: int, *, pad_value: float | None = None) -> np.ndarray:
    """Cover a feature matrix with ``n``-frame windows at half-window hops: ``(k, F, n)``.

    A model trained on fixed ``n``-frame clips scores a longer utterance by averaging
    its window predictions.
    """
    total = feat.shape[1]
    if total <= n:
        return fit_frames(feat, n, pad_value=pad_value)[None]
    hop = max(1, n // 2)
    starts = list(range(0, total - n + 1, hop))
    if starts[-1] != total - n:
        starts.append(total - n)
    return np.stack([feat[:, s : s + n] for s in starts])

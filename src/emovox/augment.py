"""Augmentation for training: speed perturbation and channel simulation on the waveform,
and speaker swaps on the features.

Each augmentation is a deterministic function of the signal (its random draws are seeded
by the signal's own samples), so its features are cached on disk like any other
features, and training draws, for every utterance in every epoch, the original or one
augmented copy. Validation and test utterances are never augmented.

Specs are short strings, ``kind:value``:

- ``speed:0.9``: tempo and pitch x0.9, as in Kaldi's speed perturbation;
- ``noise:20``: white noise at 20 dB SNR;
- ``reverb:0.5``: a synthetic room with a 0.5 s reverberation time (RT60);
- ``phone:8000``: a telephone line, 300-3400 Hz at 8000 Hz with G.711 mu-law coding;
- ``mp3:0.8``: MP3 coding at libsndfile compression level 0.8 (0 best, 1 smallest);
- ``channel:1``: copy 1 of a random recording chain (a room, a phone line or an MP3
  codec, white or pink noise at 5-30 dB SNR), drawn per utterance; ``channel:2`` is
  another draw. It imitates the studios, phones and codecs no training corpus had.

:func:`speaker_swaps` works on features instead (``train: speaker_swap`` in a config): it
moves each training utterance onto another training speaker's voice, so that where a
speaker, a language or a studio sits says less to the model than how an utterance departs
from it.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
from scipy import signal as sps

from emovox.errors import ConfigError
from emovox.features import FeatureConfig
from emovox.frontend import extract_batch

Rng = np.random.Generator
MP3_MAX_LEVEL = 0.9999  # libsndfile refuses higher MP3 compression levels


def speed(y: np.ndarray, sr: int, factor: float, rng: Rng) -> np.ndarray:
    """Play the samples back ``factor`` times faster (tempo and pitch)."""
    return soxr.resample(y, sr * factor, sr)


def noise(y: np.ndarray, sr: int, snr_db: float, rng: Rng, *, pink: bool = False) -> np.ndarray:
    """Add white (or pink, -3 dB per octave) noise at ``snr_db`` below the signal's power."""
    n = rng.standard_normal(len(y))
    if pink:
        spectrum = np.fft.rfft(n)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        n = np.fft.irfft(spectrum, len(y))
        n /= np.sqrt(max(np.mean(n**2), 1e-20))
    return y + n * noise_rms(y, snr_db)


def noise_rms(y: np.ndarray, snr_db: float) -> float:
    """The RMS of noise ``snr_db`` dB below the mean power of ``y`` (over the whole signal)."""
    return np.sqrt(np.mean(y.astype(np.float64) ** 2) / 10 ** (snr_db / 10))


def reverb(y: np.ndarray, sr: int, rt60: float, rng: Rng) -> np.ndarray:
    """Convolve with a synthetic room response: the direct sound, then exponentially
    decaying noise (60 dB down after ``rt60`` seconds); the level is kept."""
    t = np.arange(int(min(rt60, 1.0) * sr)) / sr
    rir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * 0.3
    rir[0] = 1.0
    wet = sps.fftconvolve(y, rir)[: len(y)]
    return wet * np.sqrt(np.mean(y.astype(np.float64) ** 2) / max(np.mean(wet**2), 1e-20))


def phone(y: np.ndarray, sr: int, rate: float, rng: Rng) -> np.ndarray:
    """A telephone line: down to ``rate`` Hz, the 300-3400 Hz band, 8-bit mu-law (G.711), back to ``sr``."""
    narrow = soxr.resample(y, sr, rate)
    narrow = sps.sosfilt(sps.butter(4, [300, 3400], btype="band", fs=rate, output="sos"), narrow)
    peak = max(float(np.max(np.abs(narrow))), 1e-9)
    mu = np.sign(narrow) * np.log1p(255 * np.abs(narrow / peak)) / np.log1p(255)
    mu = np.round(mu * 127) / 127
    narrow = np.sign(mu) * np.expm1(np.abs(mu) * np.log1p(255)) / 255 * peak
    return _fit(soxr.resample(narrow, rate, sr), len(y))


def mp3(y: np.ndarray, sr: int, level: float, rng: Rng) -> np.ndarray:
    """Encode to MP3 at compression ``level`` (0 best, 1 smallest) and decode again."""
    buf = io.BytesIO()
    level = min(level, MP3_MAX_LEVEL)
    peak = max(1.0, float(np.max(np.abs(y))))
    sf.write(buf, y / peak, sr, format="MP3", subtype="MPEG_LAYER_III", compression_level=level)
    buf.seek(0)
    return _fit(sf.read(buf, dtype="float32")[0] * peak, len(y))


def channel(y: np.ndarray, sr: int, copy: float, rng: Rng) -> np.ndarray:
    """One random recording chain per utterance (see the module docstring); ``copy``
    only tells the draws of different copies apart (it salts the seed)."""
    rng = np.random.default_rng([int(rng.integers(2**32)), int(copy)])
    if rng.random() < 0.5:
        y = reverb(y, sr, rng.uniform(0.2, 1.0), rng)
    line = rng.random()
    if line < 0.3:
        y = phone(y, sr, 8000, rng)
    elif line < 0.55:
        y = mp3(y, sr, rng.uniform(0.6, 1.0), rng)
    return noise(y, sr, rng.uniform(5, 30), rng, pink=rng.random() < 0.5)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples."""
    return np.pad(y[:n], (0, max(0, n - len(y))))


# kind -> (transform, lowest value, highest value)
KINDS: dict[str, tuple[Callable[..., np.ndarray], float, float]] = {
    "speed": (speed, 0.5, 2.0), "noise": (noise, -10.0, 80.0), "reverb": (reverb, 0.05, 3.0),
    "phone": (phone, 7000, 16000), "mp3": (mp3, 0.0, 1.0), "channel": (channel, 1, 99),
}


@dataclass(frozen=True)
class WaveAugment:
    """One waveform transform: ``kind`` (a key of :data:`KINDS`) and its ``value``."""

    kind: str
    value: float

    @classmethod
    def parse(cls, spec: str) -> WaveAugment:
        """``"speed:0.9"`` -> ``WaveAugment("speed", 0.9)``; anything else is a :class:`ConfigError`."""
        kind, _, value = spec.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = None
        known = KINDS.get(kind)
        if known is None or number is None or not known[1] <= number <= known[2]:
            raise ConfigError(f"bad augmentation {spec!r}",
                              fix="use speed:F (0.5-2), noise:SNR_DB, reverb:RT60_S, phone:8000, mp3:LEVEL (0-1) "
                                  "or channel:COPY (1-99), e.g. speed:0.9,channel:1")
        return cls(kind, number)

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(y).tobytes()))
        return KINDS[self.kind][0](y, sr, self.value, rng).astype(np.float32)


def speaker_swaps(feats: list[np.ndarray], y: np.ndarray, speakers, idx: np.ndarray, *, copies: int,
                  seed: int) -> list[list[np.ndarray]]:
    """``copies`` lists of features (aligned with ``feats``) in which every utterance of
    ``idx`` is moved onto a speaker of ``idx`` drawn at random: its features ``(F, T)`` plus
    the difference of the two speakers' centres. A speaker's centre is the mean of their
    per-class means of the utterances' frame means, so a speaker who recorded more angry
    clips is not centred on anger. Utterances outside ``idx`` are kept as they are, and
    only ``idx``'s speakers give centres (validation and test speakers stay unseen).
    Speakers who are unknown (``None``) or have fewer than two classes in ``idx`` neither
    move nor receive: their centre would be one emotion's (or one clip's) own place.

    In leave-one-corpus-out tests one swapped copy lifted the corpora least like the
    others (nEMO, ASED) and every test channel (docs/benchmarks.md).
    """
    idx = np.asarray(idx)
    speakers = np.asarray(speakers, dtype=object)
    means = np.stack([f.mean(axis=1) for f in feats]).astype(np.float64)
    centre = {}
    for name in sorted({s for s in speakers[idx] if s is not None}):
        own = idx[speakers[idx] == name]
        classes = np.unique(y[own])
        if len(classes) >= 2:
            centre[name] = np.mean([means[own[y[own] == c]].mean(axis=0) for c in classes], axis=0)
    names = sorted(centre)
    movable = np.array([i for i in idx if speakers[i] in centre], dtype=int)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(copies):
        moved = list(feats)
        for i, target in zip(movable, rng.integers(max(1, len(names)), size=len(movable)), strict=True):
            shift = centre[names[target]] - centre[speakers[i]]
            moved[i] = (feats[i] + shift[:, None]).astype(feats[i].dtype)
        out.append(moved)
    return out


def parse_all(specs: tuple[str, ...]) -> tuple[WaveAugment, ...]:
    return tuple(WaveAugment.parse(s) for s in specs)


@dataclass(frozen=True)
class AugmentedFeatures:
    """Features of augmented audio: an extractor for :func:`emovox.cache.extract_files`
    whose cache entries are keyed by both the feature config and the augmentation.

    ``augment`` is a :class:`WaveAugment`, or any frozen dataclass called as
    ``augment(y, sr)`` (a test-time :class:`emovox.conditions.Condition`)."""

    features: FeatureConfig
    augment: WaveAugment | Callable[[np.ndarray, int], np.ndarray]

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    def extract_batch(self, signals: list[np.ndarray]) -> list[np.ndarray]:
        return extract_batch([self.augment(y, self.sample_rate) for y in signals], self.features)

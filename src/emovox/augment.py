"""Waveform augmentation for training: speed perturbation and additive noise.

Each augmentation is a deterministic function of the signal (the noise is seeded by the
signal's own samples), so its features are cached on disk like any other features, and
training draws, for every utterance in every epoch, the original or one augmented copy.
Validation and test utterances are never augmented.

Specs are short strings: ``speed:0.9`` (tempo and pitch x0.9, as in Kaldi's speed
perturbation) and ``noise:20`` (white noise at 20 dB SNR).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import soxr

from emovox.errors import ConfigError
from emovox.features import FeatureConfig
from emovox.frontend import extract_batch

KINDS = {"speed": (0.5, 2.0), "noise": (-10.0, 80.0)}  # allowed value range per kind


@dataclass(frozen=True)
class WaveAugment:
    """One waveform transform: ``kind`` ("speed" factor or "noise" SNR in dB) and its ``value``."""

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
        bounds = KINDS.get(kind)
        if bounds is None or number is None or not bounds[0] <= number <= bounds[1]:
            raise ConfigError(f"bad augmentation {spec!r}",
                              fix="use speed:F (0.5-2, e.g. speed:0.9) or noise:SNR_DB (e.g. noise:20)")
        return cls(kind, number)

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        if self.kind == "speed":  # play the samples back ``value`` times faster
            return soxr.resample(y, sr * self.value, sr).astype(np.float32)
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(y).tobytes()))
        power = float(np.mean(y.astype(np.float64) ** 2))
        noise = rng.standard_normal(len(y)) * np.sqrt(power / 10 ** (self.value / 10))
        return (y + noise).astype(np.float32)


def parse_all(specs: tuple[str, ...]) -> tuple[WaveAugment, ...]:
    return tuple(WaveAugment.parse(s) for s in specs)


@dataclass(frozen=True)
class AugmentedFeatures:
    """Features of augmented audio: an extractor for :func:`emovox.cache.extract_files`
    whose cache entries are keyed by both the feature config and the augmentation."""

    features: FeatureConfig
    augment: WaveAugment

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    def extract_batch(self, signals: list[np.ndarray]) -> list[np.ndarray]:
        return extract_batch([self.augment(y, self.sample_rate) for y in signals], self.features)

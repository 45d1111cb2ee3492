"""The feature front end: audio -> the feature matrices a model reads, for every feature kind.

:func:`extract_batch` dispatches on :attr:`FeatureConfig.kind`: log-mel, MFCC,
spectrogram and waveform to :mod:`emovox.features` (signal processing), utterance
vectors to :mod:`emovox.utterance` (eGeMAPS, GE2E), hidden states to :mod:`emovox.ssl`.
The shapes of encoder features are asked of the encoder here too (:func:`n_features`,
:func:`n_frames`), so a :class:`FeatureConfig` itself never loads a model.
"""

from __future__ import annotations

import numpy as np

from emovox import features, ssl, utterance
from emovox.features import FeatureConfig


def extract_batch(signals: list[np.ndarray], cfg: FeatureConfig, *, device: str = "auto") -> list[np.ndarray]:
    """Features ``(n_features, n_frames)`` float32 for each mono signal at ``cfg.sample_rate``.

    ``device`` (``auto``, ``cpu``, ``cuda[:N]``) is where an ssl encoder and the torch
    utterance front end (:mod:`emovox.encoder`) run; the other kinds run on the CPU.

    Examples
    --------
    >>> cfg = FeatureConfig(kind="mfcc", deltas=1)
    >>> [f.shape for f in extract_batch([np.random.randn(16000).astype("float32")], cfg)]
    [(80, 101)]
    """
    if cfg.kind not in features.ENCODED:
        return features.extract_batch(signals, cfg)
    if not signals:
        return []
    if cfg.kind == "ssl":
        signals = [features.trim(np.asarray(y, dtype=np.float32), cfg) for y in signals]
        feats = ssl.hidden_states(signals, cfg.backbone, device=device)
    else:  # trims each vector's input itself
        feats = utterance.vectors(signals, cfg, device=device)
    return [f.astype(np.float32, copy=False) for f in feats]


def extract(y: np.ndarray, cfg: FeatureConfig, *, device: str = "auto") -> np.ndarray:
    """Features of one signal; see :func:`extract_batch`."""
    return extract_batch([y], cfg, device=device)[0]


def n_features(cfg: FeatureConfig) -> int:
    """Feature rows of ``cfg``; for ssl features, read from the encoder (hidden states x size)."""
    if cfg.kind == "ssl":
        layers, hidden = ssl.layout(cfg.backbone)
        return layers * hidden
    return cfg.n_features


def n_frames(cfg: FeatureConfig, n_samples: int) -> int:
    """Frames of features for a signal of ``n_samples``; for ssl features, the encoder's count."""
    if cfg.kind == "ssl":
        return ssl.n_frames(cfg.backbone, n_samples)
    return cfg.n_frames(n_samples)


def clip_frames(cfg: FeatureConfig) -> int:
    """Frames of a ``cfg.clip_s``-second clip: the model's fixed input length."""
    return n_frames(cfg, int(cfg.clip_s * cfg.sample_rate))


def ssl_layers(cfg: FeatureConfig) -> int:
    """Hidden states stacked in ssl features (what the ``ssl`` head weighs), read from the encoder."""
    return ssl.layout(cfg.backbone)[0]

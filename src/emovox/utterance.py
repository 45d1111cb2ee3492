"""Utterance-level feature vectors: eGeMAPSv02 functionals and GE2E speaker-encoder embeddings.

Each utterance becomes one column ``(n_features, 1)``, so these vectors go through the
same cache, speaker normalisation, training loop and predictor as frame features. The
eGeMAPS functionals alone are what the classic baseline's SVM reads
(:data:`emovox.baseline.FEATURES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from emovox import ge2e

SAMPLE_RATE = 16000


@lru_cache(maxsize=1)
def _smile():
    import opensmile

    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                           feature_level=opensmile.FeatureLevel.Functionals)


def egemaps(signals: Sequence[np.ndarray]) -> list[np.ndarray]:
    """88 eGeMAPSv02 functionals per 16 kHz signal (openSMILE), as ``(88,)`` float32 arrays."""
    smile = _smile()
    return [smile.process_signal(y, SAMPLE_RATE).to_numpy(dtype=np.float32)[0] for y in signals]


def vectors(signals: Sequence[np.ndarray], parts: Sequence[str], *,
            speaker_encoder: str | None = None) -> list[np.ndarray]:
    """The vectors named in ``parts`` (``"egemaps"``, ``"ge2e"``), stacked into one
    ``(n_features, 1)`` column per 16 kHz signal."""
    made = {"egemaps": lambda: egemaps(signals),
            "ge2e": lambda: ge2e.embed_batch(list(signals), speaker_encoder)}
    columns = [made[p]() for p in parts]
    return [np.concatenate(vs)[:, None] for vs in zip(*columns, strict=True)]

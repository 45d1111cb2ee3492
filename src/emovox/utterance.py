"""Utterance-level feature vectors: eGeMAPSv02 functionals and GE2E speaker-encoder embeddings.

Each utterance becomes one column ``(n_features, 1)``, so these vectors go through the
same cache, speaker normalisation, training loop and predictor as frame features. The
eGeMAPS functionals alone are what the classic baseline's SVM reads
(:data:`emovox.baseline.FEATURES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch

from emovox import encoder, ge2e
from emovox.features import SAMPLE_RATE, UTTERANCE_DIMS, FeatureConfig, trim

# eGeMAPSv02 functional indices: loudness mean, its percentiles/range/slopes, and the
# level-dependent rest (mean loudness, mean spectral flux: all/voiced/unvoiced, sound level)
LOUDNESS_MEAN = 10
LOUDNESS_SHAPE = slice(12, 20)
LEVEL_DEPENDENT = [10, 20, 66, 80, 87]


@lru_cache(maxsize=1)
def _smile():
    import opensmile

    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                           feature_level=opensmile.FeatureLevel.Functionals)


def egemaps(signals: Sequence[np.ndarray]) -> list[np.ndarray]:
    """88 eGeMAPSv02 functionals per 16 kHz signal (openSMILE), as ``(88,)`` float32 arrays.

    Several signals are processed in as many threads as torch may use (openSMILE releases
    the GIL; the results do not depend on the thread count).
    """
    smile = _smile()

    def one(y: np.ndarray) -> np.ndarray:
        return smile.process_signal(y, SAMPLE_RATE).to_numpy(dtype=np.float32)[0]

    threads = min(len(signals), torch.get_num_threads())
    if threads <= 1:
        return [one(y) for y in signals]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, signals))


def relative_egemaps(functionals: np.ndarray) -> np.ndarray:
    """83 of the 88 eGeMAPS functionals, none of which moves with the recording level.

    The loudness percentiles, range and slopes are divided by the mean loudness; the mean
    loudness, equivalent sound level and mean spectral fluxes (which scale with the gain
    of the microphone chain, not with the speaker) are dropped.
    """
    out = functionals.astype(np.float32).copy()
    out[LOUDNESS_SHAPE] /= out[LOUDNESS_MEAN] + 1e-3
    return np.delete(out, LEVEL_DEPENDENT)


def vectors(signals: Sequence[np.ndarray], cfg: FeatureConfig, *, device: str = "auto") -> list[np.ndarray]:
    """The vectors named in ``cfg.utterance`` (openSMILE's ``"egemaps"``, ``"egemaps_rel"``;
    the encoder's ``"ge2e"``, ``"ge2e_layers"``; the torch front end's parts,
    :data:`emovox.encoder.PARTS`, batched on ``device``), stacked into one
    ``(n_features, 1)`` column per 16 kHz signal, each computed after trimming silence
    ``cfg.trim_db`` below the clip's peak."""
    parts = cfg.utterance
    made: dict[str, list[np.ndarray]] = {}
    in_torch = [p for p in parts if p in encoder.PARTS]
    if in_torch:  # the torch front end trims inside, so that an exported graph does too
        stacked = encoder.encode(signals, in_torch, speaker_encoder=cfg.speaker_encoder, trim_db=cfg.trim_db,
                                 device=device)
        split = [np.split(v, np.cumsum([UTTERANCE_DIMS[p] for p in in_torch])[:-1]) for v in stacked]
        made.update({name: [s[j] for s in split] for j, name in enumerate(in_torch)})
    signals = [trim(np.asarray(y, dtype=np.float32), cfg) for y in signals] if set(parts) - set(in_torch) else []
    if {"egemaps", "egemaps_rel"} & set(parts):  # one openSMILE pass for both
        made["egemaps"] = egemaps(signals)
        made["egemaps_rel"] = [relative_egemaps(f) for f in made["egemaps"]]
    if {"ge2e", "ge2e_layers"} & set(parts):  # one encoder pass for both
        made["ge2e"], made["ge2e_layers"] = ge2e.encode(list(signals), cfg.speaker_encoder)
    columns = [made[p] for p in parts]
    return [np.concatenate(vs)[:, None] for vs in zip(*columns, strict=True)]

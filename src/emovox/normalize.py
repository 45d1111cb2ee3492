"""Speaker normalisation: z-score each feature row with statistics of one speaker's audio.

One policy, :func:`by_speaker`, used by the dataset (training and test utterances), the
eGeMAPS baseline and the :class:`~emovox.predict.Predictor`: every feature matrix is
z-scored with the statistics of all matrices of its speaker, or with statistics already
known for that speaker. Statistics come from unlabelled audio only (all of a speaker's
utterances, or the recording being analysed), so using them for test speakers leaks no
labels.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from emovox.errors import CorpusError

EPS = 1e-5


class Stats:
    """Running per-row mean and standard deviation over feature frames."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: np.ndarray | None = None
        self.sumsq: np.ndarray | None = None

    def update(self, feat: np.ndarray) -> Stats:
        f = feat.astype(np.float64)
        if self.sum is None:
            self.sum, self.sumsq = f.sum(axis=1), (f**2).sum(axis=1)
        else:
            self.sum += f.sum(axis=1)
            self.sumsq += (f**2).sum(axis=1)
        self.n += f.shape[1]
        return self

    @classmethod
    def of(cls, feats: Sequence[np.ndarray]) -> Stats:
        stats = cls()
        for f in feats:
            stats.update(f)
        return stats

    def apply(self, feat: np.ndarray) -> np.ndarray:
        if self.n == 0:
            raise ValueError("no frames seen")
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sumsq / self.n - mean**2, 0.0)) + EPS
        return ((feat - mean[:, None]) / std[:, None]).astype(np.float32)


def by_speaker(feats: Sequence[np.ndarray], speakers: Sequence[Hashable | None], *,
               stats: Stats | None = None) -> list[np.ndarray]:
    """Each feature matrix ``(F, T)`` z-scored with the statistics of all matrices of its
    speaker (``speakers`` aligned with ``feats``), or, when given, with ``stats`` (one
    speaker's, learnt beforehand) for all of them.

    Examples
    --------
    >>> f = [np.array([[1.0, 3.0]]), np.array([[5.0, 7.0]])]
    >>> [np.round(x, 3).tolist() for x in by_speaker(f, ["a", "b"])]
    [[[-1.0, 1.0]], [[-1.0, 1.0]]]
    """
    if stats is not None:
        return [stats.apply(f) for f in feats]
    if any(s is None for s in speakers):
        raise CorpusError("speaker normalisation needs a speaker for every file",
                          fix="add speakers (CSV column or label/speaker/ folders) or turn speaker_norm off")
    groups: dict[Hashable, list[int]] = {}
    for i, s in enumerate(speakers):
        groups.setdefault(s, []).append(i)
    out: list[np.ndarray] = list(feats)
    for idx in groups.values():
        stats = Stats.of([feats[i] for i in idx])
        for i in idx:
            out[i] = stats.apply(feats[i])
    return out

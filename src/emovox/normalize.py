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
from dataclasses import dataclass

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

    def moments(self, prior: Prior | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation per row; with ``prior``, the mean is shrunk toward the
        prior's as if ``prior.frames`` frames of a typical speaker had been seen too, and the
        spread is the prior's: only the mean moves with the speaker. A speaker's own spread
        is as skewed as their audio (a set of mostly neutral or one-emotion clips is narrow),
        and dividing by it cost held-out ASED 4 points of UA (benchmarks/adaptation.py)."""
        if self.n == 0 and prior is None:
            raise ValueError("no frames seen")
        if prior is None:
            mean = self.sum / self.n
            return mean, np.sqrt(np.maximum(self.sumsq / self.n - mean**2, 0.0))
        own = 0.0 if self.sum is None else self.sum
        return (own + prior.frames * prior.mean) / (self.n + prior.frames), prior.std

    def apply(self, feat: np.ndarray, prior: Prior | None = None) -> np.ndarray:
        """``feat`` ``(F, T)`` z-scored with these statistics (shrunk toward ``prior``, if given)."""
        mean, std = self.moments(prior)
        return ((feat - mean[:, None]) / (std[:, None] + EPS)).astype(np.float32)


@dataclass(frozen=True)
class Prior:
    """What a typical training speaker's statistics look like before any of a new speaker's
    audio is seen: the mean over speakers of their feature means, the root mean square of
    their standard deviations, and how many frames (utterances, for utterance vectors) of
    a new speaker weigh as much as it (see :meth:`Stats.moments`)."""

    mean: np.ndarray
    std: np.ndarray
    frames: float

    @classmethod
    def of(cls, feats: Sequence[np.ndarray], speakers: Sequence[Hashable], *, frames: float) -> Prior:
        """The prior of the speakers of a training set (``speakers`` aligned with ``feats``)."""
        moments = [Stats.of([feats[i] for i in idx]).moments() for idx in _by_speaker(speakers).values()]
        return cls(np.mean([m for m, _ in moments], axis=0), np.sqrt(np.mean([sd**2 for _, sd in moments], axis=0)),
                   float(frames))


def by_speaker(feats: Sequence[np.ndarray], speakers: Sequence[Hashable | None], *,
               stats: Stats | None = None, spread: np.ndarray | None = None) -> list[np.ndarray]:
    """Each feature matrix ``(F, T)`` z-scored with the statistics of all matrices of its
    speaker (``speakers`` aligned with ``feats``), or, when given, with ``stats`` (one
    speaker's, learnt beforehand) for all of them. With ``spread`` (a :class:`Prior`'s
    ``std``) each speaker's matrices are only centred on their mean and divided by it, as
    :meth:`Stats.moments` does with a prior.

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
    out: list[np.ndarray] = list(feats)
    for idx in _by_speaker(speakers).values():
        stats = Stats.of([feats[i] for i in idx])
        prior = None if spread is None else Prior(stats.moments()[0], spread, 0.0)
        for i in idx:
            out[i] = stats.apply(feats[i], prior)
    return out


def _by_speaker(speakers: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """The indices of each speaker's items, in order."""
    groups: dict[Hashable, list[int]] = {}
    for i, s in enumerate(speakers):
        groups.setdefault(s, []).append(i)
    return groups

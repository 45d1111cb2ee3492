"""Speaker-grouped folds: no speaker is ever in two of train, validation and test.

A split that mixes speakers exists only under the explicit name ``"random-utterance"``,
and every fold it yields says so (``speaker_independent=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, StratifiedKFold

from emovox.errors import ConfigError, CorpusError

RANDOM_SPLIT = "random-utterance"


@dataclass(frozen=True)
class Fold:
    """Indices into the manifest for one fold."""

    index: int
    train: np.ndarray
    test: np.ndarray
    test_speakers: tuple[str, ...]
    speaker_independent: bool = True


def make_folds(speakers: Sequence[str | None], labels: Sequence[str], folds: int | str, *,
               seed: int = 0) -> list[Fold]:
    """Cross-validation folds.

    Parameters
    ----------
    speakers, labels : sequences
        One entry per utterance.
    folds : int or str
        ``k`` for k folds grouped by speaker, ``"loso"`` for leave-one-speaker-out, or
        ``"random-utterance"`` for a 5-fold stratified split that mixes speakers.
    seed : int
        Shuffles which speakers land in which fold.

    Examples
    --------
    >>> fs = make_folds(["a", "a", "b", "b", "c", "c"], ["x"] * 6, "loso")
    >>> [f.test_speakers for f in fs]
    [('a',), ('b',), ('c',)]
    """
    n = len(labels)
    idx = np.arange(n)
    if folds == RANDOM_SPLIT:
        sk = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
        return [Fold(i, tr, te, (), speaker_independent=False) for i, (tr, te) in enumerate(sk.split(idx, labels))]
    groups = _groups(speakers)
    unique = sorted(set(groups))
    if folds == "loso":
        splitter = LeaveOneGroupOut()
    else:
        try:
            k = int(folds)
        except ValueError:
            raise ConfigError(f"folds must be an integer, 'loso' or '{RANDOM_SPLIT}', got {folds!r}") from None
        if not 2 <= k <= len(unique):
            raise ConfigError(f"{k} folds need between 2 and {len(unique)} speakers' worth of folds",
                              fix="use fewer folds or --folds loso")
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    out = []
    for i, (tr, te) in enumerate(splitter.split(idx, labels, groups)):
        out.append(Fold(i, tr, te, tuple(sorted({groups[j] for j in te}))))
    return out


def validation_split(train: np.ndarray, speakers: Sequence[str | None], *, fraction: float = 0.2,
                     seed: int = 0, speaker_independent: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (fit, validation), holding out whole speakers.

    At least one speaker is held out and at least one kept. With a random split the
    validation set is a random ``fraction`` of utterances instead.
    """
    rng = np.random.default_rng(seed)
    if not speaker_independent:
        perm = rng.permutation(train)
        n_val = max(1, int(round(fraction * len(train))))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    groups = _groups(speakers)
    unique = sorted({groups[i] for i in train})
    if len(unique) < 2:
        raise CorpusError("need at least two training speakers to hold one out for validation")
    n_val = min(len(unique) - 1, max(1, int(round(fraction * len(unique)))))
    held = set(rng.permutation(unique)[:n_val])
    is_val = np.array([groups[i] in held for i in train])
    return train[~is_val], train[is_val]


def _groups(speakers: Sequence[str | None]) -> list[str]:
    if any(s is None for s in speakers):
        raise CorpusError(
            "some files have no speaker, so folds cannot be grouped by speaker",
            fix=f"add a speaker column or label/speaker/ folders, or ask for --folds {RANDOM_SPLIT}",
        )
    return list(speakers)  # type: ignore[arg-type]

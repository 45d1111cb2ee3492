"""Speaker-grouped folds: no speaker is ever in two of train, validation and test.

Leave-one-corpus-out (``"loco"``) goes further: each fold tests on every file of one
corpus and trains on the others, so the test studio, language and speakers are all new.
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
LOCO = "loco"


@dataclass(frozen=True)
class Fold:
    """Indices into the manifest for one fold."""

    index: int
    train: np.ndarray
    test: np.ndarray
    test_speakers: tuple[str, ...]
    speaker_independent: bool = True
    test_corpus: str | None = None


def make_folds(speakers: Sequence[str | None], labels: Sequence[str], folds: int | str, *,
               seed: int = 0, corpora: Sequence[str] | None = None) -> list[Fold]:
    """Cross-validation folds.

    Parameters
    ----------
    speakers, labels : sequences
        One entry per utterance.
    folds : int or str
        ``k`` for k folds grouped by speaker, ``"loso"`` for leave-one-speaker-out,
        ``"loco"`` for leave-one-corpus-out (needs ``corpora``), or
        ``"random-utterance"`` for a 5-fold stratified split that mixes speakers.
    seed : int
        Shuffles which speakers land in which fold.
    corpora : sequence of str, optional
        Corpus name per utterance, for ``"loco"``.

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
    if folds == LOCO:
        return _leave_one_corpus_out(speakers, corpora)
    groups = _groups(speakers)
    unique = sorted(set(groups))
    if folds == "loso":
        splitter = LeaveOneGroupOut()
    else:
        try:
            k = int(folds)
        except ValueError:
            raise ConfigError(f"folds must be an integer, 'loso', '{LOCO}' or '{RANDOM_SPLIT}', "
                              f"got {folds!r}") from None
        if not 2 <= k <= len(unique):
            raise ConfigError(f"{k} folds need between 2 and {len(unique)} speakers' worth of folds",
                              fix="use fewer folds or --folds loso")
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    out = []
    for i, (tr, te) in enumerate(splitter.split(idx, labels, groups)):
        out.append(Fold(i, tr, te, tuple(sorted({groups[j] for j in te}))))
    return out


def _leave_one_corpus_out(speakers: Sequence[str | None], corpora: Sequence[str] | None) -> list[Fold]:
    names = sorted(set(corpora or ()))
    if len(names) < 2:
        raise ConfigError(f"--folds {LOCO} needs at least two corpora",
                          fix="list several corpora (data: sources: in --config, or --data NAME=DIR repeated)")
    corpora = np.asarray(corpora)
    out = []
    for i, name in enumerate(names):
        test = np.flatnonzero(corpora == name)
        train = np.flatnonzero(corpora != name)
        out.append(Fold(i, train, test, tuple(sorted({str(speakers[j]) for j in test})), test_corpus=name))
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

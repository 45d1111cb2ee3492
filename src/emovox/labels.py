"""Canonical emotion vocabulary and each corpus's mapping onto it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emovox.errors import CorpusError

EMOTIONS = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "boredom",
)

# Common spellings found in folder names and CSV files.
ALIASES = {
    "neu": "neutral",
    "neutral": "neutral",
    "calm": "calm",
    "hap": "happy",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "ang": "angry",
    "anger": "angry",
    "angry": "angry",
    "fea": "fearful",
    "fear": "fearful",
    "fearful": "fearful",
    "anxiety": "fearful",
    "dis": "disgust",
    "disgust": "disgust",
    "sur": "surprised",
    "surprise": "surprised",
    "surprised": "surprised",
    "ps": "surprised",  # TESS "pleasant surprise"
    "pleasant_surprise": "surprised",
    "bor": "boredom",
    "boredom": "boredom",
    "bored": "boredom",
}


def canonical(label: str, *, source: str | None = None) -> str:
    """Map a label spelling to the canonical vocabulary.

    Parameters
    ----------
    label : str
        A label as found in a file name, folder name or CSV cell.
    source : str, optional
        Where the label came from, named in the error message.

    Returns
    -------
    str
        One of :data:`EMOTIONS`.

    Examples
    --------
    >>> canonical("Anger")
    'angry'
    """
    key = label.strip().lower().replace(" ", "_").replace("-", "_")
    if key in ALIASES:
        return ALIASES[key]
    raise CorpusError(
        f"unknown emotion label {label!r}",
        path=source,
        fix=f"use one of {', '.join(EMOTIONS)} or a common spelling of them",
    )


def apply_label_map(
    labels: Iterable[str], *, keep: Iterable[str] | None = None, merge: Mapping[str, str] | None = None
) -> list[str | None]:
    """Restrict and merge labels; labels that are dropped become ``None``.

    Parameters
    ----------
    labels : iterable of str
        Canonical labels.
    keep : iterable of str, optional
        Classes to keep (after merging); all others become ``None``.
    merge : mapping, optional
        ``{"calm": "neutral"}`` maps one class onto another before ``keep`` applies.
    """
    merge = dict(merge or {})
    kept = None if keep is None else set(keep)
    out: list[str | None] = []
    for label in labels:
        label = merge.get(label, label)
        out.append(label if kept is None or label in kept else None)
    return out


def ordered(labels: Iterable[str]) -> list[str]:
    """Unique labels in canonical order (so class indices are stable across runs)."""
    present = set(labels)
    return [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))

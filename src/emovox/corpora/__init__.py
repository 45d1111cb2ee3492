"""Corpus readers: each parses one layout into a manifest of :class:`Utterance` records.

Examples
--------
>>> from emovox.corpora import load_corpus
>>> manifest = load_corpus("../shared/data/emodb", corpus="auto")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from emovox.corpora import ased, cremad, emodb, generic, nemo, ravdess, savee, tess
from emovox.corpora.base import AUDIO_EXTENSIONS, Utterance
from emovox.errors import CorpusError

READERS = {m.NAME: m for m in (ravdess, cremad, tess, savee, emodb, nemo, ased, generic)}

__all__ = ["AUDIO_EXTENSIONS", "READERS", "Utterance", "detect", "load_corpus"]


def detect(root: str | Path) -> str:
    """Name of the first reader whose layout ``root`` matches."""
    root = Path(root)
    for name, reader in READERS.items():
        if reader.matches(root):
            return name
    raise CorpusError(
        "no known corpus layout found",
        path=root,
        fix=f"pass --corpus with one of {', '.join(READERS)}, or use label sub-folders or a CSV",
    )


def load_corpus(root: str | Path, *, corpus: str = "auto") -> list[Utterance]:
    """Read a corpus folder (or CSV) into a manifest.

    Parameters
    ----------
    root : path
        Corpus folder, or a CSV file for the generic reader.
    corpus : str
        Reader name (``ravdess``, ``cremad``, ``tess``, ``savee``, ``emodb``, ``nemo``, ``ased``,
        ``folder``)
        or ``"auto"`` to recognise the layout.

    Returns
    -------
    list of Utterance
        Sorted by path; never empty.
    """
    root = Path(root)
    if not root.exists():
        raise CorpusError("does not exist", path=root, fix="check the --data path")
    name = detect(root) if corpus == "auto" else corpus
    if name not in READERS:
        raise CorpusError(f"unknown corpus {name!r}", fix=f"use one of auto, {', '.join(READERS)}")
    manifest = READERS[name].read(root)
    if not manifest:
        raise CorpusError(f"no {name} audio files found", path=root,
                          fix="check the folder, or pass --corpus auto to recognise its layout")
    return manifest

"""The manifest record shared by all corpus readers, and helpers they use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

P = TypeVar("P")

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus"})


@dataclass(frozen=True)
class Utterance:
    """One labelled recording.

    Attributes
    ----------
    path : str
        Absolute path of the audio file.
    label : str
        Canonical emotion (see :mod:`emovox.labels`).
    speaker : str or None
        Speaker id, prefixed by the corpus name so ids never collide across corpora;
        ``None`` when the layout does not say who speaks.
    corpus : str
        Name of the reader that produced the record.
    meta : dict
        Anything else the file name carries (gender, intensity, sentence, ...).
    """

    path: str
    label: str
    speaker: str | None
    corpus: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return asdict(self)


def audio_files(root: Path, pattern: str = "**/*") -> Iterator[Path]:
    """Audio files under ``root`` matching ``pattern``, sorted for reproducibility."""
    for path in sorted(root.glob(pattern)):
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            yield path


def parsed_files(root: Path, parse: Callable[[Path], P | None]) -> Iterator[tuple[Path, P]]:
    """``(path, parse(path))`` for each audio file under ``root`` (sorted) whose name
    ``parse`` understands; files it returns ``None`` for are skipped."""
    for path in audio_files(root):
        parsed = parse(path)
        if parsed is not None:
            yield path, parsed

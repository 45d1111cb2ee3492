"""SAVEE: ``AudioData/DC/sa01.wav`` or ``ALL/DC_sa01.wav``; four male speakers."""

from __future__ import annotations

import re
from pathlib import Path

from emovox.corpora.base import Utterance, audio_files, parsed_files

NAME = "savee"
SPEAKERS = {"DC", "JE", "JK", "KL"}
EMOTION = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprised"}
_STEM = re.compile(r"^(?:(DC|JE|JK|KL)_)?(sa|su|a|d|f|h|n)(\d{2})$")


def _parse(path: Path) -> tuple[str, str, str] | None:
    m = _STEM.match(path.stem)
    if not m:
        return None
    speaker = m.group(1) or path.parent.name
    if speaker not in SPEAKERS:
        return None
    return speaker, EMOTION[m.group(2)], m.group(3)


def matches(root: Path) -> bool:
    return any(_parse(p) for p in audio_files(root))


def read(root: Path) -> list[Utterance]:
    out = []
    for path, (speaker, label, number) in parsed_files(root, _parse):
        meta = {"gender": "male", "sentence": number}
        out.append(Utterance(str(path.resolve()), label, f"{NAME}:{speaker}", NAME, meta))
    return out

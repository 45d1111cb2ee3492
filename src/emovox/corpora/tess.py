"""TESS: ``OAF_angry/OAF_back_angry.wav``; two female speakers (OAF, YAF), word, emotion."""

from __future__ import annotations

import re
from pathlib import Path

from emovox.corpora.base import Utterance, audio_files, parsed_files
from emovox.labels import canonical

NAME = "tess"
_PATTERN = re.compile(r"^(OAF|YAF)_([A-Za-z]+)_([A-Za-z_]+)$", re.IGNORECASE)
_EMOTIONS = {"angry", "disgust", "fear", "happy", "neutral", "ps", "sad", "pleasant_surprise", "pleasant_surprised"}


def _parse(path: Path) -> tuple[str, str, str] | None:
    m = _PATTERN.match(path.stem)
    if not m or m.group(3).lower() not in _EMOTIONS:
        return None
    return m.group(1).upper(), m.group(2).lower(), m.group(3).lower()


def matches(root: Path) -> bool:
    return any(_parse(p) for p in audio_files(root))


def read(root: Path) -> list[Utterance]:
    out = []
    for path, (speaker, word, emotion) in parsed_files(root, _parse):
        label = "surprised" if emotion.startswith("p") else canonical(emotion, source=path)
        meta = {"gender": "female", "sentence": word, "age": "older" if speaker == "OAF" else "younger"}
        out.append(Utterance(str(path.resolve()), label, f"{NAME}:{speaker}", NAME, meta))
    return out

"""EMO-DB: ``wav/03a01Fa.wav`` (speaker 2 digits, text 3 chars, emotion letter, version)."""

from __future__ import annotations

import re
from pathlib import Path

from emovox.corpora.base import Utterance, audio_files

NAME = "emodb"
EMOTION = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
MALE = {"03", "10", "11", "12", "15"}
_PATTERN = re.compile(r"^(\d{2})([a-b]\d{2})([WLEAFTN])([a-z])$")


def matches(root: Path) -> bool:
    return any(_PATTERN.match(p.stem) for p in audio_files(root))


def read(root: Path) -> list[Utterance]:
    out = []
    for path in audio_files(root):
        m = _PATTERN.match(path.stem)
        if not m:
            continue
        speaker, text, emotion, version = m.groups()
        meta = {"gender": "male" if speaker in MALE else "female", "sentence": text, "version": version}
        out.append(Utterance(str(path.resolve()), EMOTION[emotion], f"{NAME}:{speaker}", NAME, meta))
    return out

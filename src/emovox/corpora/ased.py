"""ASED (Amharic): ``01Neutral/n1-SS-RR-GG-PP.wav`` (emotion folder; sentence, repetition,
gender 01 female / 02 male, speaker)."""

from __future__ import annotations

import re
from pathlib import Path

from emovox.corpora.base import Utterance, audio_files, parsed_files

NAME = "ased"
EMOTION = {"neutral": "neutral", "fearful": "fearful", "happy": "happy", "sad": "sad", "angry": "angry"}
_FOLDER = re.compile(r"^\d{2}(" + "|".join(e.capitalize() for e in EMOTION) + r")$")
_NAME = re.compile(r"^[a-zA-Z]\d-(\d{2})-(\d{2})-(0[12])-(\d{2})$")


def _parse(path: Path) -> tuple[str, re.Match] | None:
    folder, name = _FOLDER.match(path.parent.name), _NAME.match(path.stem)
    return (EMOTION[folder.group(1).lower()], name) if folder and name else None


def matches(root: Path) -> bool:
    return any(_parse(p) for p in audio_files(root, "*/*"))


def read(root: Path) -> list[Utterance]:
    out = []
    for path, (label, m) in parsed_files(root, _parse):
        sentence, repetition, gender, speaker = m.groups()
        meta = {"gender": "female" if gender == "01" else "male", "sentence": sentence, "repetition": repetition}
        out.append(Utterance(str(path.resolve()), label, f"{NAME}:{speaker}", NAME, meta))
    return out

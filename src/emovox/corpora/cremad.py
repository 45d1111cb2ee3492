"""CREMA-D: ``AudioWAV/1001_DFA_ANG_XX.wav`` (actor, sentence, emotion, intensity)."""

from __future__ import annotations

import re
from pathlib import Path

from emovox.corpora.base import Utterance, audio_files

NAME = "cremad"
EMOTION = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
INTENSITY = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_PATTERN = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)$")


def matches(root: Path) -> bool:
    return any(_PATTERN.match(p.stem) for p in audio_files(root))


def read(root: Path) -> list[Utterance]:
    out = []
    for path in audio_files(root):
        m = _PATTERN.match(path.stem)
        if not m:
            continue
        actor, sentence, emotion, intensity = m.groups()
        meta = {"sentence": sentence, "intensity": INTENSITY[intensity]}
        out.append(Utterance(str(path.resolve()), EMOTION[emotion], f"{NAME}:{actor}", NAME, meta))
    return out

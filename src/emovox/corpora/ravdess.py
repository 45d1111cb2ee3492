"""RAVDESS speech: ``Actor_NN/03-01-EE-II-SS-RR-NN.wav`` (modality-channel-emotion-...)."""

from __future__ import annotations

from pathlib import Path

from emovox.corpora.base import Utterance, audio_files

NAME = "ravdess"
EMOTION = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}


def _fields(path: Path) -> list[str] | None:
    parts = path.stem.split("-")
    ok = len(parts) == 7 and all(p.isdigit() for p in parts) and parts[2] in EMOTION
    return parts if ok else None


def matches(root: Path) -> bool:
    return any(_fields(p) for p in audio_files(root, "Actor_*/*"))


def read(root: Path) -> list[Utterance]:
    """Audio-only speech files (modality 03, vocal channel 01); song and video are ignored."""
    out = []
    for path in audio_files(root, "**/*"):
        f = _fields(path)
        if f is None or f[0] != "03" or f[1] != "01":
            continue
        actor = int(f[6])
        meta = {
            "gender": "male" if actor % 2 else "female",
            "intensity": "normal" if f[3] == "01" else "strong",
            "sentence": f[4],
            "repetition": f[5],
        }
        out.append(Utterance(str(path.resolve()), EMOTION[f[2]], f"{NAME}:{actor:02d}", NAME, meta))
    return out

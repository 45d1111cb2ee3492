"""nEMO (Polish): ``samples/SPK_EMOTION_N.wav`` with an optional ``data.tsv`` of metadata."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emovox.corpora.base import Utterance, audio_files

NAME = "nemo"
EMOTION = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprised",
}
_PATTERN = re.compile(r"^([A-Z]{2}\d)_(" + "|".join(EMOTION) + r")_(\d+)$")


def matches(root: Path) -> bool:
    return any(_PATTERN.match(p.stem) for p in audio_files(root))


def _metadata(root: Path) -> dict[str, dict]:
    """``data.tsv`` rows by file stem (sentence, gender, age); empty when the file is absent."""
    table = root / "data.tsv"
    if not table.is_file():
        return {}
    with table.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {Path(r["file_id"]).stem: {"sentence": r.get("raw_text", ""), "gender": r.get("gender", "").strip(),
                                          "age": r.get("age", "").strip()} for r in rows if r.get("file_id")}


def read(root: Path) -> list[Utterance]:
    meta = _metadata(root)
    out = []
    for path in audio_files(root):
        m = _PATTERN.match(path.stem)
        if not m:
            continue
        speaker, emotion, _ = m.groups()
        out.append(Utterance(str(path.resolve()), EMOTION[emotion], f"{NAME}:{speaker}", NAME,
                             dict(meta.get(path.stem, {}))))
    return out

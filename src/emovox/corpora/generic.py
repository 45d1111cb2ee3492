"""Your own data: one sub-folder per label, or a CSV with ``path,label[,speaker]``.

In a folder layout, a second level of folders (``label/speaker/file.wav``) names the
speaker; without it no speaker is known and only an explicitly named random split works.
"""

from __future__ import annotations

import csv
from pathlib import Path

from emovox.corpora.base import Utterance, audio_files
from emovox.errors import CorpusError
from emovox.labels import ALIASES, canonical

NAME = "folder"


def matches(root: Path) -> bool:
    if root.is_file():
        return root.suffix.lower() == ".csv"
    return any(d.is_dir() and d.name.lower() in ALIASES for d in root.iterdir())


def read(root: Path) -> list[Utterance]:
    return _read_csv(root) if root.is_file() else _read_folders(root)


def _read_folders(root: Path) -> list[Utterance]:
    out = []
    for label_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        if label_dir.name.lower() not in ALIASES:
            continue
        label = canonical(label_dir.name, source=label_dir)
        for path in audio_files(label_dir):
            rel = path.relative_to(label_dir).parts
            speaker = f"{NAME}:{rel[0]}" if len(rel) > 1 else None
            out.append(Utterance(str(path.resolve()), label, speaker, NAME, {}))
    return out


def _read_csv(csv_path: Path) -> list[Utterance]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower() for f in reader.fieldnames or []}
        if not {"path", "label"} <= fields:
            raise CorpusError("CSV needs the columns path,label[,speaker]", path=csv_path,
                              fix="add a header row 'path,label,speaker'")
        out = []
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            path = Path(row["path"])
            if not path.is_absolute():
                path = csv_path.parent / path
            label = canonical(row["label"], source=f"{csv_path} (row for {row['path']})")
            speaker = f"{NAME}:{row['speaker']}" if row.get("speaker") else None
            out.append(Utterance(str(path.resolve()), label, speaker, NAME, {}))
    return out

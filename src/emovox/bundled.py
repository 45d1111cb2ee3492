"""The default model shipped inside the package (used when no run dir is given)."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from emovox.errors import CheckpointError

PACKAGE_DIR = "bundled_model"


def bundled_model_path() -> Path:
    """Path of the bundled ``model.pt``; a clear error when this install has none."""
    path = Path(str(resources.files("emovox") / PACKAGE_DIR / "model.pt"))
    if not path.exists():
        raise CheckpointError("this emovox install has no bundled model", path=path,
                              fix="pass --model RUN_DIR (a run dir written by `emovox train`)")
    return path


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (the bundled weights are checked against a recorded one)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

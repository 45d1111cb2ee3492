"""Where a model comes from: a run dir, a checkpoint path, or the model bundled in the package."""

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


def resolve_model(run_dir: str | Path | None) -> Path:
    """``model.pt`` of a run dir (or the path itself); ``None`` means the bundled model."""
    if run_dir is None:
        return bundled_model_path()
    path = Path(run_dir)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise CheckpointError("no model.pt here", path=path,
                              fix="pass a run dir written by `emovox train`, or omit --model for the bundled model")
    return path

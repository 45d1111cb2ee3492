"""Writing files all-or-nothing: to a temporary name beside the target, then renamed into place.

Every output emovox writes (checkpoints, cache entries, run-dir files, ONNX models,
plots) goes through :func:`atomic_write`, so a crash or Ctrl-C never leaves a
half-written file under the real name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Examples
    --------
    >>> atomic_write(Path("out.txt"), lambda tmp: tmp.write_text("done"))  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path``, atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2)))

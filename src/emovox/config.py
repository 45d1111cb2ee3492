"""Dataclass configuration shared by training and inference; round-trips to JSON/YAML."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from emovox.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, *, source: str = "config") -> T:
    """Build a dataclass from a dict, naming any unknown key (typos fail loudly)."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}", path=source,
                          fix=f"valid keys: {', '.join(sorted(names))}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if isinstance(data.get(f.name), list) and f.type in ("tuple[str, ...] | None", "tuple[str, ...]"):
            data[f.name] = tuple(data[f.name])
    return cls(**data)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", path=path) from None
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=path)
    return data

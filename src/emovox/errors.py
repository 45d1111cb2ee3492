"""Exception types. Each carries the offending path so the CLI can print one clear line."""

from __future__ import annotations

from pathlib import Path


class EmovoxError(Exception):
    """Base class: a user-facing error with an optional offending path and a fix."""

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.fix = fix
        text = f"{self.path}: {message}" if self.path else message
        if fix:
            text = f"{text} ({fix})"
        super().__init__(text)


class AudioError(EmovoxError):
    """Audio that cannot be decoded, is empty or silent, or is too little for the model."""


class CorpusError(EmovoxError):
    """A corpus folder that has no recognisable files or an unknown label."""


class ConfigError(EmovoxError):
    """An invalid configuration value."""


class CheckpointError(EmovoxError):
    """A run dir or checkpoint that is missing or corrupt."""

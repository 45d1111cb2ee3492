"""emovox: speech emotion recognition with honest, speaker-independent evaluation.

The main object is :class:`Predictor`: it loads a trained model (a run dir written by
``emovox train``, or the model bundled in the package) and classifies files, folders,
arrays and long recordings. ``import emovox`` stays light: :class:`Predictor` and
:func:`audio_files` (and with them torch) are imported on first use.

Examples
--------
>>> from emovox import Predictor, audio_files
>>> p = Predictor.load()  # the bundled model; Predictor.load("runs/my-run") for your own
>>> p.predict("examples/hello.flac")["label"]  # doctest: +SKIP
'neutral'
>>> rows = p.predict(audio_files("recordings/"))  # doctest: +SKIP
>>> p.timeline("meeting.wav")[0]  # doctest: +SKIP
{'start': 0.52, 'end': 3.1, 'label': 'happy', 'scores': {...}}
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from emovox.errors import AudioError, CheckpointError, ConfigError, CorpusError, EmovoxError

if TYPE_CHECKING:
    from emovox.audio import audio_files
    from emovox.predict import Predictor

__version__ = "0.1.0"

_LAZY = {"Predictor": "emovox.predict", "audio_files": "emovox.audio"}

__all__ = [
    "AudioError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "EmovoxError",
    "Predictor",
    "__version__",
    "audio_files",
]


def __getattr__(name: str):
    """Import :class:`Predictor` and :func:`audio_files` on first access (PEP 562)."""
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emovox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

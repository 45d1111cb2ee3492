"""emovox: speech emotion recognition with honest, speaker-independent evaluation."""

from emovox.errors import AudioError, CheckpointError, ConfigError, CorpusError, EmovoxError

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "EmovoxError",
    "__version__",
]

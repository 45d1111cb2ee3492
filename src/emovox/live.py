"""Live audio: sources that yield blocks (microphone, file, array) and sliding-window emotion.

Tests drive :func:`listen` from a file or an array; no sound card is needed for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emovox import audio
from emovox.errors import AudioError


def array_source(y: np.ndarray, *, block_s: float = 0.1, sr: int, realtime: bool = False) -> Iterator[np.ndarray]:
    """Blocks of an in-memory mono signal; ``realtime=True`` paces them like a microphone."""
    block = max(1, int(block_s * sr))
    for i in range(0, len(y), block):
        if realtime:
            time.sleep(block / sr)
        yield y[i : i + block]


def file_source(path: str | Path, *, sr: int, block_s: float = 0.1, realtime: bool = False) -> Iterator[np.ndarray]:
    """Blocks of a file at ``sr`` Hz, streamed from disk."""
    for chunk in audio.stream(path, sr=sr, block_s=max(block_s, 1.0)):
        yield from array_source(chunk, block_s=block_s, sr=sr, realtime=realtime)


def microphone_source(*, sr: int, block_s: float = 0.1, device: int | str | None = None) -> Iterator[np.ndarray]:
    """Blocks from the default (or given) input device via ``sounddevice`` (PortAudio)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise AudioError(f"microphone input unavailable ({exc})",
                         fix="pip install sounddevice and install PortAudio (Debian: libportaudio2)") from None
    with sd.InputStream(samplerate=sr, channels=1, dtype="float32", blocksize=int(block_s * sr),
                        device=device) as stream:
        while True:
            block, _ = stream.read(int(block_s * sr))
            yield block[:, 0].copy()


@dataclass(frozen=True)
class LiveResult:
    """One window's emotion. Times in seconds; ``latency_s`` runs from the arrival of the
    window's last block to the result."""

    start: float
    end: float
    label: str
    scores: dict
    level_db: float
    latency_s: float

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "label": self.label, "scores": self.scores,
                "level_db": self.level_db, "latency_s": self.latency_s}


def listen(predictor, blocks: Iterable[np.ndarray], *, window_s: float = 2.0, hop_s: float = 0.5,
           silence_db: float = -50.0) -> Iterator[LiveResult]:
    """Classify the last ``window_s`` seconds every ``hop_s`` seconds of a block stream.

    Windows quieter than ``silence_db`` dBFS are reported as ``"silence"`` with empty scores.
    """
    sr = predictor.features.sample_rate
    window, hop = int(window_s * sr), int(hop_s * sr)
    buf = np.zeros(0, dtype=np.float32)
    consumed = 0  # samples dropped from the front of buf
    next_end = window
    for block in blocks:
        arrived = time.perf_counter()
        buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        while consumed + len(buf) >= next_end:
            seg = buf[next_end - window - consumed : next_end - consumed]
            level = float(10 * np.log10(max(np.mean(seg.astype(np.float64) ** 2), 1e-12)))
            if level < silence_db:
                label, scores = "silence", {}
            else:
                r = predictor.predict_signals([seg])[0]
                label, scores = r["label"], r["scores"]
            yield LiveResult(round((next_end - window) / sr, 3), round(next_end / sr, 3), label, scores,
                             round(level, 1), time.perf_counter() - arrived)
            next_end += hop
        drop = max(0, next_end - window - consumed)
        buf, consumed = buf[drop:], consumed + drop

"""Split long audio into speech segments with an energy-based voice activity detector.

Works block by block on a stream (see :func:`emovox.audio.stream`), so memory stays flat
on recordings of any length: only the current segment's samples are held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VadConfig:
    """Energy VAD settings.

    Attributes
    ----------
    frame_s : float
        Analysis frame length in seconds.
    threshold_db : float
        A frame is speech when its RMS level is above this many dBFS.
    min_speech_s, min_silence_s : float
        Shorter speech is dropped; shorter pauses do not end a segment.
    max_segment_s : float
        Longer speech is cut into segments of at most this length.
    pad_s : float
        Audio kept before and after each detected segment.
    """

    frame_s: float = 0.03
    threshold_db: float = -45.0
    min_speech_s: float = 0.3
    min_silence_s: float = 0.4
    max_segment_s: float = 8.0
    pad_s: float = 0.1


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: times in seconds from the start of the recording, and its samples."""

    start: float
    end: float
    audio: np.ndarray


def frame_db(y: np.ndarray, frame: int) -> np.ndarray:
    """RMS level in dBFS of consecutive non-overlapping frames of ``frame`` samples."""
    n = len(y) // frame
    frames = y[: n * frame].reshape(n, frame).astype(np.float64)
    return 10.0 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))


def speech_segments(blocks: Iterable[np.ndarray], sr: int, cfg: VadConfig | None = None) -> Iterator[Segment]:
    """Yield speech segments from consecutive audio blocks (mono, ``sr`` Hz).

    Examples
    --------
    >>> from emovox.audio import stream
    >>> segs = list(speech_segments(stream("call.wav", sr=16000), 16000))  # doctest: +SKIP
    """
    cfg = cfg or VadConfig()
    frame = max(1, int(cfg.frame_s * sr))
    pad = int(cfg.pad_s * sr)
    max_len = int(cfg.max_segment_s * sr)
    min_gap = int(cfg.min_silence_s / cfg.frame_s)
    history = np.zeros(0, dtype=np.float32)  # samples not yet consumed by a segment
    offset = 0  # absolute sample index of history[0]
    start: int | None = None  # absolute start of the open segment
    silent = 0  # trailing silent frames in the open segment
    pos = 0  # absolute index of the next frame to analyse
    for block in blocks:
        history = np.concatenate([history, block.astype(np.float32, copy=False)])
        levels = frame_db(history[pos - offset :], frame)
        for level in levels:
            speech = level > cfg.threshold_db
            if start is None and speech:
                start, silent = pos, 0
            elif start is not None:
                silent = 0 if speech else silent + 1
                too_long = pos + frame - start >= max_len
                if silent >= min_gap or too_long:
                    end = pos + frame - silent * frame
                    seg = _emit(history, offset, start, end, pad, sr, cfg)
                    if seg is not None:
                        yield seg
                    start = pos + frame if too_long and speech else None
                    silent = 0
            pos += frame
        keep_from = (start if start is not None else pos) - pad
        cut = max(0, keep_from - offset)
        history, offset = history[cut:], offset + cut
    if start is not None:
        seg = _emit(history, offset, start, pos - silent * frame, pad, sr, cfg)
        if seg is not None:
            yield seg


def _emit(history, offset, start, end, pad, sr, cfg) -> Segment | None:
    if end - start < cfg.min_speech_s * sr:
        return None
    a = max(offset, start - pad)
    b = min(offset + len(history), end + pad)
    return Segment(a / sr, b / sr, history[a - offset : b - offset].copy())

"""Split long audio into speech segments with a voice activity detector (Silero or energy).

Works block by block on a stream (see :func:`emovox.audio.stream`), so memory stays flat
on recordings of any length: only the current segment's samples are held. The detectors
themselves (speech or not, frame by frame) are in :mod:`emovox.vad`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain

import numpy as np

from emovox.errors import ConfigError
from emovox.vad import GATE_DB, EnergyDetector, SileroDetector, frame_db

VAD_METHODS = ("silero", "energy")

__all__ = ["VAD_METHODS", "Segment", "VadConfig", "detector", "frame_db", "speech_segments"]


@dataclass(frozen=True)
class VadConfig:
    """Voice activity detection settings.

    Attributes
    ----------
    method : str
        ``"silero"`` (a learned detector, 32 ms frames; holds up in noise) or ``"energy"``
        (a level gate on ``frame_s`` frames).
    threshold : float
        Silero: a frame is speech when its speech probability reaches this (0-1).
    gate_db : float
        Silero: where the background is itself speech (babble), a frame also needs a level
        this many dB over the background's (:class:`emovox.vad.SileroDetector`); 0: off.
    frame_s : float
        Energy: analysis frame length in seconds.
    threshold_db : float
        Energy: a frame is speech when its RMS level is above this many dBFS.
    min_speech_s, min_silence_s : float
        Shorter speech is dropped; shorter pauses do not end a segment.
    max_segment_s : float
        Longer speech is cut into segments of at most this length.
    pad_s : float
        Audio kept before and after each detected segment.
    """

    method: str = "silero"
    threshold: float = 0.5
    gate_db: float = GATE_DB
    frame_s: float = 0.03
    threshold_db: float = -45.0
    min_speech_s: float = 0.3
    min_silence_s: float = 0.4
    max_segment_s: float = 8.0
    pad_s: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in VAD_METHODS:
            raise ConfigError(f"unknown VAD method {self.method!r}", fix=f"use one of {', '.join(VAD_METHODS)}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"the Silero threshold is a probability in (0, 1), got {self.threshold}")
        if self.frame_s <= 0 or self.max_segment_s <= 0:
            raise ConfigError("frame_s and max_segment_s must be positive")


def detector(sr: int, cfg: VadConfig) -> EnergyDetector | SileroDetector:
    """A fresh frame-level speech detector for one stream at ``sr`` Hz, as ``cfg`` says."""
    if cfg.method == "silero":
        return SileroDetector(sr, threshold=cfg.threshold, gate_db=cfg.gate_db)
    return EnergyDetector(sr, frame_s=cfg.frame_s, threshold_db=cfg.threshold_db)


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: times in seconds from the start of the recording, and its samples."""

    start: float
    end: float
    audio: np.ndarray


def speech_segments(blocks: Iterable[np.ndarray], sr: int, cfg: VadConfig | None = None) -> Iterator[Segment]:
    """Yield speech segments from consecutive audio blocks (mono, ``sr`` Hz).

    Examples
    --------
    >>> from emovox.audio import stream
    >>> segs = list(speech_segments(stream("call.wav", sr=16000), 16000))  # doctest: +SKIP
    """
    cfg = cfg or VadConfig()
    detect = detector(sr, cfg)
    hop: Fraction = detect.hop  # samples of the stream per decision

    def at(frame: int) -> int:
        """Sample index where a frame starts."""
        return int(frame * hop)

    pad = int(cfg.pad_s * sr)
    max_len = int(cfg.max_segment_s * sr)
    min_gap = int(cfg.min_silence_s * sr / hop)  # frames of silence that end a segment
    history = np.zeros(0, dtype=np.float32)  # samples not yet consumed by a segment
    offset = 0  # absolute sample index of history[0]
    start: int | None = None  # first frame of the open segment
    silent = 0  # trailing silent frames in the open segment
    k = 0  # index of the next frame to decide
    for block in chain(blocks, [None]):  # None: the stream has ended
        if block is None:
            decisions = detect.flush()
        else:
            history = np.concatenate([history, block.astype(np.float32, copy=False)])
            decisions = detect(block)
        for speech in decisions:
            if start is None and speech:
                start, silent = k, 0
            elif start is not None:
                silent = 0 if speech else silent + 1
                too_long = at(k + 1) - at(start) >= max_len
                if silent >= min_gap or too_long:
                    seg = _emit(history, offset, at(start), at(k + 1 - silent), pad, sr, cfg)
                    if seg is not None:
                        yield seg
                    start = k + 1 if too_long and speech else None
                    silent = 0
            k += 1
        cut = max(0, at(start if start is not None else k) - pad - offset)
        history, offset = history[cut:], offset + cut
    if start is not None:
        seg = _emit(history, offset, at(start), at(k - silent), pad, sr, cfg)
        if seg is not None:
            yield seg


def _emit(history, offset, start, end, pad, sr, cfg) -> Segment | None:
    if end - start < cfg.min_speech_s * sr:
        return None
    a = max(offset, start - pad)
    b = min(offset + len(history), end + pad)
    return Segment(a / sr, b / sr, history[a - offset : b - offset].copy())

"""The utterance front end in torch: waveforms -> one vector per clip, batched, on any device.

:class:`UtteranceEncoder` trims leading and trailing silence, then stacks the vectors
named in its parts: ``"voice"`` (eGeMAPS-style descriptors and their functionals,
:mod:`emovox.voice`), ``"dvector"``, ``"dvector_layers"``, ``"dvector_spread"`` and
``"dvector_peak"`` (the GE2E speaker encoder's embedding, and its layers' means, standard
deviations and maxima over the clip, :class:`emovox.ge2e.DVectors`). A batch holds clips of
different lengths, zero-padded, with their lengths; each clip's vector depends on its own
samples only. It is pure tensor code, so the same module runs on the CPU or on CUDA and
exports, with the classifier behind it, as one ONNX graph from waveform to probabilities
(:mod:`emovox.export`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from emovox.device import resolve

DVECTOR_PARTS = ("dvector", "dvector_layers", "dvector_spread", "dvector_peak")  # DVectors' outputs, in order
PARTS = ("voice", *DVECTOR_PARTS)  # the utterance vectors computed here
VERSION = 4  # raise with any change to what these vectors are: feature caches key on it
BATCH = 16  # clips per forward pass when extracting (sorted by length, so little padding)
TRIM_FRAME, TRIM_HOP = 512, 256  # samples: librosa.effects.trim's frames at 16 kHz
# the front end's STFTs return real (re, im) pairs: ONNX's STFT has no complex type
warnings.filterwarnings("ignore", message="stft with return_complex=False is deprecated")


class Trim(nn.Module):
    """Drop each clip's leading and trailing audio more than ``top_db`` below its loudest
    frame (as ``librosa.effects.trim``); a clip whose speech would be shorter than one
    frame is kept whole. Returns the shifted, zero-padded waveforms and their new lengths."""

    def __init__(self, top_db: float):
        super().__init__()
        self.top_db = top_db
        self.register_buffer("ones", torch.ones(1, 1, TRIM_FRAME), persistent=False)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = TRIM_FRAME // 2
        energy = nn.functional.conv1d(nn.functional.pad(wave.square()[:, None], (half, half)), self.ones,
                                      stride=TRIM_HOP)[:, 0] / TRIM_FRAME  # (B, frames), centred frames
        db = 10 * torch.log10(energy.clamp_min(1e-10))
        loud = db > db.max(dim=1, keepdim=True).values - self.top_db
        n = loud.shape[1]
        first = loud.to(torch.int64).argmax(1)
        last = n - 1 - loud.flip(1).to(torch.int64).argmax(1)
        start = first * TRIM_HOP
        end = torch.minimum((last + 1) * TRIM_HOP, lengths)
        whole = (end - start) < TRIM_FRAME
        start = torch.where(whole, torch.zeros_like(start), start)
        new_len = torch.where(whole, lengths, end - start)
        pos = torch.arange(wave.shape[1], device=wave.device)[None, :]
        idx = (start[:, None] + pos).clamp_max(wave.shape[1] - 1)
        return wave.gather(1, idx) * (pos < new_len[:, None]).to(wave.dtype), new_len


class UtteranceEncoder(nn.Module):
    """Waveforms ``(B, N)`` at 16 kHz, zero-padded, and lengths ``(B,)`` -> vectors ``(B, F)``.

    Parameters
    ----------
    parts : sequence of str
        Vectors stacked in this order, from :data:`PARTS`.
    speaker_encoder : str, optional
        A local GE2E checkpoint (default: the one shipped with emovox).
    trim_db : float, optional
        Silence trimming threshold in dB below the loudest frame (``None``: no trimming).
    """

    def __init__(self, parts: Sequence[str], *, speaker_encoder: str | None = None, trim_db: float | None = 30.0):
        super().__init__()
        self.parts = tuple(parts)
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"the torch front end computes {PARTS}, not {sorted(unknown)}")
        self.trim = Trim(trim_db) if trim_db is not None else None
        self.voice = None
        if "voice" in self.parts:
            from emovox.voice import VoiceFeatures

            self.voice = VoiceFeatures()
        self.dvectors = None
        if set(DVECTOR_PARTS) & set(self.parts):
            from emovox.ge2e import DVectors

            self.dvectors = DVectors(speaker_encoder)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.trim is not None:
            wave, lengths = self.trim(wave, lengths)
        made = {}
        if self.voice is not None:
            made["voice"] = self.voice(wave, lengths)
        if self.dvectors is not None:
            made.update(zip(DVECTOR_PARTS, self.dvectors(wave, lengths), strict=True))
        return torch.cat([made[p] for p in self.parts], dim=1)


@lru_cache(maxsize=4)
def load(parts: tuple[str, ...], speaker_encoder: str | None, trim_db: float | None, device: str) -> UtteranceEncoder:
    """An :class:`UtteranceEncoder` in eval mode on ``device``, built once per process (its
    tensors outside inference mode, so that the same module can be traced for export)."""
    with torch.inference_mode(False):
        return UtteranceEncoder(parts, speaker_encoder=speaker_encoder, trim_db=trim_db).to(device).eval()


def pad(signals: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono signals as one zero-padded ``(B, N)`` float32 tensor and their lengths ``(B,)``."""
    lengths = torch.tensor([len(y) for y in signals], dtype=torch.int64)
    wave = torch.zeros(len(signals), int(lengths.max()) if len(signals) else 0)
    for i, y in enumerate(signals):
        wave[i, : len(y)] = torch.from_numpy(np.asarray(y, dtype=np.float32))
    return wave, lengths


def in_batches(signals: Sequence[np.ndarray], run: Callable[[torch.Tensor, torch.Tensor], np.ndarray]
               ) -> list[np.ndarray]:
    """``run(wave, lengths) -> (B, F)`` over the signals :data:`BATCH` at a time, clips of
    similar length together (little padding); one ``(F,)`` vector per signal, in order."""
    order = sorted(range(len(signals)), key=lambda i: len(signals[i]))
    out: list[np.ndarray | None] = [None] * len(signals)
    for k in range(0, len(order), BATCH):
        idx = order[k : k + BATCH]
        for i, v in zip(idx, run(*pad([signals[i] for i in idx])), strict=True):
            out[i] = v
    return out


@torch.inference_mode()
def encode(signals: Sequence[np.ndarray], parts: Sequence[str], *, speaker_encoder: str | None = None,
           trim_db: float | None = 30.0, device: str = "auto") -> list[np.ndarray]:
    """One ``(F,)`` float32 vector per 16 kHz signal: clips of similar length go through
    the encoder :data:`BATCH` at a time, on ``device`` (``auto``: CUDA when there is one)."""
    encoder = load(tuple(parts), speaker_encoder, trim_db, str(resolve(device)))
    dev = next(encoder.buffers()).device
    return in_batches(signals, lambda wave, lengths: encoder(wave.to(dev), lengths.to(dev)).float().cpu().numpy())

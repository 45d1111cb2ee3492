"""Frame-level speech detectors for the segmenter: an energy gate and Silero VAD.

A detector is fed consecutive blocks of a mono stream and answers, for every analysis
frame completed so far, whether it holds speech. Each keeps less than one frame of audio
and (Silero) its recurrent state, so memory stays flat on recordings of any length.

Silero VAD (MIT, github.com/snakers4/silero-vad) ships its model in the ``silero-vad``
wheel; we read its 16 kHz weights from there without importing the package (whose import sets torch's
thread count) and run the network in torch: the convolutional encoder over every frame of
a block at once, then the LSTM over the block's frames in one call, which gives the same
probabilities as its streaming model one frame at a time at a fraction of the cost.
"""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from emovox.errors import ConfigError

SILERO_SR = 16000  # Hz: the rate the shipped weights expect
SILERO_FRAME = 512  # samples per decision at SILERO_SR (32 ms)
SILERO_CONTEXT = 64  # samples of the previous frame prefixed to each frame
SILERO_WEIGHTS = "silero_vad.jit"  # TorchScript; its 16 kHz half is read (the wheel's .safetensors differ)
# our names -> the TorchScript model's 16 kHz parameters and STFT basis
JIT_NAMES = {
    "stft_conv.weight": "_model.stft.forward_basis_buffer",
    **{f"conv{i + 1}.{p}": f"_model.encoder.{i}.reparam_conv.{p}" for i in range(4) for p in ("weight", "bias")},
    **{f"lstm_cell.{p}": f"_model.decoder.rnn.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    **{f"final_conv.{p}": f"_model.decoder.decoder.2.{p}" for p in ("weight", "bias")},
}
STFT_HOP = 128  # samples; the encoder's learned STFT
HIDDEN = 128  # LSTM width
RELEASE = 0.15  # Silero: once in speech, a frame stays speech down to threshold - RELEASE (its own rule)


def frame_db(y: np.ndarray, frame: int) -> np.ndarray:
    """RMS level in dBFS of consecutive non-overlapping frames of ``frame`` samples."""
    n = len(y) // frame
    frames = y[: n * frame].reshape(n, frame).astype(np.float64)
    return 10.0 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))


class EnergyDetector:
    """Speech where a frame's RMS level is above ``threshold_db`` dBFS.

    Parameters
    ----------
    sr : int
        Sample rate of the stream in Hz.
    frame_s : float
        Frame length in seconds.
    threshold_db : float
        Level in dBFS above which a frame is speech.
    """

    def __init__(self, sr: int, *, frame_s: float, threshold_db: float):
        self.frame = max(1, int(frame_s * sr))
        self.hop = Fraction(self.frame)  # samples of the stream per decision
        self.threshold_db = threshold_db
        self._rest = np.zeros(0, dtype=np.float32)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Decisions (bool) for the frames this block completes."""
        y = np.concatenate([self._rest, block.astype(np.float32, copy=False)])
        n = len(y) // self.frame
        self._rest = y[n * self.frame :]
        return frame_db(y[: n * self.frame], self.frame) > self.threshold_db

    def flush(self) -> np.ndarray:
        """Decisions for what the stream's end completes: none (a partial frame is dropped)."""
        return np.zeros(0, dtype=bool)


class SileroDetector:
    """Speech where Silero VAD's probability for a 32 ms frame reaches ``threshold``, and
    on while it stays above ``threshold - RELEASE``.

    Streams at another rate than 16 kHz are resampled on the way in (soxr keeps the filter
    state between blocks); a decision then covers 32 ms of the stream, a fractional number
    of its samples (``hop``).

    Parameters
    ----------
    sr : int
        Sample rate of the stream in Hz.
    threshold : float
        Speech probability in [0, 1] from which a frame is speech.

    Examples
    --------
    >>> det = SileroDetector(16000, threshold=0.5)
    >>> det(np.zeros(16000, np.float32)).shape  # one second: 31 whole frames
    (31,)
    """

    def __init__(self, sr: int, *, threshold: float):
        self.net = _silero_net()
        self.hop = Fraction(SILERO_FRAME * sr, SILERO_SR)
        self.threshold = threshold
        self._resampler = None if sr == SILERO_SR else soxr.ResampleStream(sr, SILERO_SR, 1, dtype="float32")
        self._rest = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(SILERO_CONTEXT, dtype=np.float32)
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._speaking = False

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Decisions (bool) for the 32 ms frames this block completes."""
        return self._decide(self.probabilities(block))

    def flush(self) -> np.ndarray:
        """Decisions for the frames the resampler still held at the stream's end."""
        if self._resampler is None:
            return np.zeros(0, dtype=bool)
        return self._decide(self.probabilities(np.zeros(0, dtype=np.float32), last=True))

    def _decide(self, probs: np.ndarray) -> np.ndarray:
        out = np.zeros(len(probs), dtype=bool)
        for i, p in enumerate(probs):
            self._speaking = bool(p >= (self.threshold - RELEASE if self._speaking else self.threshold))
            out[i] = self._speaking
        return out

    @torch.inference_mode()
    def probabilities(self, block: np.ndarray, *, last: bool = False) -> np.ndarray:
        """Speech probability of each 32 ms frame this block completes (state carried on)."""
        y = block.astype(np.float32, copy=False)
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y, last=last)
        y = np.concatenate([self._rest, y])
        n = len(y) // SILERO_FRAME
        self._rest = y[n * SILERO_FRAME :]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = y[: n * SILERO_FRAME].reshape(n, SILERO_FRAME)
        context = np.concatenate([self._context[None], frames[:-1, -SILERO_CONTEXT:]])
        self._context = frames[-1, -SILERO_CONTEXT:].copy()
        x = torch.from_numpy(np.concatenate([context, frames], axis=1))
        probs, self._state = self.net(x, self._state)
        return probs.numpy()


class _SileroNet(torch.nn.Module):
    """Silero VAD v6 at 16 kHz: learned STFT, four convolutions, an LSTM, a sigmoid."""

    def __init__(self, w: dict[str, torch.Tensor]):
        super().__init__()
        self.w = w
        self.lstm = torch.nn.LSTM(HIDDEN, HIDDEN, batch_first=True)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(w[f"lstm_cell.{name}"])
        self.eval()

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None):
        """``x``: (frames, 576) context + frame samples -> (probabilities (frames,), LSTM state)."""
        w = self.w
        x = F.pad(x.unsqueeze(1), (0, SILERO_CONTEXT), mode="reflect")
        x = F.conv1d(x, w["stft_conv.weight"], stride=STFT_HOP)
        half = x.shape[1] // 2
        x = torch.sqrt(x[:, :half] ** 2 + x[:, half:] ** 2)
        for i, stride in ((1, 1), (2, 2), (3, 2), (4, 1)):
            x = F.relu(F.conv1d(x, w[f"conv{i}.weight"], w[f"conv{i}.bias"], stride=stride, padding=1))
        out, state = self.lstm(x.squeeze(-1).unsqueeze(0), state)
        logits = F.conv1d(F.relu(out[0]).unsqueeze(-1), w["final_conv.weight"], w["final_conv.bias"])
        return torch.sigmoid(logits).reshape(-1), state


@lru_cache(maxsize=1)
def _silero_net() -> _SileroNet:
    model = torch.jit.load(str(_silero_weights()), map_location="cpu")
    params = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return _SileroNet({ours: params[theirs].detach().clone() for ours, theirs in JIT_NAMES.items()})


def _silero_weights() -> Path:
    """The TorchScript model inside the installed ``silero-vad`` wheel (its package is not imported)."""
    spec = importlib.util.find_spec("silero_vad")
    path = None if spec is None else Path(next(iter(spec.submodule_search_locations))) / "data" / SILERO_WEIGHTS
    if path is None or not path.is_file():
        raise ConfigError("the Silero VAD weights are not installed",
                          fix="pip install silero-vad, or use the energy VAD (--vad energy)")
    return path

"""Frame-level speech detectors for the segmenter: an energy gate and Silero VAD.

A detector is fed consecutive blocks of a mono stream and answers, for every analysis
frame completed so far, whether it holds speech. Each keeps less than one frame of audio
and (Silero) its recurrent state and the levels of its last 20 s of frames, so memory stays
flat on recordings of any length.

Silero VAD (MIT, github.com/snakers4/silero-vad) ships its model in the ``silero-vad``
wheel; we read its 16 kHz weights from there without importing the package (whose import sets torch's
thread count) and run the network in torch: the convolutional encoder over every frame of
a block at once, then the LSTM over the block's frames in one call, which gives the same
probabilities as its streaming model one frame at a time at a fraction of the cost.

Silero hears background talkers (babble) as speech too. Its decisions are therefore gated
by level: a frame stays speech only while its level (160 ms mean power) is ``gate_db`` over
the background floor (the 10th percentile of the frame levels of the last 20 s), and that
gate applies in proportion to how much the background itself is speech to Silero (its mean
probability over the frames at or under the floor, from ``threshold - RELEASE``, no gate, to
``threshold``, the whole gate). The floor is estimated from past frames only, so decisions
come as the frames do, but for the stream's first second: its decisions wait for its end,
to be taken with a floor estimated from all of it. Over white or pink noise, or silence,
the background is not speech and Silero decides alone; over babble the foreground talker,
louder than the crowd behind, is kept and the crowd in the pauses is not.
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
GATE_DB = 6.0  # dB over the background floor a frame's level needs where the background is speech
LEVEL_WINDOW_S = 20.0  # s of past frames the background floor is estimated over
FLOOR_PERCENTILE = 10.0  # the floor: this percentile of the window's frame levels; frames under it are background
LEVEL_SMOOTH = 5  # frames (160 ms) whose mean power is a frame's level
GATE_UPDATE = 8  # frames (256 ms) between estimates of the floor
GATE_FIRST = 32  # frames (~1 s): their decisions wait for all of them, the floor's first estimate


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
    on while it stays above ``threshold - RELEASE``; where the background is itself speech
    (babble), only frames ``gate_db`` over its level (see the module's docstring).

    Streams at another rate than 16 kHz are resampled on the way in (soxr keeps the filter
    state between blocks); a decision then covers 32 ms of the stream, a fractional number
    of its samples (``hop``).

    Parameters
    ----------
    sr : int
        Sample rate of the stream in Hz.
    threshold : float
        Speech probability in [0, 1] from which a frame is speech.
    gate_db : float
        Level in dB over the background floor that a frame needs where the background is
        speech to Silero; 0 turns the level gate off (Silero's decisions as they are).

    Examples
    --------
    >>> det = SileroDetector(16000, threshold=0.5)
    >>> det(np.zeros(32000, np.float32)).shape  # two seconds: 62 whole frames
    (62,)
    >>> SileroDetector(16000, threshold=0.5)(np.zeros(16000, np.float32)).shape  # the first second waits
    (0,)
    """

    def __init__(self, sr: int, *, threshold: float, gate_db: float = GATE_DB):
        if gate_db < 0:
            raise ConfigError(f"the level gate is a level in dB over the background, >= 0, got {gate_db}")
        self.net = _silero_net()
        self.hop = Fraction(SILERO_FRAME * sr, SILERO_SR)
        self.threshold = threshold
        self.gate_db = gate_db
        self._resampler = None if sr == SILERO_SR else soxr.ResampleStream(sr, SILERO_SR, 1, dtype="float32")
        self._rest = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(SILERO_CONTEXT, dtype=np.float32)
        self._state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._speaking = False
        self._window = int(LEVEL_WINDOW_S * SILERO_SR / SILERO_FRAME)  # frames
        self._levels = np.zeros(0)  # dB, the last frames' levels (up to a window)
        self._probs = np.zeros(0)  # and their speech probabilities
        self._powers = np.zeros(0)  # the last LEVEL_SMOOTH - 1 frames' mean power
        self._heard = 0  # frames so far
        self._bar = -np.inf  # dB: the level a frame needs now
        self._first = (np.zeros(0, dtype=np.float32), np.zeros(0)) if gate_db > 0 else None  # held frames

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Decisions (bool) for the 32 ms frames this block completes (with the level gate,
        those of the stream's first GATE_FIRST frames once they are all there)."""
        return self._decide(*self._held(*self._step(block)))

    def flush(self) -> np.ndarray:
        """Decisions for the frames still held at the stream's end (by the resampler, or the
        level gate's first ones on a stream shorter than those)."""
        probs, power = np.zeros(0, dtype=np.float32), np.zeros(0)
        if self._resampler is not None:
            probs, power = self._step(probs, last=True)
        return self._decide(*self._held(probs, power, last=True))

    def _held(self, probs: np.ndarray, power: np.ndarray, *, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The frames to decide now: none until the level gate has its first GATE_FIRST."""
        if self._first is None:
            return probs, power
        probs, power = np.concatenate([self._first[0], probs]), np.concatenate([self._first[1], power])
        if len(probs) < GATE_FIRST and not last:
            self._first = (probs, power)
            return np.zeros(0, dtype=np.float32), np.zeros(0)
        self._first = None
        return probs, power

    def _decide(self, probs: np.ndarray, power: np.ndarray) -> np.ndarray:
        """Silero's decisions (with its release) for frames of these probabilities and mean
        powers, where the level gate lets them through."""
        loud = self._loud(probs, power) if self.gate_db > 0 else np.ones(len(probs), dtype=bool)
        out = np.zeros(len(probs), dtype=bool)
        for i, p in enumerate(probs):
            self._speaking = bool(p >= (self.threshold - RELEASE if self._speaking else self.threshold))
            out[i] = self._speaking and loud[i]
        return out

    def _loud(self, probs: np.ndarray, power: np.ndarray) -> np.ndarray:
        """Whether each frame's level is over the bar: the background floor, plus ``gate_db``
        in proportion to how much the background is speech to Silero (re-estimated every
        GATE_UPDATE frames from the frames heard so far, so blocks do not matter)."""
        # level: mean power of the frame and the LEVEL_SMOOTH - 1 before it (fewer at the start)
        powers = np.concatenate([self._powers, power])
        sums = np.concatenate([[0.0], np.cumsum(powers)])
        end = np.arange(len(self._powers), len(powers)) + 1
        start = np.maximum(end - LEVEL_SMOOTH, 0)
        smooth = 10.0 * np.log10(np.maximum((sums[end] - sums[start]) / (end - start), 1e-12))
        self._powers = powers[len(powers) - LEVEL_SMOOTH + 1 :]
        # the floor over the window: each frame's own level, unsmoothed
        levels = np.concatenate([self._levels, 10.0 * np.log10(np.maximum(power, 1e-12))])
        heard = np.concatenate([self._probs, probs])
        first = len(self._levels)  # index in levels of this call's first frame
        bars = np.empty(len(probs))
        bar, done = self._bar, 0
        heard_before = self._heard + np.arange(len(probs))  # frames heard before each one
        if self._heard == 0 and len(probs):  # the first frames (all here): a floor from them all
            bar = self._floor(levels[:GATE_FIRST], heard[:GATE_FIRST])
        for j in np.flatnonzero((heard_before >= GATE_FIRST) & (heard_before % GATE_UPDATE == 0)):
            bars[done:j], done = bar, j
            a = max(0, first + j - self._window)
            bar = self._floor(levels[a : first + j], heard[a : first + j])
        bars[done:] = bar
        self._bar, self._heard = bar, self._heard + len(probs)
        self._levels, self._probs = levels[-self._window :], heard[-self._window :]
        return smooth > bars

    def _floor(self, levels: np.ndarray, probs: np.ndarray) -> float:
        """The level (dB) a frame needs after these: their floor (FLOOR_PERCENTILE), plus
        ``gate_db`` times the share of it that is speech to Silero."""
        k = int(FLOOR_PERCENTILE / 100 * len(levels))  # the floor is the k-th lowest level
        quiet = np.argpartition(levels, k)[: k + 1]  # the frames at or under it
        share = np.clip((probs[quiet].mean() - self.threshold + RELEASE) / RELEASE, 0.0, 1.0)
        return float(levels[quiet].max() + self.gate_db * share)

    def probabilities(self, block: np.ndarray, *, last: bool = False) -> np.ndarray:
        """Speech probability of each 32 ms frame this block completes (state carried on)."""
        return self._step(block, last=last)[0]

    @torch.inference_mode()
    def _step(self, block: np.ndarray, *, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Speech probability and mean power (at 16 kHz) of each 32 ms frame this block completes."""
        y = block.astype(np.float32, copy=False)
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y, last=last)
        y = np.concatenate([self._rest, y])
        n = len(y) // SILERO_FRAME
        self._rest = y[n * SILERO_FRAME :]
        if n == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0)
        frames = y[: n * SILERO_FRAME].reshape(n, SILERO_FRAME)
        context = np.concatenate([self._context[None], frames[:-1, -SILERO_CONTEXT:]])
        self._context = frames[-1, -SILERO_CONTEXT:].copy()
        x = torch.from_numpy(np.concatenate([context, frames], axis=1))
        probs, self._state = self.net(x, self._state)
        return probs.numpy(), np.mean(frames.astype(np.float64) ** 2, axis=1)


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

"""A pretrained GE2E speaker encoder (d-vectors) as a frozen utterance-level front end.

The encoder (Wan et al., 2018, "Generalized end-to-end loss for speaker verification";
3-layer LSTM over 40-band power mel frames, 256-dimensional embedding) was trained to
tell thousands of speakers apart. Within one speaker its embedding still moves with
how they speak, so, z-scored per speaker, it carries emotion that eGeMAPS functionals
miss (see docs/benchmarks.md).

Weights load from a local file: by default the ``pretrained.pt`` shipped inside emovox
(``emovox/ge2e_weights/``: Resemblyzer's encoder by Resemble AI, Apache-2.0, see the
``NOTICE`` and ``LICENSE`` beside it), or any checkpoint of the same shape
(``FeatureConfig.speaker_encoder``). Nothing is downloaded.
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from importlib import resources
from pathlib import Path

import librosa
import numpy as np
import torch
from torch import nn

from emovox.errors import ConfigError
from emovox.features import SAMPLE_RATE, FeatureConfig, mel_power_batch, windows
from emovox.voice import masked_quantiles

N_MELS = 40
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # the encoder was trained on 1.6 s pieces
PIECE_FRAMES = 80  # DVectors' back-to-back pieces: 0.8 s, half the LSTM steps of 1.6 s ones (docs/benchmarks.md)
TARGET_DBFS = -30.0  # quieter audio is raised to this level first, as in training
NOISE_QUANTILE = 0.1  # DVectors' noise floor per mel band: this quantile of the band's power over the clip
OVER_SUBTRACTION = 1.5  # the floor is subtracted this many times over ...
SPECTRAL_FLOOR = 0.05  # ... keeping at least this share of each band's power
DIM = 256
WEIGHTS_DIR = "ge2e_weights"  # package data: pretrained.pt, its LICENSE, NOTICE and SHA256SUMS


class SpeakerEncoder(nn.Module):
    """Power mel frames ``(B, T, 40)`` -> LSTM x3 -> linear -> ReLU -> unit-length embedding ``(B, 256)``."""

    def __init__(self, hidden: int = 256, layers: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(mels)
        e = torch.relu(self.linear(h[-1]))
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)


def default_weights() -> Path:
    """The GE2E weights file shipped inside emovox (``emovox/ge2e_weights/pretrained.pt``, Apache-2.0)."""
    path = Path(str(resources.files("emovox") / WEIGHTS_DIR / "pretrained.pt"))
    if not path.is_file():
        raise ConfigError("this emovox install has no GE2E speaker-encoder weights", path=path,
                          fix="reinstall emovox, or set features.speaker_encoder to a local GE2E checkpoint")
    return path


@lru_cache(maxsize=2)
@torch.inference_mode(False)  # cached: tensors made in inference mode could not be traced for export later
def load_encoder(weights: str | None = None) -> SpeakerEncoder:
    """The encoder with weights from ``weights`` (a local file) or :func:`default_weights`, in eval mode."""
    path = Path(weights).expanduser() if weights else default_weights()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError("speaker-encoder weights not found", path=path,
                          fix="pass the path of a GE2E checkpoint (e.g. Resemblyzer's pretrained.pt)") from None
    except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise ConfigError(f"cannot read speaker-encoder weights ({type(exc).__name__})", path=path) from None
    state = payload.get("model_state", payload) if isinstance(payload, dict) else {}
    encoder = SpeakerEncoder()
    wanted = encoder.state_dict().keys()
    if not set(wanted) <= set(state):
        raise ConfigError("not a GE2E speaker-encoder checkpoint (LSTM 40 -> 256 x 3, linear 256)", path=path)
    encoder.load_state_dict({k: state[k] for k in wanted})
    return encoder.eval()


def _raise_quiet(y: np.ndarray) -> np.ndarray:
    """Scale ``y`` up to :data:`TARGET_DBFS` RMS if it is quieter (never down)."""
    rms_db = 10 * np.log10(np.mean(np.square(y, dtype=np.float64)) + 1e-20)
    gain = 10 ** ((TARGET_DBFS - rms_db) / 20)
    return y * np.float32(gain) if gain > 1 else y


@torch.inference_mode()
def encode(signals: list[np.ndarray], weights: str | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The d-vector ``(256,)`` and the layer means ``(3 * 256,)`` of each 16 kHz signal, in
    one pass of the encoder.

    Each signal is cut into 1.6 s pieces at half-piece hops (the last piece ends with the
    signal; a shorter signal is padded with silence), and all pieces of the batch go
    through the LSTM together. The d-vector is the normalised mean of the pieces'
    embeddings. The layer means are the mean over the pieces' frames of each LSTM layer's
    output, first layer first: the embedding is trained to stay put while a speaker's
    manner changes, the layers below it still carry pitch, energy and voice quality, which
    is what emotion moves.
    """
    cfg = FeatureConfig(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    mels = mel_power_batch([_raise_quiet(y) for y in signals], cfg)
    pieces = [windows(m, PARTIAL_FRAMES, pad_value=0.0) for m in mels]
    h = torch.from_numpy(np.concatenate(pieces).transpose(0, 2, 1).copy())
    means = []
    for layer in _layers(weights):
        h, _ = layer(h)
        means.append(h.mean(dim=1))
    e = torch.relu(load_encoder(weights).linear(h[:, -1]))  # SpeakerEncoder.forward, from the last layer
    embeddings = (e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)).numpy()
    layer_means = torch.cat(means, dim=1).numpy()
    vectors, stats, start = [], [], 0
    for p in pieces:
        mean = embeddings[start : start + len(p)].mean(axis=0)
        vectors.append((mean / max(np.linalg.norm(mean), 1e-8)).astype(np.float32))
        stats.append(layer_means[start : start + len(p)].mean(axis=0).astype(np.float32))
        start += len(p)
    return vectors, stats


class DVectors(nn.Module):
    """The encoder as a batched tensor front end: waveforms ``(B, N)`` at 16 kHz, zero-padded,
    and their lengths ``(B,)`` -> d-vectors ``(B, 256)``, and layer means, spreads and peaks
    (each ``(B, 3 * 256)``).

    The same vectors as :func:`encode` in spirit, cheaper, exportable and made to hold up on
    real channels: each clip is set to :data:`TARGET_DBFS` (up or down: the vectors do not
    move with the recording level); each mel band's noise floor (its :data:`NOISE_QUANTILE`
    over the clip's frames) is subtracted :data:`OVER_SUBTRACTION` times over, down to
    :data:`SPECTRAL_FLOOR` of the band's power, so steady noise is mostly gone before the
    LSTM hears it (leave one corpus out, the bundled recipe: white noise at 10 dB SNR from
    0.418 to 0.529 UA, docs/benchmarks.md). The power mel frames are cut into back-to-back
    0.8 s pieces (the last one shorter), not overlapping 1.6 s ones, so the LSTM runs once
    over each frame, in half as many steps as 1.6 s pieces would take (a 3 s clip: 8 ms of
    one core instead of 12, benchmarks/inference.py); the d-vector is the normalised,
    length-weighted mean of the pieces' embeddings, and the layer means, spreads and peaks
    are the mean, standard deviation and maximum of each LSTM layer's output over all frames
    of the clip (the last two: how much and how far the voice moves within the clip; leave
    one corpus out, they lifted every held-out corpus and held up in babble,
    docs/benchmarks.md). Row ``b`` depends on ``wave[b, :lengths[b]]`` only (frames
    past a clip's end are masked; an LSTM never looks ahead), the code is pure tensor code
    (it runs on any device and exports to ONNX).
    """

    def __init__(self, weights: str | None = None):
        super().__init__()
        self.lstm = nn.ModuleList(_layers(weights))
        self.linear = load_encoder(weights).linear
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer("noise_quantile", torch.tensor([NOISE_QUANTILE]), persistent=False)
        # the same STFT as a strided convolution with the windowed DFT basis, for ONNX graphs:
        # onnxruntime's STFT op takes 10 ms for a 3 s clip at this size (not a power of two, benchmarks/inference.py)
        k = np.arange(N_FFT // 2 + 1)[:, None] * np.arange(N_FFT)[None, :] * (2 * np.pi / N_FFT)
        basis = np.concatenate([np.cos(k), -np.sin(k)]) * self.window.double().numpy()
        self.register_buffer("dft", torch.from_numpy(basis).float()[:, None, :], persistent=False)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        valid = torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]
        power = (wave.square() * valid).sum(1) / lengths.clamp_min(1)
        gain = torch.sqrt(10 ** (TARGET_DBFS / 10) / power.clamp_min(1e-10))
        mels = torch.matmul(self.mel_basis, self._power(wave * gain[:, None]))  # (B, 40, T)
        frames = lengths // HOP + 1
        in_clip = (torch.arange(mels.shape[2], device=wave.device)[None, :] < frames[:, None]).to(mels.dtype)
        floor = masked_quantiles(mels, in_clip[:, None, :].expand_as(mels), self.noise_quantile)  # (B, 40, 1)
        mels = torch.maximum(mels - OVER_SUBTRACTION * floor, SPECTRAL_FLOOR * mels)
        n_pieces = (mels.shape[2] + PIECE_FRAMES - 1) // PIECE_FRAMES
        mels = nn.functional.pad(mels, (0, n_pieces * PIECE_FRAMES - mels.shape[2]))
        pieces = mels.reshape(-1, N_MELS, n_pieces, PIECE_FRAMES).permute(0, 2, 3, 1).reshape(-1, PIECE_FRAMES,
                                                                                              N_MELS)
        start = torch.arange(n_pieces, device=wave.device) * PIECE_FRAMES
        span = (frames[:, None] - start[None, :]).clamp(0, PIECE_FRAMES).reshape(-1)  # frames of each piece
        keep = torch.nonzero(span > 0).reshape(-1)  # pieces past a short clip's end are skipped
        h, span = pieces.index_select(0, keep), span.index_select(0, keep)
        owner = torch.div(keep, n_pieces, rounding_mode="floor")
        assign = (owner[None, :] == torch.arange(wave.shape[0], device=wave.device)[:, None]).to(h.dtype)  # (B, K)
        mask = (torch.arange(PIECE_FRAMES, device=wave.device)[None, :] < span[:, None]).to(h.dtype)[:, :, None]
        sums, squares, peaks = [], [], []
        for layer in self.lstm:
            h, _ = layer(h)
            sums.append((h * mask).sum(1))
            squares.append((h.square() * mask).sum(1))
            peaks.append((h - 2 * (1 - mask)).amax(1))  # outputs lie in (-1, 1): frames past the end never win
        count = (assign @ span.to(h.dtype))[:, None]
        layer_means = assign @ torch.cat(sums, dim=1) / count
        layer_spreads = (assign @ torch.cat(squares, dim=1) / count - layer_means.square()).clamp_min(0).sqrt()
        layer_peaks = (torch.cat(peaks, dim=1)[None] - 4 * (1 - assign)[:, :, None]).amax(1)  # over each clip's pieces
        last = h.gather(1, (span - 1)[:, None, None].expand(-1, 1, h.shape[2])).squeeze(1)
        e = torch.relu(self.linear(last))
        e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)
        d = assign @ (e * span[:, None].to(h.dtype))
        return d / d.norm(dim=1, keepdim=True).clamp_min(1e-8), layer_means, layer_spreads, layer_peaks

    def _power(self, wave: torch.Tensor) -> torch.Tensor:
        """Power STFT ``(B, 201, frames)``, centred frames with zero padding (librosa's)."""
        if torch.onnx.is_in_onnx_export():
            frames = nn.functional.conv1d(nn.functional.pad(wave, (N_FFT // 2, N_FFT // 2))[:, None], self.dft,
                                          stride=HOP)
            half = self.dft.shape[0] // 2
            return frames[:, :half].square() + frames[:, half:].square()
        spec = torch.stft(wave, N_FFT, HOP, N_FFT, window=self.window, center=True, pad_mode="constant",
                          return_complex=False)
        return spec.square().sum(-1)


def embed_batch(signals: list[np.ndarray], weights: str | None = None) -> list[np.ndarray]:
    """One unit-length d-vector ``(256,)`` per 16 kHz signal (see :func:`encode`)."""
    return encode(signals, weights)[0]


@lru_cache(maxsize=2)
@torch.inference_mode(False)
def _layers(weights: str | None) -> list[nn.LSTM]:
    """The encoder's three LSTM layers as separate one-layer LSTMs (to read each one's output)."""
    lstm = load_encoder(weights).lstm
    out = []
    for k in range(lstm.num_layers):
        layer = nn.LSTM(lstm.input_size if k == 0 else lstm.hidden_size, lstm.hidden_size, batch_first=True)
        layer.load_state_dict({name.removesuffix(f"_l{k}") + "_l0": value
                               for name, value in lstm.state_dict().items() if name.endswith(f"_l{k}")})
        out.append(layer.eval())
    return out

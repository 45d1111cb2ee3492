"""Self-supervised speech encoders (wav2vec 2.0, HuBERT, WavLM) as a frozen feature front end.

Each utterance passes through the encoder once; all hidden states (the CNN feature
projection and every transformer layer) are stacked into a feature matrix
``((layers + 1) * hidden, frames)`` that the feature cache stores like any other
feature. The ``ssl`` model head then learns a softmax-weighted sum of the layers.

Encoders load from a local directory (``save_pretrained`` layout). A hub name is used
only when ``EMOVOX_ALLOW_DOWNLOAD=1``; nothing is downloaded otherwise. The encoder runs
on a GPU when there is one (``device="auto"``), in fp32; the features come back as numpy.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from emovox.device import resolve, to_device
from emovox.errors import ConfigError
from emovox.features import SAMPLE_RATE

FAMILIES = ("wav2vec2", "hubert", "wavlm")


@lru_cache(maxsize=2)
def load_encoder(backbone: str):
    """The encoder at ``backbone`` (local dir, or hub name when downloads are allowed), in eval mode."""
    try:
        from transformers import AutoConfig, AutoModel
    except ImportError:
        raise ConfigError("the ssl front end needs transformers", fix="pip install 'emovox[ssl]'") from None
    local = Path(backbone).expanduser()
    if not local.is_dir() and os.environ.get("EMOVOX_ALLOW_DOWNLOAD") != "1":
        raise ConfigError(
            f"backbone {backbone!r} is not a local directory and downloads are off",
            fix="download it once (e.g. `hf download facebook/wav2vec2-base --local-dir DIR`) and pass "
                "--backbone DIR, or set EMOVOX_ALLOW_DOWNLOAD=1 on a machine with network access")
    source = str(local) if local.is_dir() else backbone
    try:
        config = AutoConfig.from_pretrained(source)
        if config.model_type not in FAMILIES:
            raise ConfigError(f"unsupported encoder type {config.model_type!r}", path=source,
                              fix=f"use one of {', '.join(FAMILIES)}")
        model = AutoModel.from_pretrained(source)
    except OSError as exc:
        raise ConfigError(f"cannot load encoder ({exc})", path=source) from None
    return model.eval()


@lru_cache(maxsize=2)
def _encoder_on(backbone: str, device: torch.device):
    """The encoder at ``backbone`` on ``device`` (the CPU copy of :func:`load_encoder` stays where it is)."""
    encoder = load_encoder(backbone)
    return encoder if device.type == "cpu" else copy.deepcopy(encoder).to(device)


def layout(backbone: str) -> tuple[int, int]:
    """(number of hidden states, hidden size) of the encoder."""
    cfg = load_encoder(backbone).config
    return cfg.num_hidden_layers + 1, cfg.hidden_size


def n_frames(backbone: str, n_samples: int) -> int:
    """Encoder frames for ``n_samples`` samples at 16 kHz."""
    length = load_encoder(backbone)._get_feat_extract_output_lengths(torch.tensor(n_samples))
    return int(length)


@torch.inference_mode()
def hidden_states(signals: list[np.ndarray], backbone: str, *, chunk_s: float = 20.0,
                  device: str | torch.device = "auto") -> list[np.ndarray]:
    """All hidden states of each 16 kHz signal, ``(layers * hidden, frames)`` float32.

    Signals are normalised to zero mean and unit variance and cut into ``chunk_s``-second
    chunks, so memory stays bounded on long inputs. The encoder runs on ``device``
    (``auto``: CUDA when available).
    """
    dev = resolve(device)
    encoder = _encoder_on(backbone, dev)
    chunk = int(chunk_s * SAMPLE_RATE)
    out = []
    for y in signals:
        y = (y - y.mean()) / (y.std() + 1e-7)
        parts = []
        for start in range(0, len(y), chunk):
            piece = y[start : start + chunk]
            if start and len(piece) < SAMPLE_RATE // 10:  # a tiny tail adds nothing
                break
            states = encoder(to_device(piece[None], dev), output_hidden_states=True).hidden_states
            parts.append(torch.cat([s[0].T for s in states]).cpu().numpy())
        out.append(np.concatenate(parts, axis=1).astype(np.float32, copy=False))
    return out

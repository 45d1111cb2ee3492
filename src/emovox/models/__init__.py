"""Model families by name, and self-describing checkpoints (weights + :class:`ModelSpec`)
that load without training code.

Every model maps features ``(batch, n_features, n_frames)`` to class logits; a
:class:`~emovox.models.layers.FeatureNorm` in front standardises the input.

Examples
--------
>>> net = build("cnn", n_features=64, n_frames=301, n_classes=8)
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from emovox.errors import CheckpointError, ConfigError
from emovox.models.cnn import CNN, SmallCNN
from emovox.models.kernel import KernelMachine
from emovox.models.layers import FeatureNorm
from emovox.models.mlp import MLP
from emovox.models.rnn import CRNN, BiLSTM
from emovox.models.spec import FORMAT, ModelSpec
from emovox.models.ssl_finetune import SSLFinetune
from emovox.models.ssl_head import SSLHead

MODELS: dict[str, type[nn.Module]] = {
    "cnn_small": SmallCNN,
    "cnn": CNN,
    "bilstm": BiLSTM,
    "crnn": CRNN,
    "mlp": MLP,
    "kernel": KernelMachine,
    "ssl": SSLHead,
    "ssl_finetune": SSLFinetune,
}
__all__ = ["FORMAT", "MODELS", "Adaptive", "Classifier", "ModelSpec", "build", "load", "save"]


class Classifier(nn.Module):
    """Feature normalisation, one model family, then logits divided by a temperature
    (1 until calibration fits it on held-out speakers)."""

    def __init__(self, body: nn.Module, n_features: int):
        super().__init__()
        self.norm = FeatureNorm(n_features)
        self.body = body
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.norm(x)) / self.temperature


class Adaptive(nn.Module):
    """Two heads over the same features, for one clip or for a speaker's audio.

    ``single`` reads a clip's features as they are: what a clip of an unknown speaker gets.
    ``adapted`` reads them less a speaker's (or recording's) mean, learnt from unlabelled
    audio and shrunk toward the training speakers' typical mean (``prior_mean``) by
    ``prior_frames`` pseudo-frames, divided by the training speakers' typical spread
    (``prior_std``; :class:`emovox.normalize.Prior`). Called as a module, it is the single-clip head, so
    every path that scores a clip (ONNX export included) needs nothing else.
    """

    def __init__(self, n_features: int, n_frames: int, n_classes: int, *, single: dict, adapted: dict,
                 prior_frames: float):
        super().__init__()
        shape = dict(n_features=n_features, n_frames=n_frames, n_classes=n_classes)
        self.head_kwargs = {"single": single, "adapted": adapted}
        self.single = build(single["model"], **shape, **single.get("kwargs", {}))
        self.adapted = build(adapted["model"], **shape, **adapted.get("kwargs", {}))
        self.prior_frames = float(prior_frames)
        self.register_buffer("prior_mean", torch.zeros(n_features))
        self.register_buffer("prior_std", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.single(x)


def build(name: str, *, n_features: int, n_frames: int, n_classes: int, **kwargs) -> nn.Module:
    """Instantiate model ``name`` (a key of :data:`MODELS`, or ``adaptive``: :class:`Adaptive`)
    with its keyword arguments."""
    if name == "adaptive":
        return Adaptive(n_features, n_frames, n_classes, **kwargs)
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}", fix=f"use one of {', '.join(MODELS)}")
    body = MODELS[name](n_features, n_frames, n_classes, **kwargs)
    return Classifier(body, n_features)


def save(path: str | Path, model: Classifier, *, spec: ModelSpec | dict) -> None:
    """Write a checkpoint: ``spec`` (model name and kwargs, labels, feature config, ...;
    a dict is read with :meth:`ModelSpec.from_dict`) + weights, stamped with this emovox's version.

    The weights are written as CPU tensors whatever device the model is on, so the file
    loads on any machine.
    """
    from emovox import __version__
    from emovox.device import to_cpu
    from emovox.files import atomic_write

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec, source=str(path))
    spec = replace(spec, emovox_version=__version__)
    payload = {**spec.to_dict(), "state_dict": to_cpu(model.state_dict())}
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[Classifier, ModelSpec]:
    """Rebuild a model from a checkpoint written by :func:`save` (by this emovox or an
    earlier one); returns (model in eval mode, spec).

    The weights are read onto the CPU (``map_location="cpu"``: a checkpoint written on a
    GPU loads on a machine without one), then the model moves to ``device`` (``auto``,
    ``cpu``, ``cuda`` or ``cuda:N``).
    """
    from emovox.device import resolve

    dev = resolve(device)
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("no model checkpoint here", path=path,
                              fix="pass a run dir written by `emovox train`") from None
    except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"corrupt checkpoint ({type(exc).__name__})", path=path,
                              fix="re-run `emovox train` to write it again") from None
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("emovox-model/"):
        raise CheckpointError("not an emovox model checkpoint", path=path)
    spec = ModelSpec.from_dict({k: v for k, v in payload.items() if k != "state_dict"}, source=str(path))
    model = build(spec.model, **spec.model_kwargs)
    model.load_state_dict(payload["state_dict"])
    return model.to(dev).eval(), spec

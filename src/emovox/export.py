"""ONNX export of a trained model, and onnxruntime-backed drop-ins for its torch parts.

A model on the torch front end (utterance vectors of :mod:`emovox.encoder`) exports as one
graph from 16 kHz waveform to class probabilities, which runs with onnxruntime alone. Any
other model exports its network: features ``(batch, n_features, n_frames)`` to logits,
the feature normalisation inside, the front end left to :mod:`emovox.frontend`. The
model's whole :class:`~emovox.models.ModelSpec` (labels, feature config, speaker
normalisation, ...) is stored as JSON in the ONNX file's metadata (``emovox_spec``), so
the file describes itself.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emovox import encoder, models
from emovox.bundled import resolve_model
from emovox.encoder import UtteranceEncoder
from emovox.features import SAMPLE_RATE
from emovox.files import atomic_write
from emovox.models import ModelSpec

OPSET = 17


class Pipeline(nn.Module):
    """The whole path of a model on the torch front end: waveforms ``(B, N)`` (16 kHz mono,
    zero-padded) and their lengths ``(B,)`` -> class probabilities ``(B, n_classes)``."""

    def __init__(self, front: UtteranceEncoder, classifier: nn.Module):
        super().__init__()
        self.front, self.classifier = front, classifier

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(self.front(waveform, lengths)[:, :, None]), dim=1)


def on_waveform(spec: ModelSpec) -> bool:
    """Whether the model's whole front end is torch code (:mod:`emovox.encoder`), so that it
    exports from waveform to probabilities."""
    cfg = spec.features
    return cfg.kind == "utterance" and set(cfg.utterance) <= set(encoder.PARTS)


def front_end(spec: ModelSpec) -> UtteranceEncoder:
    """The model's torch front end on the CPU (see :func:`on_waveform`)."""
    cfg = spec.features
    return encoder.load(tuple(cfg.utterance), cfg.speaker_encoder, cfg.trim_db, "cpu")


def _to_onnx(module: nn.Module, args: tuple, names: tuple[list[str], list[str]], dynamic: dict,
             spec: ModelSpec | dict) -> bytes:
    """``module`` (eval mode) as an ONNX graph, ``spec`` as JSON in its metadata."""
    import onnx

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
    buf = io.BytesIO()
    # no gradients: the graph scores as inference does (a kernel machine's folded products);
    # the tracer's notes (RNN batch sizes, stft's real output) are silenced: tests check the graphs
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buf, input_names=names[0], output_names=names[1],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in (("emovox_spec", json.dumps(spec.to_dict())), ("labels", json.dumps(list(spec.labels)))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def to_onnx_bytes(model: nn.Module, spec: ModelSpec | dict) -> bytes:
    """The network alone: features ``(batch, n_features, n_frames)`` -> logits, feature
    normalisation inside (a dict ``spec`` is read with :meth:`ModelSpec.from_dict`)."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
    dummy = torch.zeros(2, spec.n_features, spec.n_frames)
    return _to_onnx(model, (dummy,), (["features"], ["logits"]), {"features": {0: "batch"}, "logits": {0: "batch"}},
                    spec)


def _waveform_args() -> tuple[torch.Tensor, torch.Tensor]:
    """Two clips of different lengths to trace with (speech-like noise, so no branch is cut)."""
    gen = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(2, 3 * SAMPLE_RATE, generator=gen)
    return wave, torch.tensor([3 * SAMPLE_RATE, 2 * SAMPLE_RATE])


def encoder_onnx_bytes(spec: ModelSpec) -> bytes:
    """The front end alone: ``waveform`` ``(batch, samples)`` + ``lengths`` -> ``features`` ``(batch, F)``."""
    axes = {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "features": {0: "batch"}}
    return _to_onnx(front_end(spec), _waveform_args(), (["waveform", "lengths"], ["features"]), axes, spec)


def pipeline_onnx_bytes(model: nn.Module, spec: ModelSpec) -> bytes:
    """One graph from waveform to emotion: ``waveform`` ``(batch, samples)`` float32 at 16 kHz
    and ``lengths`` ``(batch,)`` int64 -> ``probabilities`` ``(batch, n_classes)``, the labels
    in the metadata (``labels``, a JSON list)."""
    axes = {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "probabilities": {0: "batch"}}
    return _to_onnx(Pipeline(front_end(spec), model), _waveform_args(), (["waveform", "lengths"], ["probabilities"]),
                    axes, spec)


def export(run_dir: str | Path | None, out: str | Path) -> Path:
    """Write ``out`` (ONNX) for the model in ``run_dir`` (``None``: the bundled model): from
    waveform to probabilities for a model on the torch front end (:func:`pipeline_onnx_bytes`),
    else the network on features (:func:`to_onnx_bytes`)."""
    model, spec = models.load(resolve_model(run_dir))
    data = pipeline_onnx_bytes(model, spec) if on_waveform(spec) else to_onnx_bytes(model, spec)
    out = Path(out)
    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    return out


def _session(onnx_model: bytes | str | Path, threads: int | None):
    """An onnxruntime CPU session with ``threads`` intra-op threads (default: torch's)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    # idle pool threads sleep rather than spin: calls that run side by side (timeline's
    # segment batches) or beside other processes would lose the cores to spinning
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


class OnnxModel:
    """Callable like the torch classifier: features tensor in, logits tensor out.

    ``spec`` is the :class:`~emovox.models.ModelSpec` read from the file's metadata
    (``None`` for an ONNX file that emovox did not write). ``threads`` is onnxruntime's
    intra-op thread count; by default torch's
    (``torch.get_num_threads()``), so ``torch.set_num_threads`` governs both backends.
    """

    def __init__(self, onnx_model: bytes | str | Path, *, threads: int | None = None):
        self.session = _session(onnx_model, threads)
        meta = self.session.get_modelmeta().custom_metadata_map.get("emovox_spec")
        self.spec: ModelSpec | None = None if meta is None else ModelSpec.from_dict(json.loads(meta), source=str(
            "ONNX metadata" if isinstance(onnx_model, bytes) else onnx_model))

    @classmethod
    def from_torch(cls, model: torch.nn.Module, spec: ModelSpec | dict) -> OnnxModel:
        return cls(to_onnx_bytes(model, spec))

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"features": np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(out)


class OnnxEncoder:
    """The torch front end (:func:`encoder_onnx_bytes`) in onnxruntime: signals in, one
    ``(F, 1)`` feature column each out, as :func:`emovox.frontend.extract_batch` gives."""

    def __init__(self, spec: ModelSpec, *, threads: int | None = None):
        self.session = _session(encoder_onnx_bytes(spec), threads)

    def __call__(self, signals: list[np.ndarray]) -> list[np.ndarray]:
        def run(wave: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
            return self.session.run(None, {"waveform": wave.numpy(), "lengths": lengths.numpy()})[0]

        return [v[:, None] for v in encoder.in_batches(signals, run)]

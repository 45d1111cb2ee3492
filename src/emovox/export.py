"""ONNX export of a trained network, and an onnxruntime-backed drop-in for the torch model.

The exported graph maps features ``(batch, n_features, n_frames)`` to logits, with the
feature normalisation inside. The feature front end stays in :mod:`emovox.frontend`; the
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

from emovox import models
from emovox.bundled import resolve_model
from emovox.files import atomic_write
from emovox.models import ModelSpec

OPSET = 17


def to_onnx_bytes(model: torch.nn.Module, spec: ModelSpec | dict) -> bytes:
    """Serialise ``model`` (eval mode) as an ONNX graph with a dynamic batch axis, its spec
    (a dict is read with :meth:`ModelSpec.from_dict`) in the metadata."""
    import onnx

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
    dummy = torch.zeros(2, spec.n_features, spec.n_frames)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # tracer notes about RNN batch sizes; the tests check dynamic batches
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (dummy,), buf, input_names=["features"], output_names=["logits"],
                          dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "emovox_spec", json.dumps(spec.to_dict())
    return proto.SerializeToString()


def export(run_dir: str | Path | None, out: str | Path) -> Path:
    """Write ``out`` (ONNX) for the model in ``run_dir`` (``None``: the bundled model)."""
    model, spec = models.load(resolve_model(run_dir))
    data = to_onnx_bytes(model, spec)
    out = Path(out)
    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    return out


class OnnxModel:
    """Callable like the torch classifier: features tensor in, logits tensor out.

    ``spec`` is the :class:`~emovox.models.ModelSpec` read from the file's metadata
    (``None`` for an ONNX file that emovox did not write). ``threads`` is onnxruntime's
    intra-op thread count; by default torch's
    (``torch.get_num_threads()``), so ``torch.set_num_threads`` governs both backends.
    """

    def __init__(self, onnx_model: bytes | str | Path, *, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        # idle pool threads sleep rather than spin: calls that run side by side (timeline's
        # segment batches) or beside other processes would lose the cores to spinning
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
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

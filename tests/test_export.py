"""ONNX export: onnxruntime and PyTorch agree for every model family."""

import numpy as np
import pytest
import torch

from emovox import models
from emovox.export import OnnxModel, export, to_onnx_bytes
from emovox.features import FeatureConfig, extract_batch, windows

from .conftest import PITCH, tone

CFG = FeatureConfig(n_mels=40, clip_s=1.0)


def _inputs():
    rng = np.random.default_rng(0)
    real = extract_batch([tone(p, 1.4, 16000, seed=3) for p in PITCH.values()], CFG)
    real = np.concatenate([windows(f, CFG.clip_frames) for f in real])
    return [torch.from_numpy(real), torch.from_numpy(rng.normal(-40, 20, (5, 40, CFG.clip_frames)).astype(np.float32))]


@pytest.mark.parametrize("name", [m for m in models.MODELS if m != "ssl_finetune"])  # that one: test_ssl.py
def test_onnxruntime_matches_torch(name):
    torch.manual_seed(0)
    extra = {"n_layers": 5} if name == "ssl" else {}
    net = models.build(name, n_features=40, n_frames=CFG.clip_frames, n_classes=5, **extra).eval()
    net.norm.fit([np.random.default_rng(1).normal(-40, 20, (40, 300)).astype(np.float32)])
    spec = {"model": name, "model_kwargs": {"n_features": 40, "n_frames": CFG.clip_frames, "n_classes": 5, **extra},
            "labels": list("abcde")}
    onnx_model = OnnxModel(to_onnx_bytes(net, spec))
    assert onnx_model.spec.labels == tuple("abcde")
    for x in _inputs():
        with torch.no_grad():
            ref = torch.softmax(net(x), 1)
        got = torch.softmax(onnx_model(x), 1)
        assert (ref - got).abs().max().item() <= 1e-4


def test_export_command_writes_a_loadable_file(tiny_run, tmp_path):
    out = export(tiny_run, tmp_path / "m.onnx")
    model = OnnxModel(out)
    assert model.spec.labels == ("neutral", "happy", "sad", "angry")
    assert model(torch.zeros(3, 32, model.spec.n_frames)).shape == (3, 4)

"""ONNX export: onnxruntime and PyTorch agree for every model family."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emovox import audio, models
from emovox.export import OnnxModel, export, to_onnx_bytes
from emovox.features import FeatureConfig, extract_batch, windows
from emovox.models import ModelSpec
from emovox.predict import Predictor

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


DVECTOR_CFG = FeatureConfig(kind="utterance", utterance=("dvector", "dvector_layers"), n_fft=512, hop_length=256)
EXAMPLE = Path(__file__).parents[1] / "examples" / "hello.flac"
# onnxruntime alone reads the file and the clips: no emovox (nor torch) in that process
STANDALONE = """
import json, sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
labels = json.loads(s.get_modelmeta().custom_metadata_map["labels"])
clips = np.load(sys.argv[2], allow_pickle=True)
out = [s.run(None, {"waveform": y[None].astype(np.float32), "lengths": np.array([len(y)])})[0][0].tolist()
       for y in clips]
assert "emovox" not in sys.modules and "torch" not in sys.modules
print(json.dumps({"labels": labels, "probs": out}))
"""


def _waveform_model(tmp_path) -> Path:
    """A random kernel machine over the torch front end's d-vectors, saved as a run dir."""
    torch.manual_seed(0)
    n = DVECTOR_CFG.n_features
    net = models.build("kernel", n_features=n, n_frames=1, n_classes=3, landmarks=8).eval()
    x = torch.randn(20, n, 1)
    net.norm.fit([f.numpy() for f in x])
    net.body.init_from_data(net.norm(x))
    spec = ModelSpec("kernel", {"n_features": n, "n_frames": 1, "n_classes": 3, "landmarks": 8},
                     labels=("angry", "neutral", "sad"), features=DVECTOR_CFG)
    models.save(tmp_path / "model.pt", net, spec=spec)
    return tmp_path


def test_a_torch_front_end_model_exports_one_graph_from_waveform_to_probabilities(tmp_path):
    run = _waveform_model(tmp_path)
    clips = [audio.load(EXAMPLE, sr=16000), tone(180.0, 0.7, 16000, seed=1), tone(120.0, 4.2, 16000, seed=2)]
    out = export(run, tmp_path / "m.onnx")
    np.save(tmp_path / "clips.npy", np.array(clips, dtype=object), allow_pickle=True)
    done = subprocess.run([sys.executable, "-c", STANDALONE, str(out), str(tmp_path / "clips.npy")],
                          capture_output=True, text=True, check=True)
    got = json.loads(done.stdout)
    want = Predictor.load(run).predict_signals(clips)
    assert got["labels"] == ["angry", "neutral", "sad"]
    for probs, r in zip(got["probs"], want, strict=True):
        np.testing.assert_allclose(probs, [r["scores"][k] for k in got["labels"]], atol=1e-4)


def test_the_onnx_backend_runs_the_torch_front_end_in_onnxruntime_with_the_same_features(tmp_path):
    run = _waveform_model(tmp_path)
    clips = [tone(150.0, 3.0, 16000, seed=4), tone(220.0, 1.1, 16000, seed=5)]
    by_torch, by_onnx = Predictor.load(run), Predictor.load(run, backend="onnx")
    assert by_onnx.front is not None
    for a, b in zip(by_torch.extract(clips), by_onnx.extract(clips), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for a, b in zip(by_torch.predict_signals(clips), by_onnx.predict_signals(clips), strict=True):
        assert a["label"] == b["label"]

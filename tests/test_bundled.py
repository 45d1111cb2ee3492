"""The model shipped inside the package: offline, checksummed, the default everywhere."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emovox import cli
from emovox.bundled import bundled_model_path, sha256
from emovox.predict import Predictor

from .conftest import PITCH, tone

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello.flac"
LABELS = ["neutral", "happy", "sad", "angry", "fearful"]


def test_weights_match_the_recorded_checksum_and_are_small():
    path = bundled_model_path()
    recorded = (path.parent / "SHA256SUMS").read_text().split()[0]
    assert sha256(path) == recorded
    assert path.stat().st_size <= 40 * 1024 * 1024  # two heads of 11 kernel views each


def test_loads_offline_and_predicts_a_synthetic_clip(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = Predictor.load()
    assert p.labels == LABELS
    r = p.predict((tone(PITCH["angry"], 2.0, 22050), 22050))
    assert r["label"] in LABELS and abs(sum(r["scores"].values()) - 1) < 1e-4
    assert p.spec.corpora == ("ased", "emodb", "nemo", "ravdess")
    assert float(p.model.temperature) != 1.0  # calibrated on held-out speakers


def test_cli_predict_defaults_to_bundled_model():
    r = CliRunner().invoke(cli.app, ["predict", str(EXAMPLE), "--format", "json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)[0]
    assert list(row["scores"]) == LABELS and abs(row["duration_s"] - 4.794) < 0.01


def test_service_defaults_to_bundled_model(monkeypatch):
    captured = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: captured.update(app=app, **kw))
    r = CliRunner().invoke(cli.app, ["serve", "--port", "8123"])
    assert r.exit_code == 0, r.output
    with TestClient(captured["app"]) as client:
        assert client.get("/v1/labels").json() == {"labels": LABELS}
    assert captured["port"] == 8123


@pytest.mark.parametrize("command", [["timeline", str(EXAMPLE), "--format", "json"]])
def test_timeline_defaults_to_bundled_model(command):
    r = CliRunner().invoke(cli.app, command)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert len(rows) >= 1 and set(rows[0]["scores"]) == set(LABELS)


def test_the_bundled_model_adapts_and_reads_one_clip_with_its_single_clip_head():
    p = Predictor.load()
    assert p.can_adapt and p.prior is not None and p.spec.model == "adaptive"
    y = tone(PITCH["sad"], 2.0, 16000)
    alone = p.predict((y, 16000))
    adapted = p.predict([(y, 16000), (tone(PITCH["happy"], 2.0, 16000), 16000)], adapt="inputs")[0]
    assert alone["scores"] != adapted["scores"]


def test_the_bundled_model_exports_one_graph_that_onnxruntime_alone_runs_like_the_predictor(tmp_path):
    from emovox import audio
    from emovox.export import export

    from .test_export import STANDALONE

    out = export(None, tmp_path / "bundled.onnx")
    clips = [audio.load(EXAMPLE, sr=16000)]
    corpus = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb" / "wav"
    clips += [audio.load(f, sr=16000) for f in sorted(corpus.glob("*.flac"))[:3]]  # real clips, when here
    np.save(tmp_path / "clips.npy", np.array(clips, dtype=object), allow_pickle=True)
    done = subprocess.run([sys.executable, "-c", STANDALONE, str(out), str(tmp_path / "clips.npy")],
                          capture_output=True, text=True, check=True)
    got = json.loads(done.stdout)
    assert got["labels"] == LABELS
    for probs, r in zip(got["probs"], Predictor.load().predict_signals(clips), strict=True):
        np.testing.assert_allclose(probs, [r["scores"][k] for k in LABELS], atol=1e-4)

"""The model shipped inside the package: offline, checksummed, the default everywhere."""

import json
from pathlib import Path

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
    assert path.stat().st_size <= 10 * 1024 * 1024


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

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from emovox.predict import Predictor
from emovox.serve import ServiceLimits, create_app

from .conftest import PITCH, tone


def wav_bytes(y, sr=16000, fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tiny_run):
    app = create_app(Predictor.load(tiny_run), ServiceLimits(max_upload_mb=0.5, max_duration_s=12.0))
    with TestClient(app) as c:
        yield c


def test_health_labels_docs_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/v1/labels").json() == {"labels": ["neutral", "happy", "sad", "angry"]}
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "v1/predict" in page.text


def test_predict_upload(client):
    flac = wav_bytes(tone(PITCH["angry"], 1.5, 22050), 22050, "FLAC")
    r = client.post("/v1/predict", files={"file": ("a.flac", flac)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"label", "scores", "duration_s"} and abs(body["duration_s"] - 1.5) < 0.01


def test_timeline_upload(client):
    sr = 16000
    y = np.concatenate([np.zeros(sr, np.float32), tone(PITCH["sad"], 2.0, sr), np.zeros(sr, np.float32)])
    r = client.post("/v1/timeline", files={"file": ("t.wav", wav_bytes(y))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["rows"]) == 1 and abs(body["duration_s"] - 4.0) < 0.01
    assert abs(body["rows"][0]["start"] - 1.0) < 0.2


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"", 400, "empty file"),
        (b"this is not audio at all", 400, "cannot"),
        (wav_bytes(np.zeros(16000, np.float32)), 400, "silent"),
        (wav_bytes(tone(200, 13.0, 8000), 8000), 413, "exceeds"),  # 13 s > 12 s limit, small file
        (wav_bytes(np.random.default_rng(0).standard_normal(400_000).astype(np.float32) * 0.1, 16000), 413,
         "larger than"),
    ],
)
def test_bad_uploads(client, payload, status, message):
    paths = ("/v1/predict",) if message == "silent" else ("/v1/predict", "/v1/timeline")
    for path in paths:
        r = client.post(path, files={"file": ("x.wav", payload)})
        assert r.status_code == status, (path, r.text)
        assert message in r.json()["detail"]
    assert client.get("/healthz").status_code == 200  # still alive


def test_silent_recording_has_an_empty_timeline(client):
    r = client.post("/v1/timeline", files={"file": ("x.wav", wav_bytes(np.zeros(32000, np.float32)))})
    assert r.status_code == 200 and r.json() == {"rows": [], "duration_s": 2.0}


def test_missing_file_field_is_422(client):
    assert client.post("/v1/predict", data={"x": "1"}).status_code == 422

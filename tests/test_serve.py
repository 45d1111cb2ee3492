import asyncio
import io
import threading
import time
from contextlib import asynccontextmanager

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from emovox import audio
from emovox.errors import ConfigError
from emovox.predict import Predictor
from emovox.serve import MicroBatcher, ServiceLimits, create_app, limit_threads

from .conftest import PITCH, tone

WAIT_S = 60.0  # upper bound on waits for a condition; the tests never sleep for a fixed time


def wav_bytes(y, sr=16000, fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    return buf.getvalue()


def wait_ready(client):
    deadline = time.monotonic() + WAIT_S
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "service never became healthy"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def client(tiny_run):
    app = create_app(Predictor.load(tiny_run), ServiceLimits(max_upload_mb=0.5, max_duration_s=12.0))
    with TestClient(app) as c:
        wait_ready(c)
        yield c


@asynccontextmanager
async def served(app):
    """An HTTP client on ``app`` in this event loop, with the app's start-up and shut-down."""
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emovox") as http:
            yield http


async def until(condition):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


async def ready(http):
    deadline = time.monotonic() + WAIT_S
    while (await http.get("/healthz")).status_code != 200:
        assert time.monotonic() < deadline, "service never became healthy"
        await asyncio.sleep(0.01)


def post(http, data, name="x.wav", path="/v1/predict"):
    return http.post(path, files={"file": (name, data)})


def clips(n, seconds=1.0):
    """``n`` short WAV uploads of the four synthetic emotions."""
    emotions = list(PITCH)
    return [wav_bytes(tone(PITCH[emotions[i % 4]], seconds + 0.05 * i, 16000, seed=i)) for i in range(n)]


def alone(predictor, data):
    """The result of scoring one upload on its own (no batch), as the Python API does."""
    return predictor.predict_signals([audio.decode_bytes(data, sr=predictor.features.sample_rate)])[0]


def assert_same(got, want):
    assert got["label"] == want["label"] and got["duration_s"] == want["duration_s"]
    assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)


def test_health_labels_docs_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/healthz").json()["max_batch"] == 16
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


def test_requests_that_arrive_while_the_model_is_busy_share_one_forward_pass(tiny_run):
    predictor = Predictor.load(tiny_run)
    app = create_app(predictor, ServiceLimits(max_batch=16))
    uploads = clips(8)
    want = [alone(predictor, d) for d in uploads]
    score, sizes, busy, go = predictor.score, [], threading.Event(), threading.Event()

    def held(inputs, seconds):  # the first forward pass holds the model until the others queued
        sizes.append(len(inputs))
        busy.set()
        go.wait(WAIT_S)
        return score(inputs, seconds)

    async def main():
        async with served(app) as http:
            await ready(http)
            predictor.score = held
            first = asyncio.ensure_future(post(http, uploads[0]))
            await until(busy.is_set)
            rest = [asyncio.ensure_future(post(http, d)) for d in uploads[1:]]
            await until(lambda: app.state.batcher.pending == 7)
            go.set()
            return await asyncio.gather(first, *rest)

    try:
        responses = asyncio.run(main())
    finally:
        go.set()
    assert sizes == [1, 7]  # 8 requests, 2 forward passes
    for r, w in zip(responses, want, strict=True):
        assert r.status_code == 200, r.text
        assert_same(r.json(), w)


def test_max_batch_1_scores_each_request_alone(tiny_run):
    predictor = Predictor.load(tiny_run)
    app = create_app(predictor, ServiceLimits(max_batch=1))
    uploads = clips(4)
    want = [alone(predictor, d) for d in uploads]
    score, sizes = predictor.score, []

    def counted(inputs, seconds):
        sizes.append(len(inputs))
        return score(inputs, seconds)

    async def main():
        async with served(app) as http:
            await ready(http)
            predictor.score = counted
            return await asyncio.gather(*(post(http, d) for d in uploads))

    responses = asyncio.run(main())
    assert sizes == [1, 1, 1, 1]
    for r, w in zip(responses, want, strict=True):
        assert_same(r.json(), w)


def test_onnx_backend_serves_the_same_answers(tiny_run, client):
    uploads = clips(4, seconds=1.5)
    limit_threads()  # as `emovox serve` does before loading: one onnxruntime thread per call
    predictor = Predictor.load(tiny_run, backend="onnx")
    assert predictor.model.session.get_session_options().intra_op_num_threads == 1
    with TestClient(create_app(predictor)) as onnx:
        wait_ready(onnx)
        for d in uploads:
            got, want = (c.post("/v1/predict", files={"file": ("x.wav", d)}) for c in (onnx, client))
            assert got.status_code == 200, got.text
            assert got.json()["label"] == want.json()["label"]
            assert got.json()["scores"] == pytest.approx(want.json()["scores"], abs=1e-4)


def test_not_healthy_until_warmed_up_and_an_early_request_is_answered_after(tiny_run):
    predictor = Predictor.load(tiny_run)
    score, warming, go = predictor.score, threading.Event(), threading.Event()

    def slow_first_calls(inputs, seconds):
        warming.set()
        go.wait(WAIT_S)
        return score(inputs, seconds)

    predictor.score = slow_first_calls
    app = create_app(predictor)

    async def main():
        async with served(app) as http:
            await until(warming.is_set)
            health = await http.get("/healthz")
            early = asyncio.ensure_future(post(http, clips(1)[0]))
            go.set()
            await ready(http)
            return health, await early

    try:
        health, early = asyncio.run(main())
    finally:
        go.set()
    assert health.status_code == 503 and health.json()["status"] == "warming up"
    assert early.status_code == 200, early.text


def test_a_long_upload_does_not_hold_back_short_ones(tiny_run):
    predictor = Predictor.load(tiny_run)
    # one decode thread: were the long upload decoded there, the short ones would queue behind it
    app = create_app(predictor, ServiceLimits(workers=1, batch_max_s=3.0, max_duration_s=20.0))
    long_upload = wav_bytes(tone(PITCH["sad"], 8.0, 16000))
    prepare, stuck, go = predictor.prepare, threading.Event(), threading.Event()

    def slow_on_long(signals, **kw):  # the long upload's features take as long as we like
        if len(signals[0]) > 3 * 16000:
            stuck.set()
            go.wait(WAIT_S)
        return prepare(signals, **kw)

    async def main():
        async with served(app) as http:
            await ready(http)
            predictor.prepare = slow_on_long
            long = asyncio.ensure_future(post(http, long_upload, "long.wav"))
            await until(stuck.is_set)
            short = await asyncio.gather(*(post(http, d) for d in clips(6)))
            long_done_first = long.done()
            go.set()
            return short, long_done_first, await long

    try:
        short, long_done_first, long = asyncio.run(main())
    finally:
        go.set()
    assert [r.status_code for r in short] == [200] * 6
    assert not long_done_first
    assert long.status_code == 200 and abs(long.json()["duration_s"] - 8.0) < 0.01


@pytest.mark.parametrize("bad", [{"max_batch": 0}, {"workers": 0}, {"max_wait_ms": -1.0}, {"batch_max_s": 0.0}])
def test_bad_service_limits_fail_early(bad):
    with pytest.raises(ConfigError):
        ServiceLimits(**bad)


def test_a_failed_batch_fails_each_of_its_callers_and_the_batcher_goes_on():
    def fn(xs):
        if -1 in xs:
            raise ValueError("bad item")
        return [x + 1 for x in xs]

    async def main():
        async with MicroBatcher(fn, max_batch=4, max_wait_s=0.05) as batcher:
            failed = await asyncio.gather(batcher.submit(-1), batcher.submit(2), return_exceptions=True)
            return failed, await asyncio.gather(*(batcher.submit(i) for i in range(6)))

    failed, ok = asyncio.run(main())
    assert [type(e) for e in failed] == [ValueError, ValueError]
    assert ok == [1, 2, 3, 4, 5, 6]

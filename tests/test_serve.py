import asyncio
import gc
import importlib.util
import io
import os
import socket
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient

from emovox import audio
from emovox.errors import ConfigError
from emovox.features import FeatureConfig
from emovox.normalize import Stats
from emovox.predict import Predictor
from emovox.serve import MicroBatcher, ServiceLimits, create_app, limit_threads, serving_backend
from emovox.serve import app as service
from emovox.serve.speakers import SpeakerStats

from .conftest import PITCH, tone, write

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


def holding(predictor):
    """A stand-in for ``predictor.score`` that records batch sizes and holds every forward
    pass until ``go`` is set (so that requests queue behind the first): (held, sizes, busy, go)."""
    score, sizes, busy, go = predictor.score, [], threading.Event(), threading.Event()

    def held(inputs, seconds, **kw):
        sizes.append(len(inputs))
        busy.set()
        go.wait(WAIT_S)
        return score(inputs, seconds, **kw)

    return held, sizes, busy, go


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
    assert set(body) == {"label", "scores", "duration_s", "quality", "adapted"} and abs(body["duration_s"] - 1.5) < 0.01
    assert body["adapted"] is False and body["quality"]["clipping"] == 0.0 and body["quality"]["speech_s"] > 1.0


def test_a_service_of_some_classes_labels_and_scores_only_those(tiny_run):
    with TestClient(create_app(Predictor.load(tiny_run).only(["angry", "sad"]))) as c:
        assert c.get("/v1/labels").json() == {"labels": ["sad", "angry"]}
        r = c.post("/v1/predict", files={"file": ("a.wav", wav_bytes(tone(PITCH["angry"], 1.5, 16000), 16000, "WAV"))})
        assert r.status_code == 200, r.text
        assert list(r.json()["scores"]) == ["sad", "angry"] and abs(sum(r.json()["scores"].values()) - 1) < 1e-4


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
    held, sizes, busy, go = holding(predictor)

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

    def counted(inputs, seconds, **kw):
        sizes.append(len(inputs))
        return score(inputs, seconds, **kw)

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

    def slow_first_calls(inputs, seconds, **kw):
        warming.set()
        go.wait(WAIT_S)
        return score(inputs, seconds, **kw)

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
    extract, stuck, go = predictor.extract, threading.Event(), threading.Event()

    def slow_on_long(signals, **kw):  # the long upload's features take as long as we like
        if len(signals[0]) > 3 * 16000:
            stuck.set()
            go.wait(WAIT_S)
        return extract(signals, **kw)

    async def main():
        async with served(app) as http:
            await ready(http)
            predictor.extract = slow_on_long
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


def test_auto_backend_is_onnx_on_the_cpu_and_torch_without_onnxruntime_or_on_a_gpu(monkeypatch):
    assert serving_backend("auto", "cpu") == "onnx"
    assert (serving_backend("torch", "cpu"), serving_backend("onnx")) == ("torch", "onnx")
    find_spec = importlib.util.find_spec

    def without_onnxruntime(name, *args):
        return None if name == "onnxruntime" else find_spec(name, *args)
    monkeypatch.setattr(importlib.util, "find_spec", without_onnxruntime)
    assert serving_backend("auto", "cpu") == "torch"
    monkeypatch.undo()
    monkeypatch.setattr("emovox.serve.app.resolve_device", lambda device: torch.device("cuda"))
    assert serving_backend("auto", "auto") == "torch"


def test_auto_backend_serves_a_model_on_the_torch_front_end_with_torch():
    spec = Predictor.load().spec  # the bundled model
    assert serving_backend("auto", "cpu", spec) == "torch" and serving_backend("onnx", "cpu", spec) == "onnx"


def test_one_feature_thread_for_batched_numpy_features_and_two_for_encoder_features(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert ServiceLimits().feature_threads(FeatureConfig()) == 1  # log-mel: numpy holds the GIL
    assert ServiceLimits().feature_threads(FeatureConfig(kind="mfcc")) == 1
    assert ServiceLimits().feature_threads(FeatureConfig(kind="utterance")) == 2  # openSMILE, GE2E: they release it
    assert ServiceLimits(max_batch=1).feature_threads(FeatureConfig()) == 2  # the forward passes run there too
    assert ServiceLimits(workers=3).feature_threads(FeatureConfig()) == 3


def test_encoder_features_batch_up_to_4_and_wait_longer_unless_told():
    assert ServiceLimits().batching(FeatureConfig()) == (16, 2.0)  # log-mel
    assert ServiceLimits().batching(FeatureConfig(kind="utterance")) == (4, 10.0)  # the bundled model's front end
    assert ServiceLimits(max_batch=1, max_wait_ms=0.0).batching(FeatureConfig(kind="utterance")) == (1, 0.0)


def test_a_request_to_a_quiet_batcher_goes_at_once_and_one_to_a_busy_batcher_waits_to_fill():
    go, sizes = threading.Event(), []

    def fn(xs):
        sizes.append(len(xs))
        if "hold" in xs:
            go.wait(WAIT_S)
        return xs

    async def main():
        # a wait far longer than the test may take: only a full batch or a quiet batcher ends it
        async with MicroBatcher(fn, max_batch=3, max_wait_s=10 * WAIT_S, workers=2) as batcher:
            assert await asyncio.wait_for(batcher.submit("alone"), WAIT_S) == "alone"
            held = asyncio.gather(*(batcher.submit(x) for x in ("hold", "a", "b")))  # a full batch goes
            await until(lambda: sizes == [1, 3])
            # while it runs, the next items wait for each other instead of going one by one
            first = asyncio.ensure_future(batcher.submit(0))
            await asyncio.sleep(0.05)
            got = await asyncio.wait_for(asyncio.gather(first, batcher.submit(1), batcher.submit(2)), WAIT_S)
            go.set()
            return got, await held

    try:
        assert asyncio.run(main()) == ([0, 1, 2], ["hold", "a", "b"])
    finally:
        go.set()
    assert sizes == [1, 3, 3]


def test_one_client_sending_one_request_after_another_never_waits_for_company():
    sizes = []

    def fn(xs):
        sizes.append(len(xs))
        return xs

    async def main():
        async with MicroBatcher(fn, max_batch=4, max_wait_s=10 * WAIT_S) as batcher:
            return [await asyncio.wait_for(batcher.submit(i), WAIT_S) for i in range(5)]

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert sizes == [1] * 5


def test_the_service_keeps_freed_memory_on_glibc_and_changes_nothing_elsewhere(monkeypatch):
    import platform

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert service.keep_freed_memory() is glibc
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")  # the user's own setting stays
    assert service.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert service.keep_freed_memory() is False


def test_the_bundled_model_serves_the_predictors_answers_in_batches():
    predictor = Predictor.load()  # the bundled model: encoder features, batches of up to 4
    app = create_app(predictor)
    uploads = clips(6, seconds=2.0)
    want = [alone(predictor, d) for d in uploads]

    async def main():
        async with served(app) as http:
            await ready(http)
            return await asyncio.gather(*(post(http, d) for d in uploads))

    responses = asyncio.run(main())
    for r, w in zip(responses, want, strict=True):
        assert r.status_code == 200, r.text
        assert_same(r.json(), w)
    assert app.state.batcher.items >= 6 and app.state.batcher.max_batch == 4


def test_the_event_loop_never_reads_audio(tiny_run, monkeypatch):
    """Headers, decoding and features run in threads: a C call on the loop would hand the GIL
    to a busy thread and make every connection wait for it back."""
    from emovox import audio as audio_module

    app = create_app(Predictor.load(tiny_run), ServiceLimits(max_duration_s=12.0))
    threads = []
    for name in ("duration", "decode_bytes"):
        fn = getattr(audio_module, name)

        def recorded(*args, _fn=fn, **kw):
            threads.append(threading.current_thread())
            return _fn(*args, **kw)
        monkeypatch.setattr(audio_module, name, recorded)

    async def main():
        async with served(app) as http:
            await ready(http)
            return await asyncio.gather(post(http, clips(1)[0]), post(http, clips(1)[0], path="/v1/timeline"),
                                        post(http, wav_bytes(tone(200, 13.0, 8000), 8000)), post(http, b"not audio"))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200, 200, 413, 400]
    assert threads and threading.main_thread() not in threads  # the loop runs in the main thread here


def test_warm_up_puts_what_exists_out_of_the_collectors_sight(tiny_run):
    gc.unfreeze()
    try:
        with TestClient(create_app(Predictor.load(tiny_run))) as c:
            wait_ready(c)
            assert gc.get_freeze_count() > 0  # a full collection no longer walks the model and the modules
            assert c.post("/v1/predict", files={"file": ("x.wav", clips(1)[0])}).status_code == 200
    finally:
        gc.unfreeze()


def benchmark_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "service.py"
    spec = importlib.util.spec_from_file_location("service_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def uvicorn_server(app):
    """``app`` served by uvicorn on a free loopback port, in a thread: (host, port)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


def test_the_benchmark_client_reads_each_answer_whole_on_one_connection_and_counts_errors(tiny_run):
    bench = benchmark_module()
    good, bad = clips(1)[0], b"this is not audio at all"
    with uvicorn_server(create_app(Predictor.load(tiny_run))) as (host, port):
        with TestClient(create_app(Predictor.load(tiny_run))) as reference:
            wait_ready(reference)
            want = reference.post("/v1/predict", files={"file": ("clip.wav", good)}).json()

        async def main():
            client = bench.RawClient(host, port)
            answers = []
            for payload in (good, bad, good):
                answers.append(await client.send(bench.multipart_post(host, port, "/v1/predict", "clip.wav", payload)))
                answers[-1] += (client.writer,)
            await client.close()
            url = f"http://{host}:{port}/v1/predict"
            return answers, await bench.load(url, good, 2, 6), await bench.load(url, bad, 2, 4)

        answers, loaded, failed = asyncio.run(main())
    (s1, b1, conn1), (s2, b2, conn2), (s3, b3, conn3) = answers
    assert (s1, s2, s3) == (200, 400, 200) and conn1 is conn2 is conn3  # keep-alive, even after a 400
    assert_same(bench.json.loads(b1), want) and bench.json.loads(b3) == bench.json.loads(b1)
    assert "cannot" in bench.json.loads(b2)["detail"]
    assert len(loaded["latencies"]) == 6 and loaded["errors"] == 0 and loaded["client_cpu"] >= 0
    assert len(failed["latencies"]) == 4 and failed["errors"] == 4


def adapted_alone(predictor, uploads):
    """The result of the last of ``uploads`` scored with the statistics of all of them (one speaker)."""
    signals = [audio.decode_bytes(d, sr=predictor.features.sample_rate) for d in uploads]
    feats = predictor.extract(signals)
    return predictor.score(feats[-1:], [len(signals[-1]) / predictor.features.sample_rate], stats=Stats.of(feats))[0]


@pytest.mark.parametrize("max_batch", [16, 1])
def test_each_speaker_id_has_its_own_running_statistics(normed_run, max_batch):
    predictor = Predictor.load(normed_run)
    bob = [wav_bytes(tone(PITCH[e] * 1.7, 1.1, 16000, seed=9)) for e in ("sad", "happy")]
    uploads = {"alice": clips(3), "bob": bob}
    sent = [("alice", 0, "form"), ("bob", 0, "form"), ("alice", 1, "query"), ("alice", 2, "form"), ("bob", 1, "query")]
    with TestClient(create_app(predictor, ServiceLimits(max_batch=max_batch))) as c:
        wait_ready(c)
        for who, i, how in sent:
            data = uploads[who][i]
            r = c.post("/v1/predict", files={"file": ("x.wav", data)},
                       **({"data": {"speaker": who}} if how == "form" else {"params": {"speaker": who}}))
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["adapted"], body["speaker"], body["speaker_clips"]) == (True, who, i + 1)
            assert_same(body, adapted_alone(predictor, uploads[who][: i + 1]))
        assert c.get("/healthz").json()["speakers"] == 2
        plain = c.post("/v1/predict", files={"file": ("x.wav", uploads["alice"][2])}).json()
    assert plain["adapted"] is False and "speaker_clips" not in plain
    assert_same(plain, alone(predictor, uploads["alice"][2]))
    assert plain["scores"] != pytest.approx(body["scores"], abs=1e-3)  # the statistics matter


def test_requests_of_different_speakers_share_a_forward_pass_each_with_its_own_statistics(normed_run):
    predictor = Predictor.load(normed_run)
    app = create_app(predictor, ServiceLimits(max_batch=16))
    uploads = clips(7)
    owners = [None, "a", "b", "c", "a", "b", "c"]  # the first holds the model until the others queued
    held, sizes, busy, go = holding(predictor)

    async def main():
        async with served(app) as http:
            await ready(http)
            predictor.score = held
            send = [http.post("/v1/predict", files={"file": ("x.wav", d)}, data={"speaker": w} if w else {})
                    for d, w in zip(uploads, owners, strict=True)]
            first = asyncio.ensure_future(send[0])
            await until(busy.is_set)
            rest = [asyncio.ensure_future(r) for r in send[1:]]
            await until(lambda: app.state.batcher.pending == 6)
            go.set()
            return await asyncio.gather(first, *rest)

    try:
        responses = [r.json() for r in asyncio.run(main())]
    finally:
        go.set()
    assert sizes == [1, 6]
    assert_same(responses[0], alone(predictor, uploads[0]))
    for who in "abc":
        mine = [i for i, w in enumerate(owners) if w == who]
        by_clips = {responses[i]["speaker_clips"]: i for i in mine}  # the order they reached the statistics
        assert sorted(by_clips) == [1, 2]
        assert_same(responses[by_clips[1]], adapted_alone(predictor, [uploads[by_clips[1]]]))
        assert_same(responses[by_clips[2]], adapted_alone(predictor, [uploads[by_clips[1]], uploads[by_clips[2]]]))


def test_the_least_recently_heard_speaker_is_forgotten_beyond_max_speakers(normed_run):
    with TestClient(create_app(Predictor.load(normed_run), ServiceLimits(max_speakers=2))) as c:
        wait_ready(c)
        data = clips(1)[0]
        counts = [c.post("/v1/predict", files={"file": ("x.wav", data)}, data={"speaker": who}).json()["speaker_clips"]
                  for who in ("a", "b", "a", "c", "b", "a", "b")]
        assert counts == [1, 1, 2, 1, 1, 1, 2]  # c evicts b (a was heard since), b then a, a then c; b stays
        assert c.get("/healthz").json()["speakers"] == 2


def test_a_model_that_cannot_adapt_ignores_a_speaker_id_and_says_so(client):
    r = client.post("/v1/predict", files={"file": ("x.wav", clips(1)[0])}, data={"speaker": "alice"})
    assert r.status_code == 200 and r.json()["adapted"] is False and "speaker_clips" not in r.json()
    health = client.get("/healthz").json()
    assert health["can_adapt"] is False and health["speakers"] == 0


@pytest.mark.parametrize(("form", "query", "message"), [
    ({"speaker": "x" * 201}, {}, "longer than 200"),
    ({"speaker": "alice"}, {"speaker": "bob"}, "two different speaker ids"),
])
def test_bad_speaker_ids_are_a_400(normed_run, form, query, message):
    with TestClient(create_app(Predictor.load(normed_run))) as c:
        r = c.post("/v1/predict", files={"file": ("x.wav", clips(1)[0])}, data=form, params=query)
    assert r.status_code == 400 and message in r.json()["detail"]


def test_speaker_statistics_are_copies_and_survive_threads():
    store = SpeakerStats(capacity=4)
    first, clips_ = store.add("a", np.ones((2, 5)))
    store.add("a", np.zeros((2, 5)))
    assert clips_ == 1 and first.n == 5 and first.sum.tolist() == [5.0, 5.0]  # later clips leave it as it was

    def many(who):
        for _ in range(200):
            store.add(who, np.ones((2, 3)))

    threads = [threading.Thread(target=many, args=(w,)) for w in ("b", "c", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.add("b", np.ones((2, 3)))[1] == 401 and store.add("c", np.ones((2, 3)))[0].n == 3 * 401
    with pytest.raises(ConfigError):
        SpeakerStats(capacity=0)


def test_timeline_adapts_to_the_upload_unless_told_not_to(voiced_run, tmp_path):
    from .test_segment import HELLO

    predictor = Predictor.load(voiced_run)
    sentence, sr = sf.read(HELLO, dtype="float32")
    path = write(tmp_path / "rec.wav", np.concatenate([np.zeros(sr, np.float32), sentence] * 2), sr)
    with TestClient(create_app(predictor)) as c:
        wait_ready(c)
        data = path.read_bytes()
        default = c.post("/v1/timeline", files={"file": ("r.wav", data)}).json()["rows"]
        off = [c.post("/v1/timeline", files={"file": ("r.wav", data)}, **kw).json()["rows"]
               for kw in ({"data": {"adapt": "false"}}, {"params": {"adapt": "false"}})]
    assert default == predictor.timeline(path) and any(r["adapted"] for r in default)
    assert off[0] == off[1] == predictor.timeline(path, adapt=False) and not any(r["adapted"] for r in off[0])
    assert {r["speaker"] for r in default} == {r["speaker"] for r in off[0]} and default[0]["speaker"] == "S1"

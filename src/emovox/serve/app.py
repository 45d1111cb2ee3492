"""FastAPI app: ``/v1/predict``, ``/v1/timeline``, ``/v1/labels``, ``/healthz`` and the page at ``/``.

The model is loaded once and warmed up (the whole request path, on a synthetic clip)
before ``/healthz`` answers 200; until then it answers 503 and requests wait. The event
loop only moves bytes: reading an upload's header, decoding and feature extraction run in
a small thread pool (a C call on the loop would hand the GIL to a busy thread and wait
for it back). Short uploads are then scored in micro-batches: requests that arrive while
the model is busy share one forward pass (:class:`~emovox.serve.batching.MicroBatcher`).
Uploads longer than ``ServiceLimits.batch_max_s`` are decoded and scored on their own in
a thread of their own, so one 10-minute file never holds the short ones back. Oversize
uploads get 413; empty, undecodable or silent audio gets 400 with a one-line reason.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import io
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import numpy as np
import soundfile as sf
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from emovox import __version__, audio
from emovox.device import resolve as resolve_device
from emovox.errors import AudioError, ConfigError
from emovox.features import ENCODED, FeatureConfig
from emovox.predict import Predictor
from emovox.serve.batching import MicroBatcher

CHUNK = 1 << 16
WARMUP_S = 3.0  # length of the synthetic warm-up clips, in seconds
WARMUP_SR = 22050  # their rate (Hz): not the model's, so that resampling warms up too


@dataclass(frozen=True)
class ServiceLimits:
    """Upload limits (413 beyond them) and how requests are batched.

    Attributes
    ----------
    max_upload_mb : float
        Largest upload, in MB.
    max_duration_s : float
        Longest audio, in seconds.
    workers : int or None
        Threads that read upload headers, decode and extract features (and, with
        ``max_batch=1``, run the forward passes). None: one when batching the features
        numpy computes (log-mel, MFCC, spectrogram, waveform), whose small array
        operations hold the GIL, so that a second thread only adds contention (in
        ``benchmarks/service.py`` one thread served more requests per second than two, at
        a lower p99); else up to two (the cores): encoder features (eGeMAPS, GE2E, ssl)
        and forward passes run in C code that releases the GIL.
    max_batch : int
        Most requests scored in one forward pass; 1 scores each request alone.
    max_wait_ms : float
        Longest time, in ms, that a batch which is not full waits for more requests.
    batch_max_s : float
        Uploads longer than this many seconds skip the batches: they are decoded and
        scored on their own, in a thread of their own.
    """

    max_upload_mb: float = 25.0
    max_duration_s: float = 600.0
    workers: int | None = None
    max_batch: int = 16
    max_wait_ms: float = 2.0
    batch_max_s: float = 10.0

    def __post_init__(self) -> None:
        if (self.workers is not None and self.workers < 1) or self.max_batch < 1:
            raise ConfigError(f"workers and max_batch must be at least 1, got {self.workers} and {self.max_batch}")
        if self.max_wait_ms < 0 or self.batch_max_s <= 0:
            raise ConfigError("max_wait_ms cannot be negative and batch_max_s must be positive")

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def feature_threads(self, features: FeatureConfig) -> int:
        """:attr:`workers`, or its default for ``features`` when it is None."""
        if self.workers is not None:
            return self.workers
        if features.kind not in ENCODED and self.max_batch > 1:
            return 1
        return max(1, min(2, os.cpu_count() or 1))


def serving_backend(backend: str = "auto", device: str = "auto") -> str:
    """The backend to serve with: ``auto`` is ``onnx`` when the model runs on the CPU and
    onnx and onnxruntime are installed, else ``torch``; ``torch`` and ``onnx`` stay.

    With one thread per call, onnxruntime runs the log-mel cnn about 4x faster than eager
    torch (about 1.0 against 4.3 ms per 3 s clip here) and gives the same probabilities
    to 1e-4.

    Examples
    --------
    >>> serving_backend("torch")
    'torch'
    """
    if backend != "auto":
        return backend
    if resolve_device(device).type != "cpu":
        return "torch"
    installed = all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))
    return "onnx" if installed else "torch"


def limit_threads() -> None:
    """One compute thread per call for the whole process: torch, BLAS (numpy's feature
    maths) and onnxruntime, whose sessions take torch's count when they are built (so call
    this before loading an onnx predictor). Under concurrent requests on a few cores, more
    threads per call only fight over them."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def warm_up(predictor: Predictor, max_batch: int) -> None:
    """Run the request path on synthetic clips: decode, resample, features, and forward
    passes of one clip and of a full batch, so that no real request pays for first calls;
    then move every object there is into the garbage collector's permanent generation
    (:func:`gc.freeze`), so that no request waits for a full collection of them."""
    t = np.arange(int(WARMUP_S * WARMUP_SR)) / WARMUP_SR
    signals = []
    for pitch in (150.0, 230.0):  # two clips: a per-speaker-normalised model needs two
        buf = io.BytesIO()
        sf.write(buf, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), WARMUP_SR, format="WAV")
        signals.append(audio.decode_bytes(buf.getvalue(), sr=predictor.features.sample_rate, source="warm-up"))
    inputs = predictor.extract(signals)
    predictor.score(inputs[:1], [WARMUP_S])
    predictor.score([inputs[i % 2] for i in range(max_batch)], [WARMUP_S] * max_batch)
    # what exists now (modules, the model) lives as long as the process: out of the
    # collector's sight, a full collection takes microseconds instead of 150 ms or more
    gc.collect()
    gc.freeze()


def create_app(predictor: Predictor, limits: ServiceLimits | None = None) -> FastAPI:
    """Build the service around one loaded predictor (see :func:`limit_threads`).

    Examples
    --------
    >>> app = create_app(Predictor.load("runs/emodb-cnn"))  # doctest: +SKIP
    """
    limits = limits or ServiceLimits()
    limit_threads()
    sr = predictor.features.sample_rate
    threads = limits.feature_threads(predictor.features)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="emovox-decode")
    long_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emovox-long")
    batcher = MicroBatcher(lambda items: predictor.score([x for x, _ in items], [s for _, s in items]),
                           max_batch=limits.max_batch, max_wait_s=limits.max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        async with batcher:
            loop = asyncio.get_running_loop()
            app_.state.warm = loop.run_in_executor(batcher.executor, warm_up, predictor, limits.max_batch)
            yield
        pool.shutdown(wait=False)
        long_pool.shutdown(wait=False)

    app = FastAPI(title="emovox", version=__version__, lifespan=lifespan,
                  description="Speech emotion recognition. Upload audio (WAV, FLAC, OGG) as multipart `file`.")
    app.state.batcher = batcher

    async def read_upload(request: Request, file: UploadFile) -> bytes:
        """The upload's bytes, or 413 (larger than ``max_upload_mb``) or 400 (empty)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes + CHUNK:
            raise HTTPException(413, f"upload larger than {limits.max_upload_mb:g} MB")
        data = bytearray()
        while chunk := await file.read(CHUNK):
            data += chunk
            if len(data) > limits.max_bytes:
                raise HTTPException(413, f"upload larger than {limits.max_upload_mb:g} MB")
        if not data:
            raise HTTPException(400, f"{file.filename or 'upload'}: empty file")
        return bytes(data)

    async def run(executor: ThreadPoolExecutor, fn, *args):
        """``fn(*args)`` in a thread of ``executor``; AudioError is a 400."""
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except AudioError as exc:
            raise HTTPException(400, str(exc)) from None

    def header_seconds(data: bytes, name: str) -> float:
        """The upload's duration (s) from its header, or 400 (not audio) or 413 (too long)."""
        try:
            seconds = audio.duration(data)
        except AudioError as exc:
            raise HTTPException(400, f"{name}: {exc}; upload WAV, FLAC or OGG audio") from None
        if seconds > limits.max_duration_s:
            raise HTTPException(413, f"{name}: {seconds:.0f} s of audio exceeds the {limits.max_duration_s:g} s limit")
        return seconds

    def short_signal(data: bytes, name: str) -> np.ndarray | None:
        """The upload at the model's rate, or None if it is longer than ``batch_max_s``."""
        if header_seconds(data, name) > limits.batch_max_s:
            return None
        return audio.decode_bytes(data, sr=sr, source=name)

    def prepared(data: bytes, name: str) -> tuple[np.ndarray, float] | None:
        """The model's input for a short upload and its duration (s), ready for a batch."""
        y = short_signal(data, name)
        return None if y is None else (predictor.extract([y])[0], len(y) / sr)

    def scored(data: bytes, name: str) -> dict | None:
        """The result for a short upload, scored alone (no batching)."""
        y = short_signal(data, name)
        return None if y is None else predictor.predict_signals([y])[0]

    def scored_alone(data: bytes, name: str) -> dict:
        return predictor.predict_signals([audio.decode_bytes(data, sr=sr, source=name)])[0]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return (resources.files("emovox.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    async def healthz():
        """200 once the model is warmed up, 503 (``"status": "warming up"``) before; with the
        forward passes that scored batches so far and the requests in them."""
        info = {"model": predictor.spec.model, "version": __version__, "max_batch": limits.max_batch,
                "batches": batcher.batches, "batched_requests": batcher.items}
        if not app.state.warm.done():
            return JSONResponse({"status": "warming up", **info}, status_code=503)
        app.state.warm.result()  # a failed warm-up is a 500 with its traceback in the log
        return {"status": "ok", **info}

    @app.get("/v1/labels")
    async def labels() -> dict:
        return {"labels": predictor.labels}

    @app.post("/v1/predict")
    async def predict(request: Request, file: UploadFile) -> dict:
        """Emotion of the whole upload: ``{"label", "scores", "duration_s"}``."""
        data = await read_upload(request, file)
        name = file.filename or "upload"
        await asyncio.shield(app.state.warm)
        if limits.max_batch == 1:  # no batching: each request decoded and scored alone
            result = await run(pool, scored, data, name)
        else:
            x = await run(pool, prepared, data, name)
            try:
                result = None if x is None else await batcher.submit(x)
            except AudioError as exc:  # e.g. a speaker-normalised model given one clip and no statistics
                raise HTTPException(400, str(exc)) from None
        if result is None:  # longer than batch_max_s: on the side, never in the way of the short ones
            result = await run(long_pool, scored_alone, data, name)
        return JSONResponse(result)  # a plain dict of str and float: no validation to pay for

    @app.post("/v1/timeline")
    async def timeline(request: Request, file: UploadFile) -> dict:
        """Emotion per speech segment: ``{"rows": [{"start", "end", "label", "scores"}], "duration_s"}``."""
        data = await read_upload(request, file)
        seconds = await run(pool, header_seconds, data, file.filename or "upload")
        await asyncio.shield(app.state.warm)
        rows = await run(long_pool if seconds > limits.batch_max_s else pool, predictor.timeline, io.BytesIO(data))
        return {"rows": rows, "duration_s": round(seconds, 3)}

    return app

"""FastAPI app: ``/v1/predict``, ``/v1/timeline``, ``/v1/labels``, ``/healthz`` and the page at ``/``.

The model is loaded once and warmed up (the whole request path, on a synthetic clip)
before ``/healthz`` answers 200; until then it answers 503 and requests wait. Decoding
and feature extraction run in a small thread pool, never on the event loop. Short
uploads are then scored in micro-batches: requests that arrive while the model is busy
share one forward pass (:class:`~emovox.serve.batching.MicroBatcher`). Uploads longer
than ``ServiceLimits.batch_max_s`` are decoded and scored on their own in a thread of
their own, so one 10-minute file never holds the short ones back. Oversize uploads get
413; empty, undecodable or silent audio gets 400 with a one-line reason.
"""

from __future__ import annotations

import asyncio
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
from emovox.errors import AudioError, ConfigError
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
    workers : int
        Threads that decode uploads and extract features.
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
    workers: int = max(1, min(2, os.cpu_count() or 1))
    max_batch: int = 16
    max_wait_ms: float = 2.0
    batch_max_s: float = 10.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_batch < 1:
            raise ConfigError(f"workers and max_batch must be at least 1, got {self.workers} and {self.max_batch}")
        if self.max_wait_ms < 0 or self.batch_max_s <= 0:
            raise ConfigError("max_wait_ms cannot be negative and batch_max_s must be positive")

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


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
    passes of one clip and of a full batch, so that no real request pays for first calls."""
    t = np.arange(int(WARMUP_S * WARMUP_SR)) / WARMUP_SR
    signals = []
    for pitch in (150.0, 230.0):  # two clips: a per-speaker-normalised model needs two
        buf = io.BytesIO()
        sf.write(buf, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), WARMUP_SR, format="WAV")
        signals.append(audio.decode_bytes(buf.getvalue(), sr=predictor.features.sample_rate, source="warm-up"))
    inputs = predictor.prepare(signals)
    predictor.score(inputs[:1], [WARMUP_S])
    predictor.score([inputs[i % 2] for i in range(max_batch)], [WARMUP_S] * max_batch)


def create_app(predictor: Predictor, limits: ServiceLimits | None = None) -> FastAPI:
    """Build the service around one loaded predictor (see :func:`limit_threads`).

    Examples
    --------
    >>> app = create_app(Predictor.load("runs/emodb-cnn"))  # doctest: +SKIP
    """
    limits = limits or ServiceLimits()
    limit_threads()
    sr = predictor.features.sample_rate
    pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="emovox-decode")
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

    async def read_upload(request: Request, file: UploadFile) -> tuple[bytes, float]:
        """The upload's bytes and duration (s, from its header), or 413/400."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes + CHUNK:
            raise HTTPException(413, f"upload larger than {limits.max_upload_mb:g} MB")
        data = bytearray()
        while chunk := await file.read(CHUNK):
            data += chunk
            if len(data) > limits.max_bytes:
                raise HTTPException(413, f"upload larger than {limits.max_upload_mb:g} MB")
        data = bytes(data)
        name = file.filename or "upload"
        if not data:
            raise HTTPException(400, f"{name}: empty file")
        try:
            seconds = audio.duration(data)
        except AudioError as exc:
            raise HTTPException(400, f"{name}: {exc}; upload WAV, FLAC or OGG audio") from None
        if seconds > limits.max_duration_s:
            raise HTTPException(413, f"{name}: {seconds:.0f} s of audio exceeds the {limits.max_duration_s:g} s limit")
        await asyncio.shield(app.state.warm)
        return data, seconds

    async def run(executor: ThreadPoolExecutor, fn, *args):
        """``fn(*args)`` in a thread of ``executor``; AudioError is a 400."""
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except AudioError as exc:
            raise HTTPException(400, str(exc)) from None

    def prepared(data: bytes, name: str) -> tuple[np.ndarray, float]:
        """The model's input for an upload and its duration (s), ready for a batch."""
        y = audio.decode_bytes(data, sr=sr, source=name)
        return predictor.prepare([y])[0], len(y) / sr

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
        data, seconds = await read_upload(request, file)
        name = file.filename or "upload"
        if seconds > limits.batch_max_s:  # on the side, never in the way of the short ones
            return await run(long_pool, scored_alone, data, name)
        if limits.max_batch == 1:  # no batching: each request decoded and scored alone
            return await run(pool, scored_alone, data, name)
        return await batcher.submit(await run(pool, prepared, data, name))

    @app.post("/v1/timeline")
    async def timeline(request: Request, file: UploadFile) -> dict:
        """Emotion per speech segment: ``{"rows": [{"start", "end", "label", "scores"}], "duration_s"}``."""
        data, seconds = await read_upload(request, file)
        rows = await run(long_pool if seconds > limits.batch_max_s else pool, predictor.timeline, io.BytesIO(data))
        return {"rows": rows, "duration_s": round(seconds, 3)}

    return app

"""FastAPI app: ``/v1/predict``, ``/v1/timeline``, ``/v1/labels``, ``/healthz`` and the page at ``/``.

The model is loaded once. Inference runs in a small thread pool (one torch thread per
worker), so the event loop never blocks. Oversize uploads get 413; empty, undecodable
or silent audio gets 400 with a one-line reason.
"""

from __future__ import annotations

import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse

from emovox import __version__, audio
from emovox.errors import AudioError
from emovox.predict import Predictor

CHUNK = 1 << 16


@dataclass(frozen=True)
class ServiceLimits:
    """Upload limits: bytes per file and seconds of audio (413 beyond them)."""

    max_upload_mb: float = 25.0
    max_duration_s: float = 600.0
    workers: int = max(1, min(2, os.cpu_count() or 1))

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def create_app(predictor: Predictor, limits: ServiceLimits | None = None) -> FastAPI:
    """Build the service around one loaded predictor.

    Examples
    --------
    >>> app = create_app(Predictor.load("runs/emodb-cnn"))  # doctest: +SKIP
    """
    import torch

    limits = limits or ServiceLimits()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="emovox-infer")

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        pool.shutdown(wait=False)

    app = FastAPI(title="emovox", version=__version__, lifespan=lifespan,
                  description="Speech emotion recognition. Upload audio (WAV, FLAC, OGG) as multipart `file`.")
    sr = predictor.features.sample_rate

    async def read_upload(request: Request, file: UploadFile) -> bytes:
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
        return data

    async def run(fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except AudioError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return (resources.files("emovox.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model": predictor.spec.get("model"), "version": __version__}

    @app.get("/v1/labels")
    async def labels() -> dict:
        return {"labels": predictor.labels}

    @app.post("/v1/predict")
    async def predict(request: Request, file: UploadFile) -> dict:
        """Emotion of the whole upload: ``{"label", "scores", "duration_s"}``."""
        data = await read_upload(request, file)
        name = file.filename or "upload"
        return await run(lambda: predictor.predict_signals([audio.decode_bytes(data, sr=sr, source=name)])[0])

    @app.post("/v1/timeline")
    async def timeline(request: Request, file: UploadFile) -> dict:
        """Emotion per speech segment: ``{"rows": [{"start", "end", "label", "scores"}], "duration_s"}``."""
        data = await read_upload(request, file)
        rows = await run(lambda: predictor.timeline(io.BytesIO(data)))
        return {"rows": rows, "duration_s": round(audio.duration(data), 3)}

    return app

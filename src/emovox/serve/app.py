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

Adaptation: ``/v1/predict`` takes an optional ``speaker`` id (form field or query
parameter; a session id works the same) and, for a model that can adapt, scores each clip
with the running statistics of every clip of that id so far
(:class:`~emovox.serve.speakers.SpeakerStats`, an LRU of ``max_speakers`` ids); requests
of different speakers still share forward passes. A model that cannot adapt ignores the id
and says ``"adapted": false``. ``/v1/timeline`` adapts to the upload itself unless told
``adapt=false``.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib.util
import io
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Annotated

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from emovox import __version__, audio, quality
from emovox.device import resolve as resolve_device
from emovox.errors import AudioError, ConfigError
from emovox.export import on_waveform
from emovox.features import ENCODED, FeatureConfig
from emovox.models import ModelSpec
from emovox.normalize import Stats
from emovox.predict import QUALITY_VAD, Predictor
from emovox.serve.batching import MicroBatcher
from emovox.serve.speakers import MAX_ID_CHARS, SpeakerStats

CHUNK = 1 << 16
WARMUP_S = 3.0  # length of the synthetic warm-up clips, in seconds
WARMUP_SR = 22050  # their rate (Hz): not the model's, so that resampling warms up too
SPEAKER_HELP = ("A speaker or session id: the clip is scored with the statistics of every clip sent with this id "
                "so far, itself included (a model that cannot adapt ignores it).")
ADAPT_HELP = "Adapt to the recording's own voices (a model that can adapt); false: each segment as one clip."
ENCODED_BATCH = 4  # default most requests per batch for encoder features (ServiceLimits.batching)
ENCODED_WAIT_MS = 10.0  # and longest wait (ms) for a batch to fill
# glibc's malloc: blocks this large (bytes) or more get an mmap of their own (default 128 kB,
# rising with use to at most 32 MB), and free memory at the top of the heap beyond this is
# given back (default 128 kB); mallopt's numbers for them, from glibc's malloc.h
MMAP_THRESHOLD, TRIM_THRESHOLD = 100_000_000, 1_000_000_000
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


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
        Threads that read upload headers and decode, and micro-batches scored side by side
        (features and forward pass; with ``max_batch=1``, requests). None: one when batching the features
        numpy computes (log-mel, MFCC, spectrogram, waveform), whose small array
        operations hold the GIL, so that a second thread only adds contention (in
        ``benchmarks/service.py`` one thread served more requests per second than two, at
        a lower p99); else up to two (the cores): encoder features (eGeMAPS, GE2E, ssl)
        and forward passes run in C code that releases the GIL.
    max_batch : int or None
        Most requests scored in one forward pass; 1 scores each request alone. None: 4 for
        encoder features (:data:`ENCODED_BATCH`), else 16.
    max_wait_ms : float or None
        Longest time, in ms, that a batch which is not full waits for more requests (a
        request that comes to an idle service goes at once, see
        :mod:`emovox.serve.batching`). None: 10 for encoder features
        (:data:`ENCODED_WAIT_MS`), else 2.
    batch_max_s : float
        Uploads longer than this many seconds skip the batches: they are decoded and
        scored on their own, in a thread of their own.
    max_speakers : int
        Most speaker ids whose statistics are kept (the least recently heard goes first).
    """

    max_upload_mb: float = 25.0
    max_duration_s: float = 600.0
    workers: int | None = None
    max_batch: int | None = None
    max_wait_ms: float | None = None
    batch_max_s: float = 10.0
    max_speakers: int = 1000

    def __post_init__(self) -> None:
        if any(n is not None and n < 1 for n in (self.workers, self.max_batch)) or self.max_speakers < 1:
            raise ConfigError(f"workers, max_batch and max_speakers must be at least 1, got {self.workers}, "
                              f"{self.max_batch} and {self.max_speakers}")
        if (self.max_wait_ms is not None and self.max_wait_ms < 0) or self.batch_max_s <= 0:
            raise ConfigError("max_wait_ms cannot be negative and batch_max_s must be positive")

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def feature_threads(self, features: FeatureConfig) -> int:
        """:attr:`workers`, or its default for ``features`` when it is None."""
        if self.workers is not None:
            return self.workers
        if features.kind not in ENCODED and self.max_batch != 1:
            return 1
        return max(1, min(2, os.cpu_count() or 1))

    def batching(self, features: FeatureConfig) -> tuple[int, float]:
        """:attr:`max_batch` and :attr:`max_wait_ms`, or their defaults for ``features``.

        An encoder front end (the bundled model's voice descriptors and d-vectors) costs
        10.8 ms of CPU for a 3 s clip alone, 8.3 per clip in a batch of 2 and 6.7 to 7.2 from
        4 to 16 (one thread, ``benchmarks/service.py --front-end``): its batches wait longer
        to fill, and stop at 4, beyond which they save nothing and keep two batches from
        running side by side (8 clients: 134 requests/s in batches of 4, 86 in batches of 8).
        """
        encoded = features.kind in ENCODED
        batch = self.max_batch if self.max_batch is not None else ENCODED_BATCH if encoded else 16
        wait = self.max_wait_ms if self.max_wait_ms is not None else ENCODED_WAIT_MS if encoded else 2.0
        return batch, wait


def serving_backend(backend: str = "auto", device: str = "auto", spec: ModelSpec | None = None) -> str:
    """The backend to serve with: ``auto`` is ``onnx`` when the model runs on the CPU and
    onnx and onnxruntime are installed, except for a model on the torch front end (``spec``,
    see :func:`emovox.export.on_waveform`), else ``torch``; ``torch`` and ``onnx`` stay.

    With one thread per call, onnxruntime runs the log-mel cnn about 4x faster than eager
    torch (about 1.0 against 4.3 ms per 3 s clip here) and gives the same probabilities
    to 1e-4. The bundled model's front end is faster in eager torch (125 against 111
    requests/s in ``benchmarks/service.py``: onnxruntime's STFT op is slow at its frame sizes).

    Examples
    --------
    >>> serving_backend("torch")
    'torch'
    """
    if backend != "auto":
        return backend
    if resolve_device(device).type != "cpu" or (spec is not None and on_waveform(spec)):
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


def keep_freed_memory() -> bool:
    """Keep freed memory in the process for the next request (glibc only; elsewhere, or when
    the environment sets ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``, nothing
    changes). True if the setting was applied.

    With glibc's defaults each large temporary of the front end (the STFTs of a batch are
    megabytes) is a fresh ``mmap`` whose pages fault in again on every call, and the freed
    top of the heap goes back to the system: with blocks under :data:`MMAP_THRESHOLD` bytes
    taken from the heap and :data:`TRIM_THRESHOLD` bytes kept, the bundled model's features
    for batches of 4 to 16 3 s clips cost 6.7-7.2 instead of 8.2-9.0 ms of CPU per clip
    (``benchmarks/service.py --front-end``). The cost: the process keeps the memory of its
    largest request until it exits.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


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
    feats = predictor.extract(signals)
    stats = Stats.of(feats) if predictor.can_adapt else None  # the two clips as one speaker
    predictor.score(feats[:1], [WARMUP_S], stats=stats)
    predictor.score([feats[i % 2] for i in range(max_batch)], [WARMUP_S] * max_batch, stats=stats)
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
    keep_freed_memory()
    sr = predictor.features.sample_rate
    threads = limits.feature_threads(predictor.features)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="emovox-decode")
    long_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emovox-long")
    speakers = SpeakerStats(limits.max_speakers)
    # the front end runs inside the batch (one call for all its clips), so batches run side by
    # side on the cores when its features release the GIL (torch, onnxruntime, openSMILE)
    max_batch, max_wait_ms = limits.batching(predictor.features)
    batcher = MicroBatcher(lambda items: score_batch(items), max_batch=max_batch, max_wait_s=max_wait_ms / 1000,
                           workers=threads)

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        async with batcher:
            loop = asyncio.get_running_loop()
            app_.state.warm = loop.run_in_executor(batcher.executor, warm_up, predictor, max_batch)
            yield
        pool.shutdown(wait=False)
        long_pool.shutdown(wait=False)

    app = FastAPI(title="emovox", version=__version__, lifespan=lifespan,
                  description="Speech emotion recognition. Upload audio (WAV, FLAC, OGG) as multipart `file`.")
    app.state.batcher = batcher
    app.state.speakers = speakers

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

    def speaker_id(form: str | None, query: str | None) -> str | None:
        """The request's speaker id (form field or query parameter; blank: none), or 400."""
        form, query = (form or "").strip(), (query or "").strip()
        if form and query and form != query:
            raise HTTPException(400, "two different speaker ids (form field and query parameter); send one")
        if len(form or query) > MAX_ID_CHARS:
            raise HTTPException(400, f"speaker id longer than {MAX_ID_CHARS} characters")
        return form or query or None

    def adapted(feat: np.ndarray, speaker: str | None) -> tuple[Stats | None, dict]:
        """Statistics to score a clip's features with, and what the answer says of them: the
        speaker's, this clip added, when a speaker id came and the model can adapt."""
        if speaker is None or not predictor.can_adapt:
            return None, {"adapted": False}
        stats, clips = speakers.add(speaker, feat)
        return stats, {"adapted": True, "speaker": speaker, "speaker_clips": clips}

    def prepared(data: bytes, name: str, speaker: str | None) -> tuple | None:
        """A short upload's batch item: its samples, speaker id and quality block (None when
        it is longer than ``batch_max_s``)."""
        y = short_signal(data, name)
        return None if y is None else decoded(y, speaker)

    def decoded(y: np.ndarray, speaker: str | None) -> tuple:
        return y, speaker, quality.assess(y, sr, vad=QUALITY_VAD)

    def score_batch(items: list[tuple]) -> list[dict]:
        """Results for a batch of decoded uploads: one front-end call for all of them, each
        clip then adapted with its speaker's statistics (this clip added), one forward pass."""
        feats = predictor.extract([y for y, _, _ in items])
        stats, infos = zip(*(adapted(f, who) for f, (_, who, _) in zip(feats, items, strict=True)), strict=True)
        results = predictor.score(feats, [len(y) / sr for y, _, _ in items], stats=list(stats))
        return [{**r, **info, "quality": q} for r, info, (_, _, q) in zip(results, infos, items, strict=True)]

    def scored(data: bytes, name: str, speaker: str | None) -> dict | None:
        """The result for a short upload, scored alone (no batching)."""
        item = prepared(data, name, speaker)
        return None if item is None else score_batch([item])[0]

    def scored_alone(data: bytes, name: str, speaker: str | None) -> dict:
        return score_batch([decoded(audio.decode_bytes(data, sr=sr, source=name), speaker)])[0]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return (resources.files("emovox.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    async def healthz():
        """200 once the model is warmed up, 503 (``"status": "warming up"``) before; with the
        forward passes that scored batches so far and the requests in them."""
        info = {"model": predictor.spec.model, "version": __version__, "max_batch": max_batch,
                "batches": batcher.batches, "batched_requests": batcher.items, "can_adapt": predictor.can_adapt,
                "speakers": len(speakers)}
        if not app.state.warm.done():
            return JSONResponse({"status": "warming up", **info}, status_code=503)
        app.state.warm.result()  # a failed warm-up is a 500 with its traceback in the log
        return {"status": "ok", **info}

    @app.get("/v1/labels")
    async def labels() -> dict:
        return {"labels": predictor.labels}

    @app.post("/v1/predict")
    async def predict(request: Request, file: UploadFile,
                      speaker: Annotated[str | None, Form(description=SPEAKER_HELP)] = None,
                      speaker_query: Annotated[str | None, Query(alias="speaker", description=SPEAKER_HELP)] = None
                      ) -> dict:
        """Emotion of the whole upload: ``{"label", "scores", "duration_s", "quality", "adapted"}``, and
        with a speaker id that a model that can adapt used, ``"speaker"`` and
        ``"speaker_clips"`` (clips in its statistics, this one included)."""
        who = speaker_id(speaker, speaker_query)
        data = await read_upload(request, file)
        name = file.filename or "upload"
        await asyncio.shield(app.state.warm)
        if max_batch == 1:  # no batching: each request decoded and scored alone
            result = await run(pool, scored, data, name, who)
        else:
            item = await run(pool, prepared, data, name, who)
            try:
                result = None if item is None else await batcher.submit(item)
            except AudioError as exc:  # e.g. a speaker-normalised model given one clip and no statistics
                raise HTTPException(400, str(exc)) from None
        if result is None:  # longer than batch_max_s: on the side, never in the way of the short ones
            result = await run(long_pool, scored_alone, data, name, who)
        return JSONResponse(result)  # a plain dict of str and float: no validation to pay for

    @app.post("/v1/timeline")
    async def timeline(request: Request, file: UploadFile,
                       adapt: Annotated[bool | None, Form(description=ADAPT_HELP)] = None,
                       adapt_query: Annotated[bool | None, Query(alias="adapt", description=ADAPT_HELP)] = None
                       ) -> dict:
        """Emotion per speech segment: ``{"rows": [{"start", "end", "label", "scores", "speaker",
        "adapted"}], "duration_s"}``; ``speaker`` names the segment's voice (S1, S2, ...)."""
        data = await read_upload(request, file)
        seconds = await run(pool, header_seconds, data, file.filename or "upload")
        await asyncio.shield(app.state.warm)
        own = partial(predictor.timeline, adapt=False not in (adapt, adapt_query))
        rows = await run(long_pool if seconds > limits.batch_max_s else pool, own, io.BytesIO(data))
        return {"rows": rows, "duration_s": round(seconds, 3)}

    return app

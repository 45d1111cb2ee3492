"""The REST service under load from a loopback client: before batching, unbatched and batched, in one run.

Usage::

    python benchmarks/service.py [--clients 8] [--requests 1000] [--seconds 3]
        [--model cnn bundled RUN_DIR ...] [--backend torch onnx] [--max-batch 1 default] [--before REV]
        [--repeat N] [--client raw|httpx]
    python benchmarks/service.py --model bundled --front-end [--batches 1 2 4 8 16]

For each model and backend it serves, one after the other: the service as it was at git
commit ``--before`` (each request decoded and scored alone; default: the last commit
before batching, run over today's library and HTTP stack), then ``emovox serve
--max-batch N`` for each ``--max-batch`` (1: no batching; ``default``: the service's own
batching, which depends on the model's features). Each server runs in a
subprocess on a free port; once ``/healthz`` says it is ready, 2 clients send 20 requests,
then ``--clients`` concurrent clients post ``--requests`` uploads of a ``--seconds`` clip to
``/v1/predict``, each waiting for its answer before it sends the next (a closed loop). A
request counts as an error unless it is answered 200 with a result.

The clients run in this process, on the same cores as the server. By default each is a
:class:`RawClient`: one keep-alive HTTP/1.1 connection sending the same multipart bytes
that httpx would (built once) and reading each answer whole, about 0.1 ms of CPU per
request; ``--client httpx`` uses ``httpx.AsyncClient``, about 2 ms per request, which on a
2-core machine is CPU taken from the server it measures.

Printed: requests per second, p50/p99 latency, errors, the mean number of requests per
forward pass, the server's and the clients' CPU time per request (steadier than
wall-clock figures on a shared machine), and requests per second relative to the first
service of the same model and backend in the same run; with the 1-minute load average
at the end of each run.

``--front-end`` prints, instead, what one micro-batch of ``--seconds`` clips costs the
service's batch thread (``Predictor.extract`` and ``Predictor.score``, one thread, CPU ms
per clip, median of 7) for each batch size in ``--batches``; run it with and without
``MALLOC_MMAP_THRESHOLD_=100000000 MALLOC_TRIM_THRESHOLD_=1000000000`` in the environment
to see glibc's defaults against what ``emovox serve`` sets (``keep_freed_memory``).

Models: ``cnn`` is the log-mel cnn (``--model cnn`` with the default log-mel features,
64 mel bands x 2 s, untrained weights: the speed is the same), built in a temporary folder;
``bundled`` is the model that ships with emovox; anything else is a run dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import soundfile as sf

BEFORE = "bb78d9c"  # the last commit whose service scored each request alone

def clip(seconds: float, sr: int = 16000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)))
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def logmel_cnn(out: Path) -> Path:
    """A run dir with the default log-mel cnn (random weights) and the default features."""
    from emovox import models
    from emovox.config import to_dict
    from emovox.features import FeatureConfig

    features = FeatureConfig()
    kwargs = {"n_features": features.n_features, "n_frames": features.clip_frames, "n_classes": 4}
    out.mkdir(parents=True, exist_ok=True)
    models.save(out / "model.pt", models.build("cnn", **kwargs),
                spec={"model": "cnn", "model_kwargs": kwargs, "labels": ["neutral", "happy", "sad", "angry"],
                      "speaker_norm": False, "feature_config": to_dict(features)})
    return out


BOUNDARY = "emovox-benchmark-boundary"


def multipart_post(host: str, port: int, path: str, name: str, data: bytes) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive POST of ``data`` as the multipart field ``file``
    (what ``curl -F file=@name`` or httpx's ``files=`` send)."""
    body = b"".join([f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                     "Content-Type: audio/wav\r\n\r\n".encode(), data, f"\r\n--{BOUNDARY}--\r\n".encode()])
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class RawClient:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads each answer
    whole (status line, headers, ``Content-Length`` bytes of body). It costs about 0.1 ms
    of CPU per request where httpx's ``AsyncClient`` costs about 2 ms, CPU that on a small
    machine the server would otherwise lose to its own benchmark."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Status and body of the answer to ``request``; (0, b"") if the connection failed."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            await self.close()
            return 0, b""
        if headers.get("connection") == "close":
            await self.close()
        return int(lines[0].split()[1]), body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def ok(status: int, body: bytes) -> bool:
    """A 200 with a JSON result in it."""
    return status == 200 and "label" in json.loads(body)


async def load(url: str, data: bytes, clients: int, total: int, long: bytes | None = None,
               client: str = "raw") -> dict:
    """``total`` posts of ``data`` from ``clients`` concurrent clients: their latencies (s),
    errors, wall time (s) and the CPU time (s) this process (the clients) spent; ``long``, if
    given, is posted once more at the start beside them (``long_s``: its latency; its error
    counts too). ``client``: ``raw`` (:class:`RawClient`) or ``httpx``."""
    latencies: list[float] = []
    out = {"errors": 0, "long_s": None}
    left = total
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port

    def poster(name: str, payload: bytes, timeout: float) -> Callable[[], Awaitable[bool]]:
        """A function that posts ``payload`` once more on a connection of its own: True if it
        was answered with a result. ``timeout`` (s) bounds httpx's waits; the raw client
        waits as long as the server takes."""
        if client == "httpx":
            http = httpx.AsyncClient(timeout=timeout)
            stack.push_async_callback(http.aclose)

            async def once() -> bool:
                r = await http.post(url, files={"file": (name, payload, "audio/wav")})
                return ok(r.status_code, r.content)
            return once
        raw = RawClient(host, port)
        stack.push_async_callback(raw.close)
        request = multipart_post(host, port, parts.path, name, payload)

        async def once() -> bool:
            return ok(*await raw.send(request))
        return once

    async def short_client() -> None:
        nonlocal left
        once = poster("clip.wav", data, 60)
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            good = await once()
            latencies.append(time.perf_counter() - t0)
            out["errors"] += not good

    async def long_client() -> None:
        once = poster("long.wav", long, 600)
        t0 = time.perf_counter()
        good = await once()
        out["long_s"] = time.perf_counter() - t0
        out["errors"] += not good

    async with contextlib.AsyncExitStack() as stack:
        cpu0, t0 = time.process_time(), time.perf_counter()
        long_task = asyncio.ensure_future(long_client()) if long else None
        await asyncio.gather(*(short_client() for _ in range(clients)))
        out["wall"] = time.perf_counter() - t0
        if long_task:
            await long_task
        out["client_cpu"] = time.process_time() - cpu0
    return {"latencies": latencies, **out}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def before_runner(rev: str, folder: Path) -> str:
    """Source of a script that serves the app of commit ``rev`` (as it was then) over today's emovox."""
    app = subprocess.run(["git", "show", f"{rev}:src/emovox/serve/app.py"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    if app.returncode:
        sys.exit(f"cannot read the service of {rev} from git ({app.stderr.strip()}); pass --before ''")
    # the one call of the old app that today's library no longer answers: the spec was a dict then
    (folder / "before_app.py").write_text(app.stdout.replace('predictor.spec.get("model")', "predictor.spec.model"))
    return (f"import sys, uvicorn; sys.path.insert(0, {str(folder)!r}); import before_app\n"
            "from emovox.predict import Predictor\n"
            "port, backend, model = int(sys.argv[1]), sys.argv[2], sys.argv[3] or None\n"
            "app = before_app.create_app(Predictor.load(model, backend=backend))\n"
            "uvicorn.run(app, host='127.0.0.1', port=port, log_level='info')\n")


class Server:
    """``cmd`` (``{port}`` in it becomes a free port) in a subprocess, until :meth:`stop`."""

    def __init__(self, setting: str, cmd: list[str]):
        self.setting, self.port = setting, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self.log)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                sys.exit(f"{' '.join(self.cmd)} exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(self.base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("the service did not become healthy in 300 s")
            time.sleep(0.1)
    def warm_up(self, data: bytes, client: str) -> None:
        """2 clients send 20 requests: the first connections and calls on both sides."""
        asyncio.run(load(self.base + "/v1/predict", data, 2, 20, client=client))

    def measure(self, data: bytes, long: bytes | None, args: argparse.Namespace) -> dict:
        """One load run: requests/s, p50/p99 (ms), errors, server and client CPU ms per request,
        batches, and the 1-minute load average at its end."""
        health0, cpu0 = httpx.get(self.base + "/healthz").json(), cpu_seconds(self.proc.pid)
        run = asyncio.run(load(self.base + "/v1/predict", data, args.clients, args.requests, long, args.client))
        cpu = cpu_seconds(self.proc.pid) - cpu0
        health = httpx.get(self.base + "/healthz").json()
        lat_ms = np.array(run["latencies"]) * 1000
        return {"rps": len(lat_ms) / run["wall"], "p50": np.percentile(lat_ms, 50), "p99": np.percentile(lat_ms, 99),
                "errors": run["errors"], "cpu_ms": 1000 * cpu / len(lat_ms),
                "client_ms": 1000 * run["client_cpu"] / len(lat_ms), "load": os.getloadavg()[0],
                "long_s": run["long_s"],
                "batches": health.get("batches", 0) - health0.get("batches", 0),
                "batched": health.get("batched_requests", 0) - health0.get("batched_requests", 0),
                "counts_batches": "batches" in health}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def summary(runs: list[dict]) -> dict:
    """Medians over repeats (errors and batches: totals)."""
    med = {k: float(np.median([r[k] for r in runs])) for k in ("rps", "p50", "p99", "cpu_ms", "client_ms")}
    batches, batched = sum(r["batches"] for r in runs), sum(r["batched"] for r in runs)
    mean_batch = f"{batched / batches:.1f}" if batches else "1" if runs[0]["counts_batches"] else "-"
    return {**med, "errors": sum(r["errors"] for r in runs), "mean_batch": mean_batch,
            "long_s": [r["long_s"] for r in runs if r["long_s"] is not None]}


def front_end(model: str | None, seconds: float, batches: list[int]) -> None:
    """CPU ms per clip of the batch thread's work (features and forward pass) by batch size."""
    import torch

    from emovox import audio
    from emovox.predict import Predictor

    torch.set_num_threads(1)
    predictor = Predictor.load(model, backend="torch")
    y = audio.decode_bytes(clip(seconds), sr=predictor.features.sample_rate)
    print(f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', '(unset)')}, "
          f"MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_', '(unset)')}\n")
    print(f"| batch of {seconds:g} s clips | features (CPU ms per clip) | forward pass (CPU ms per clip) |")
    print("|---|---|---|")
    for b in batches:
        signals, calls = [y] * b, max(1, 16 // b)
        feats = predictor.extract(signals)
        predictor.score(feats, [seconds] * b, stats=[None] * b)
        times = {"extract": [], "score": []}
        for _ in range(7):
            t0 = time.thread_time()
            for _ in range(calls):
                predictor.extract(signals)
            t1 = time.thread_time()
            for _ in range(calls):
                predictor.score(feats, [seconds] * b, stats=[None] * b)
            times["extract"].append((t1 - t0) / calls / b)
            times["score"].append((time.thread_time() - t1) / calls / b)
        print(f"| {b} | {1000 * np.median(times['extract']):.2f} | {1000 * np.median(times['score']):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["cnn", "bundled"], help="cnn, bundled or run dirs")
    ap.add_argument("--backend", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    ap.add_argument("--max-batch", nargs="+", default=["1", "default"],
                    help="1 = each request scored alone; default = the service's default for the model")
    ap.add_argument("--max-wait-ms", type=float, default=None, help="passed to `emovox serve` (default: its own)")
    ap.add_argument("--before", default=BEFORE, help="also serve the app of this git commit ('' = don't)")
    ap.add_argument("--device", default=None, help="passed to `emovox serve --device`")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=1, help="load runs per service, taken in turns; medians shown")
    ap.add_argument("--long-minutes", type=float, default=0.0,
                    help="also post one upload this long at the start of each run, beside the short ones")
    ap.add_argument("--client", default="raw", choices=["raw", "httpx"],
                    help="raw: prepared HTTP/1.1 requests on keep-alive sockets (about 0.1 ms CPU per request); "
                         "httpx: httpx.AsyncClient (about 2 ms)")
    ap.add_argument("--front-end", action="store_true",
                    help="time the batch thread's work in this process by batch size instead (first --model)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    args = ap.parse_args()
    if args.front_end:
        name = args.model[0]
        with tempfile.TemporaryDirectory() as tmp:
            model = str(logmel_cnn(Path(tmp) / "cnn")) if name == "cnn" else None if name == "bundled" else name
            return front_end(model, args.seconds, args.batches)
    data = clip(args.seconds)
    long = clip(60 * args.long_minutes) if args.long_minutes else None
    rows, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        runner = before_runner(args.before, Path(tmp)) if args.before else None
        for name in args.model:
            model = str(logmel_cnn(Path(tmp) / "cnn")) if name == "cnn" else None if name == "bundled" else name
            for backend in args.backend:
                setups = [(f"before ({args.before})", [sys.executable, "-c", runner, "{port}", backend, model or ""])]
                setups = setups if runner else []
                for n in args.max_batch:
                    cmd = [sys.executable, "-m", "emovox", "serve", "--port", "{port}", "--backend", backend]
                    cmd += [] if n == "default" else ["--max-batch", n]
                    cmd += [] if args.max_wait_ms is None else ["--max-wait-ms", f"{args.max_wait_ms:g}"]
                    cmd += ["--model", model] if model else []
                    cmd += ["--device", args.device] if args.device else []
                    setups.append(("default batching" if n == "default" else f"max batch {n}", cmd))
                servers = [Server(setting, cmd) for setting, cmd in setups]  # idle ones cost nothing
                try:
                    for server in servers:
                        server.wait_healthy()
                        server.warm_up(data, args.client)
                    runs: dict[str, list[dict]] = {server.setting: [] for server in servers}
                    for _ in range(args.repeat):
                        for server in servers:
                            r = server.measure(data, long, args)
                            runs[server.setting].append(r)
                            print(f"{name} {backend} {server.setting}: {r['rps']:.1f} req/s, p50 {r['p50']:.0f} ms, "
                                  f"p99 {r['p99']:.0f} ms, {r['errors']} errors, load average {r['load']:.2f}"
                                  + (f"; the long upload took {r['long_s']:.1f} s" if long else ""), file=sys.stderr)
                finally:
                    for server in servers:
                        server.stop()
                rows += [{"model": name, "backend": backend, "service": k, **summary(v)} for k, v in runs.items()]
                loads += [r["load"] for v in runs.values() for r in v]
    print(f"\n{args.requests} requests of a {args.seconds:g} s WAV, {args.clients} concurrent clients ({args.client}), "
          f"loopback; batches wait at most {'the default' if args.max_wait_ms is None else f'{args.max_wait_ms:g} ms'};"
          f" 1-minute load average {min(loads):.2f} to "
          f"{max(loads):.2f} at the ends of the runs"
          + (f"; one {args.long_minutes:g}-minute upload at the start beside them" if long else "")
          + (f"; median of {args.repeat} runs per service, taken in turns" if args.repeat > 1 else "") + "\n")
    print("| model | backend | service | requests/s | p50 (ms) | p99 (ms) | errors | mean batch "
          "| server CPU ms/request | client CPU ms/request | requests/s vs first row |"
          + (" long upload (s) |" if long else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if long else ""))
    for r in rows:
        ref = next(x for x in rows if x["model"] == r["model"] and x["backend"] == r["backend"])
        print(f"| {r['model']} | {r['backend']} | {r['service']} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p99']:.0f}"
              f" | {r['errors']} | {r['mean_batch']} | {r['cpu_ms']:.1f} | {r['client_ms']:.2f}"
              f" | {r['rps'] / ref['rps']:.2f}x |"
              + (f" {np.median(r['long_s']):.1f} |" if long else ""))


if __name__ == "__main__":
    main()

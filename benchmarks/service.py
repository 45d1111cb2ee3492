"""The REST service under load from a loopback client.

Usage::

    python benchmarks/service.py [--model RUN_DIR] [--clients 8] [--requests 1000] [--seconds 3]

Starts ``emovox serve`` in a subprocess on a free port, then ``--clients`` concurrent
clients post ``--requests`` uploads of a ``--seconds`` clip to ``/v1/predict`` and the
script prints requests per second, p50/p99 latency and the error count.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import soundfile as sf


def clip(seconds: float, sr: int = 16000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)))
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


async def load(url: str, data: bytes, clients: int, total: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=60) as http:
            while not queue.empty():
                queue.get_nowait()
                t0 = time.perf_counter()
                r = await http.post(url, files={"file": ("clip.wav", data, "audio/wav")})
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "emovox", "serve", "--port", str(port)]
    cmd += ["--model", args.model] if args.model else []
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        data = clip(args.seconds)
        asyncio.run(load(base + "/v1/predict", data, 2, 20))  # warm up
        t0 = time.perf_counter()
        lat, errors = asyncio.run(load(base + "/v1/predict", data, args.clients, args.requests))
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    lat_ms = np.array(lat) * 1000
    print(f"\n{args.requests} requests of a {args.seconds:g} s WAV, {args.clients} concurrent clients, loopback\n")
    print("| requests/s | p50 (ms) | p99 (ms) | errors |\n|---|---|---|---|")
    print(f"| {len(lat) / wall:.1f} | {np.percentile(lat_ms, 50):.0f} | {np.percentile(lat_ms, 99):.0f} | {errors} |")


if __name__ == "__main__":
    main()

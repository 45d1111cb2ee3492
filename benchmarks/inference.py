"""Inference speed on CPU: real-time factor of ``timeline`` on a one-hour recording, per backend.

Usage::

    python benchmarks/inference.py [--model RUN_DIR] [--minutes 60] [--data ../shared/data/emodb]

First the time to score one 3 s clip with one thread (wall and CPU, median of 20). Then
builds a long recording (corpus utterances separated by 0.5-2 s pauses, written to a temp
FLAC, never to the repository), then times ``Predictor.timeline`` with the PyTorch and
the onnxruntime backend in the same process, and reports audio seconds per wall second
(real-time factor), the CPU time it took (all threads; audio seconds per CPU second is
steadier than wall time on a shared machine, and twice it is the most 2 idle cores could
give) and the process's peak memory after a file a sixth as long and after
the long one (equal peaks: memory does not grow with the length). ``--model`` defaults to the bundled model.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import tempfile
import time

import numpy as np
import soundfile as sf

from emovox import audio
from emovox.predict import Predictor


def make_recording(path: str, files: list[str], minutes: float, sr: int = 16000) -> float:
    rng = np.random.default_rng(0)
    total = 0
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="FLAC") as out:
        while total < minutes * 60 * sr:
            for f in files:
                y = audio.load(f, sr=sr)
                gap = np.zeros(int(rng.uniform(0.5, 2.0) * sr), np.float32)
                out.write(np.concatenate([y, gap]))
                total += len(y) + len(gap)
                if total >= minutes * 60 * sr:
                    break
    return total / sr


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clip_latency(model: str | None, clip: np.ndarray, sr: int, repeats: int = 20) -> None:
    """Milliseconds (wall and CPU) to score one clip with one thread (torch's and the BLAS
    pools alike), median of ``repeats``."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    limits = threadpool_limits(1)
    print(f"\n| backend | one {len(clip) / sr:.0f} s clip, 1 thread: wall (ms) | CPU (ms) |\n|---|---|---|")
    for backend in ("torch", "onnx"):
        p = Predictor.load(model, backend=backend, device="cpu")
        p.predict((clip, sr))  # warm up
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            p.predict((clip, sr))
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(f"| {backend} | {1000 * np.median(wall):.0f} | {1000 * np.median(cpu):.0f} |", flush=True)
    limits.restore_original_limits()
    torch.set_num_threads(os.cpu_count() or 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--data", default="../shared/data/emodb")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "**", "*.flac"), recursive=True))
    speech = np.concatenate([audio.load(f, sr=16000) for f in files[:3]])
    clip_latency(args.model, speech[: 3 * 16000], 16000)
    with tempfile.TemporaryDirectory() as tmp:
        path, short = os.path.join(tmp, "long.flac"), os.path.join(tmp, "short.flac")
        seconds = make_recording(path, files, args.minutes)
        short_seconds = make_recording(short, files, args.minutes / 6)
        print(f"\nrecording: {seconds / 60:.1f} min, {os.path.getsize(path) / 1e6:.0f} MB FLAC; "
              f"{os.cpu_count()} cores; model {args.model or 'bundled'}\n")
        print("| backend | segments | wall (s) | x real time | CPU (s) | audio s per CPU s | peak RSS after a "
              f"{short_seconds / 60:.0f}-min file (MB) | peak RSS after the {seconds / 60:.0f}-min file (MB) |")
        print("|---|---|---|---|---|---|---|---|")
        for backend in ("torch", "onnx"):
            p = Predictor.load(args.model, backend=backend, device="cpu")  # a CPU benchmark, GPU or not
            p.timeline(short)  # warm up; memory after a file a sixth as long
            rss_short = peak_rss_mb()
            t0, c0 = time.perf_counter(), time.process_time()
            rows = p.timeline(path)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"| {backend} | {len(rows)} | {wall:.1f} | {seconds / wall:.0f} | {cpu:.1f} | {seconds / cpu:.0f} | "
                  f"{rss_short:.0f} | {peak_rss_mb():.0f} |", flush=True)


if __name__ == "__main__":
    main()

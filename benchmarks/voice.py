"""Speed of the torch voice descriptors (emovox.voice) beside openSMILE eGeMAPSv02, one thread.

Usage::

    python benchmarks/voice.py [--data ../shared/data] [--clips 32] [--repeats 5]

Real 3 s clips (EMO-DB and RAVDESS files, cut or zero-padded to 3.0 s) go through
:class:`emovox.voice.VoiceFeatures` one at a time and in batches of 16, and through
openSMILE's eGeMAPSv02 functionals one at a time, in the same process with
``torch.set_num_threads(1)``. Each figure is the median over ``--repeats`` passes over
the clips (wall clock per pass, divided by the clips or audio seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from emovox import audio
from emovox.utterance import egemaps
from emovox.voice import SAMPLE_RATE, VoiceFeatures

SECONDS = 3.0
BATCH = 16


def clips(data: Path, n: int) -> np.ndarray:
    """``n`` real clips as a ``(n, 3 s)`` float32 array (cut, or zero-padded at the end)."""
    paths = sorted((data / "emodb").rglob("*.flac"))[: n // 2]
    paths += sorted((data / "ravdess").rglob("*.flac"))[: n - len(paths)]
    if len(paths) < n:
        raise SystemExit(f"need {n} clips under {data}/emodb and {data}/ravdess, found {len(paths)}")
    out = np.zeros((n, int(SECONDS * SAMPLE_RATE)), np.float32)
    for row, path in zip(out, paths, strict=True):
        y = audio.load(path, sr=SAMPLE_RATE)[: len(row)]
        row[: len(y)] = y
    return out


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--clips", type=int, default=32, help="a multiple of 16")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    waves = torch.from_numpy(clips(Path(args.data), args.clips))
    lengths = torch.full((len(waves),), waves.shape[1])
    module = VoiceFeatures().eval()

    def one_by_one() -> None:
        for i in range(len(waves)):
            module(waves[i : i + 1], lengths[i : i + 1])

    def batched() -> None:
        for i in range(0, len(waves), BATCH):
            module(waves[i : i + BATCH], lengths[i : i + BATCH])

    with torch.inference_mode():
        single = timed(one_by_one, args.repeats) / len(waves)
        batch = timed(batched, args.repeats) / len(waves)
    signals = list(waves.numpy())
    smile = timed(lambda: [egemaps([y]) for y in signals], max(1, args.repeats // 2)) / len(waves)
    print(f"\n{args.clips} clips of {SECONDS:.0f} s, one thread (torch {torch.__version__})\n")
    print("| front end | batch | ms per clip | ms per audio second | x openSMILE |")
    print("|---|---|---|---|---|")
    for name, b, sec in (("emovox.voice (torch)", 1, single), ("emovox.voice (torch)", BATCH, batch),
                         ("openSMILE eGeMAPSv02", 1, smile)):
        print(f"| {name} | {b} | {1e3 * sec:.2f} | {1e3 * sec / SECONDS:.2f} | {smile / sec:.1f} |")


if __name__ == "__main__":
    main()

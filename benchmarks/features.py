"""Feature extraction: emovox vs librosa on the same corpus audio, in one run.

Usage::

    python benchmarks/features.py [--data ../shared/data/ravdess] [--limit 0]

Both sides decode the files (soundfile) and compute a 64-band log-mel spectrogram and
40 MFCCs from it (n_fft 512, hop 256, 16 kHz). librosa is used the efficient way
(``melspectrogram`` once, ``power_to_db``, then ``mfcc(S=...)``), one file at a time,
in one process, as a typical user runs it. emovox batches 16 files per STFT and runs on
1 and on 2 worker processes. librosa is warmed up first (numba compilation is not timed).
Prints the largest difference from librosa and the throughput ratio.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from concurrent.futures import ProcessPoolExecutor

import librosa
import numpy as np
import soundfile as sf

from emovox.features import FeatureConfig, logmel_batch, mfcc_from_logmel
from emovox.parallel import set_threads

CFG = FeatureConfig(kind="logmel", n_fft=512, hop_length=256, n_mels=64, n_mfcc=40, trim_db=None)
BATCH = 16


def librosa_one(path: str | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, sr = sf.read(path, dtype="float32") if isinstance(path, str) else (path, 16000)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=CFG.n_fft, hop_length=CFG.hop_length, n_mels=CFG.n_mels)
    logmel = librosa.power_to_db(mel, top_db=CFG.top_db)
    return logmel, librosa.feature.mfcc(S=logmel, n_mfcc=CFG.n_mfcc)


def emovox_batch(paths: list) -> list[tuple[np.ndarray, np.ndarray]]:
    signals = [sf.read(p, dtype="float32")[0] if isinstance(p, str) else p for p in paths]
    return [(lm, mfcc_from_logmel(lm, CFG)) for lm in logmel_batch(signals, CFG)]


def _init() -> None:
    set_threads(1)


def run_emovox(paths: list, jobs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    chunks = [paths[i : i + BATCH] for i in range(0, len(paths), BATCH)]
    if jobs == 1:
        return [r for c in chunks for r in emovox_batch(c)]
    with ProcessPoolExecutor(jobs, initializer=_init) as pool:
        pool.submit(_init).result()  # start the workers before timing
        t0 = time.perf_counter()
        out = [r for rs in pool.map(emovox_batch, chunks) for r in rs]
        run_emovox.last_wall = time.perf_counter() - t0
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/ravdess")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N files (0: all)")
    args = ap.parse_args()
    set_threads(1)
    paths = sorted(glob.glob(os.path.join(args.data, "**", "*.flac"), recursive=True) +
                   glob.glob(os.path.join(args.data, "**", "*.wav"), recursive=True))
    if args.limit:
        paths = paths[: args.limit]
    # sort by duration so batches pad little (what emovox.cache.extract_files does)
    paths.sort(key=lambda p: sf.info(p).frames)
    seconds = sum(sf.info(p).duration for p in paths)
    librosa_one(paths[0])  # warm numba

    signals = [sf.read(p, dtype="float32")[0] for p in paths]
    table = []
    for label, inputs in (("decode + features", paths), ("features only (decoded audio)", signals)):
        t0 = time.perf_counter()
        ref = [librosa_one(p) for p in inputs]
        t_lib = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours1 = run_emovox(inputs, 1)
        t_1 = time.perf_counter() - t0
        ours2 = run_emovox(inputs, 2)
        t_2 = run_emovox.last_wall
        table += [(label, "librosa 0.11 (per file)", 1, t_lib, t_lib), (label, "emovox (batched)", 1, t_1, t_lib),
                  (label, "emovox (batched)", 2, t_2, t_lib)]

    d_mel = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(ref, ours2, strict=True))
    d_mfcc = max(float(np.abs(a[1] - b[1]).max()) for a, b in zip(ref, ours2, strict=True))
    same = all(np.array_equal(a[0], b[0]) for a, b in zip(ours1, ours2, strict=True))
    print(f"\n{len(paths)} files, {seconds / 60:.1f} min of audio, {os.cpu_count()} cores")
    print(f"max |emovox - librosa|: log-mel {d_mel:.2e} dB, MFCC {d_mfcc:.2e}; 1 vs 2 processes identical: {same}\n")
    print("| work | extractor | processes | wall (s) | files/s | x real time | vs librosa |")
    print("|---|---|---|---|---|---|---|")
    for label, name, procs, t, ref_t in table:
        print(f"| {label} | {name} | {procs} | {t:.2f} | {len(paths) / t:.0f} | {seconds / t:.0f} | {ref_t / t:.2f}x |")


if __name__ == "__main__":
    main()

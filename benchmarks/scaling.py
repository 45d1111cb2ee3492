"""Scaling on one machine: training samples/s with 1 and 2 ranks, and CV wall time with --jobs 1 and 2.

Usage::

    python benchmarks/scaling.py [--data ../shared/data/ravdess] [--cv-epochs 3] [--skip-cv]

1. Training throughput: the default ``cnn`` on random 64 x 126 inputs (the cost does not
   depend on the values), 3 epochs of 1,200 utterances, in one process and in 2 ranks
   (torch.distributed, gloo, one thread each).
2. RAVDESS 6-fold CV of the default model with ``--jobs 1`` (2 threads) and ``--jobs 2``
   (1 thread each), each run with ``--cv-epochs`` epochs (a short run, so that both fit in
   one session; the full-length wall time is extrapolated from it and marked as such).
3. Feature-cache size per hour of audio for the default log-mel config.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

N_UTT, EPOCHS, SHAPE = 1200, 3, (64, 126)


def _throughput(out: str) -> None:
    from emovox import distributed
    from emovox.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    feats = [rng.normal(-40, 15, SHAPE).astype(np.float32) for _ in range(N_UTT)]
    y = rng.integers(0, 8, N_UTT)
    idx = np.arange(N_UTT)
    cfg = TrainConfig(model="cnn", epochs=EPOCHS, patience=EPOCHS)
    t0 = time.perf_counter()
    fit(feats, y, idx[:1000], idx[1000:], n_classes=8, n_frames=SHAPE[1], cfg=cfg, progress=False)
    wall = time.perf_counter() - t0
    if distributed.is_main():
        Path(out).write_text(json.dumps({"wall": wall, "samples_per_s": 1000 * EPOCHS / wall,
                                         "ranks": distributed.world()}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/ravdess")
    ap.add_argument("--cv-epochs", type=int, default=3)
    ap.add_argument("--skip-cv", action="store_true")
    args = ap.parse_args()
    from emovox import distributed
    from emovox.parallel import set_threads

    with tempfile.TemporaryDirectory() as tmp:
        set_threads(os.cpu_count() or 1)
        _throughput(f"{tmp}/one.json")
        distributed.spawn(_throughput, 2, f"{tmp}/two.json")
        one, two = (json.loads(Path(f"{tmp}/{n}.json").read_text()) for n in ("one", "two"))
    print(f"\n## Training throughput (cnn, {SHAPE[0]}x{SHAPE[1]} inputs, {os.cpu_count()} cores)\n")
    print("| ranks | threads per rank | samples/s | speed-up |\n|---|---|---|---|")
    print(f"| 1 | {os.cpu_count()} | {one['samples_per_s']:.0f} | 1.00x |")
    print(f"| 2 | 1 | {two['samples_per_s']:.0f} | {two['samples_per_s'] / one['samples_per_s']:.2f}x |", flush=True)

    if not args.skip_cv:
        from emovox import experiment
        from emovox.settings import Settings
        from emovox.train import TrainConfig

        settings = Settings(train=TrainConfig(epochs=args.cv_epochs, patience=args.cv_epochs))
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for jobs in (1, 2):
                t0 = time.perf_counter()
                experiment.evaluate(args.data, Path(tmp) / f"jobs{jobs}", settings, corpus="ravdess", folds=6,
                                    jobs=jobs, progress=False)
                rows.append((jobs, time.perf_counter() - t0))
        print(f"\n## RAVDESS 6-fold CV, default model, {args.cv_epochs} epochs per fold\n")
        print("| --jobs | wall (s) | speed-up | 60-epoch estimate (min, extrapolated) |\n|---|---|---|---|")
        for jobs, wall in rows:
            print(f"| {jobs} | {wall:.0f} | {rows[0][1] / wall:.2f}x | {wall * 60 / args.cv_epochs / 60:.0f} |")

    import soundfile as sf

    from emovox.cache import FeatureCache, content_hash
    from emovox.dataset import DEFAULT_CACHE
    from emovox.features import FeatureConfig

    store = FeatureCache(DEFAULT_CACHE, FeatureConfig())
    entries = [store.path(content_hash(f)) for f in Path(args.data).rglob("*.flac")]
    present = [e for e in entries if e.exists()]
    if present:
        hours = sum(sf.info(str(f)).duration for f in Path(args.data).rglob("*.flac")) / 3600
        size = sum(e.stat().st_size for e in present) * len(entries) / len(present)
        print(f"\n## Cache\n\n{len(present)} of {len(entries)} files cached for the default log-mel config: "
              f"{size / 1e6:.0f} MB for {hours:.2f} h of audio = {size / 1e6 / hours:.0f} MB per hour "
              "(features of the trimmed audio)")


if __name__ == "__main__":
    main()

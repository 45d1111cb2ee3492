"""Speaker-independent accuracy on the real corpora: each model beside eGeMAPS + SVM.

Usage::

    python benchmarks/accuracy.py [--data ../shared/data] [--out runs/bench] [--models cnn_small,cnn,...]

Runs ``emovox evaluate`` (through the Python API) for RAVDESS (8 classes, 6 folds
grouped by actor) and EMO-DB (7 classes, leave-one-speaker-out), then prints one table.
Finished folds are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from emovox import experiment
from emovox.experiment import Settings
from emovox.train import TrainConfig

SETUPS = {"ravdess": "6", "emodb": "loso"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--models", default="cnn_small,cnn,crnn,bilstm")
    ap.add_argument("--corpora", default="ravdess,emodb")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for corpus in args.corpora.split(","):
        for i, name in enumerate(args.models.split(",")):
            t0 = time.perf_counter()
            m = experiment.evaluate(Path(args.data) / corpus, Path(args.out) / f"{corpus}-{name}",
                                    Settings(train=TrainConfig(model=name)), corpus=corpus,
                                    folds=SETUPS[corpus], with_baseline=i == 0, jobs=args.jobs)
            rows.append((corpus, m["name"], m, time.perf_counter() - t0))
            if "baseline" in m:
                rows.append((corpus, m["baseline"]["name"], m["baseline"], None))
    print(f"\n| corpus | system | folds | UA | WA | macro-F1 | UA mean ± std over folds | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for corpus, name, m, wall in rows:
        print(f"| {corpus} | {name} | {SETUPS[corpus]} | {m['ua']:.3f} | {m['wa']:.3f} | {m['macro_f1']:.3f} | "
              f"{m['mean']['ua']:.3f} ± {m['std']['ua']:.3f} | {'' if wall is None else f'{wall:.0f}'} |")


if __name__ == "__main__":
    main()

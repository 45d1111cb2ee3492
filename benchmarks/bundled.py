"""Figures for the bundled model's card: leave-one-corpus-out, speaker-grouped CV per corpus,
calibration, artefact size and load time.

Usage::

    python benchmarks/bundled.py [--config configs/bundled.yaml] [--out runs/bench] [--model src/emovox/bundled_model]

1. Leave-one-corpus-out with the bundled recipe and classes: train on three of the four
   corpora, test on every file of the fourth (what a user with new audio should expect),
   beside eGeMAPS + SVM on the same splits.
2. The recipe's pooled 4-fold CV grouped by speaker (108 speakers), scored per corpus.
3. The same protocol as the previous bundled model's card (RAVDESS + EMO-DB pooled, its six
   classes with RAVDESS calm counted as neutral, 4 folds grouped by speaker), so the two
   can be compared like for like.
4. The shipped artefact: size, SHA-256, time to load (median of 5).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from emovox import experiment
from emovox.bundled import sha256
from emovox.predict import Predictor
from emovox.settings import Settings

PREVIOUS_CLASSES = ("neutral", "happy", "sad", "angry", "fearful", "disgust")


def per_corpus_table(m: dict) -> None:
    print("| test corpus | n | UA | WA | macro-F1 |\n|---|---|---|---|---|")
    for corpus, c in m["per_corpus"].items():
        print(f"| {corpus} | {c['n']} | {c['ua']:.3f} | {c['wa']:.3f} | {c['macro_f1']:.3f} |")
    print(f"| all | {sum(f['n'] for f in m['folds'])} | {m['ua']:.3f} | {m['wa']:.3f} | {m['macro_f1']:.3f} |")
    c = m["calibration"]
    print(f"\nECE (15 bins, mean over folds): {c['ece_before']:.3f} before, {c['ece_after']:.3f} after "
          f"temperature scaling; labels {m['labels']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/bundled.yaml")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--model", default="src/emovox/bundled_model")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    settings = Settings.build(args.config)

    loco = experiment.evaluate(None, out / "bundled-loco", settings, folds="loco", with_baseline=True,
                               jobs=args.jobs, threads=1)
    print("\n## Leave one corpus out (bundled recipe and classes)\n")
    print("| held-out corpus | n | UA | WA | macro-F1 | eGeMAPS + SVM UA |\n|---|---|---|---|---|---|")
    for f, b in zip(loco["folds"], loco["baseline"]["folds"], strict=True):
        print(f"| {f['test_corpus']} | {f['n']} | {f['ua']:.3f} | {f['wa']:.3f} | {f['macro_f1']:.3f} | "
              f"{b['ua']:.3f} |")
    print(f"| mean | | {loco['mean']['ua']:.3f} | {loco['mean']['wa']:.3f} | {loco['mean']['macro_f1']:.3f} | "
          f"{loco['baseline']['mean']['ua']:.3f} |")
    for f in loco["folds"]:
        print(f"confusion {f['test_corpus']} held out (rows true, cols predicted, {loco['labels']}): "
              f"{f['confusion_matrix']}")

    print("\n## Pooled 4-fold CV grouped by speaker, scored per corpus\n")
    per_corpus_table(experiment.evaluate(None, out / "bundled-cv", settings, folds=4, jobs=args.jobs, threads=1))

    print("\n## The previous card's protocol: RAVDESS + EMO-DB pooled, six classes, 4 folds by speaker\n")
    sources = dict(settings.sources)
    previous = dataclasses.replace(settings, classes=PREVIOUS_CLASSES, merge={"calm": "neutral"},
                                   sources=tuple((c, sources[c]) for c in ("ravdess", "emodb")))
    per_corpus_table(experiment.evaluate(None, out / "previous-protocol", previous, folds=4, jobs=args.jobs,
                                         threads=1))

    model = Path(args.model) / "model.pt"
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        Predictor.load(args.model)
        times.append(time.perf_counter() - t0)
    print(f"\n## Artefact\n\n{model}: {model.stat().st_size / 1e6:.2f} MB, sha256 {sha256(model)}, "
          f"load {1000 * statistics.median(times):.0f} ms (median of 5)")


if __name__ == "__main__":
    main()

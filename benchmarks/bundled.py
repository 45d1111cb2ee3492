"""Figures for the bundled model's card: pooled speaker-independent CV per corpus, cross-corpus
transfer, calibration, artefact size and load time.

Usage::

    python benchmarks/bundled.py [--config configs/bundled.yaml] [--out runs/bench] [--model src/emovox/bundled_model]

1. Cross-validation of the bundled recipe on RAVDESS + EMO-DB pooled, 4 folds grouped by
   speaker (34 speakers), scored per corpus.
2. Cross-corpus: the same recipe trained on one corpus, tested on all of the other.
3. The shipped artefact: size, SHA-256, time to load (median of 5).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from emovox import experiment
from emovox.bundled import sha256
from emovox.dataset import load_dataset, model_inputs
from emovox.evaluate import scores
from emovox.predict import Predictor, score_features
from emovox.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/bundled.yaml")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--model", default="src/emovox/bundled_model")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    settings = Settings.build(args.config)

    cv = experiment.evaluate(None, out / "bundled-cv", settings, folds=4, jobs=args.jobs, threads=1)
    print("\n## Pooled 4-fold CV grouped by speaker, scored per corpus\n")
    print("| test corpus | n | UA | WA | macro-F1 |\n|---|---|---|---|---|")
    for corpus, m in cv["per_corpus"].items():
        print(f"| {corpus} | {m['n']} | {m['ua']:.3f} | {m['wa']:.3f} | {m['macro_f1']:.3f} |")
    print(f"| both | {sum(f['n'] for f in cv['folds'])} | {cv['ua']:.3f} | {cv['wa']:.3f} | "
          f"{cv['macro_f1']:.3f} |")
    c = cv["calibration"]
    print(f"\nECE (15 bins, mean over folds): {c['ece_before']:.3f} before, {c['ece_after']:.3f} after "
          "temperature scaling")
    print(f"labels: {cv['labels']}")
    for corpus, m in cv["per_corpus"].items():
        print(f"confusion {corpus} (rows true, cols predicted): {m['confusion_matrix']}")

    print("\n## Cross-corpus (train on one corpus, test on every file of the other)\n")
    print("| train | test | n | UA | WA | macro-F1 |\n|---|---|---|---|---|---|")
    sources = dict(settings.sources)
    for train_on, test_on in (("ravdess", "emodb"), ("emodb", "ravdess")):
        one = dataclasses.replace(settings, sources=((train_on, sources[train_on]),))
        run = out / f"cross-{train_on}"
        if not (run / "model.pt").exists():
            experiment.train(None, run, one, jobs=args.jobs)
        predictor = Predictor.load(run)
        test = load_dataset(sources[test_on], corpus=test_on, features=settings.features, classes=settings.classes,
                            merge=settings.merge, jobs=args.jobs)
        assert test.labels == predictor.labels, (test.labels, predictor.labels)
        pred = score_features(predictor.model, model_inputs(test, settings.train)[0], predictor.n_frames).argmax(1)
        s = scores(test.y, pred, len(test.labels))
        print(f"| {train_on} | {test_on} | {s.n} | {s.ua:.3f} | {s.wa:.3f} | {s.macro_f1:.3f} |")

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

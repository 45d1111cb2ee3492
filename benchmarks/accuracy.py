"""Speaker-independent accuracy on the real corpora: each model beside eGeMAPS + SVM.

Usage::

    python benchmarks/accuracy.py [--data ../shared/data] [--out runs/bench] [--only emodb/cnn+spk,...]
                                  [--epochs N] [--seed S]

Each system is one ``emovox evaluate`` run (through the Python API; ``mlp`` reads eGeMAPS +
GE2E utterance vectors, the other models 64-band log-mel): RAVDESS with all 8
classes in 6 folds grouped by actor, EMO-DB with all 7 classes leave-one-speaker-out.
The first run of each corpus also runs eGeMAPSv02 + SVM on the same folds. Folds run 2
at a time (1 torch thread each). Finished folds are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from emovox import experiment
from emovox.settings import Settings

FOLDS = {"ravdess": "6", "emodb": "loso"}
EPOCHS = {"ravdess": 40, "emodb": 60}  # RAVDESS has 2.7x the utterances per epoch
SPEED = ("speed:0.9", "speed:1.1")
# (corpus, model, speaker normalisation, waveform augmentation[, utterance vectors kept]), in the order they run
SYSTEMS = [
    ("emodb", "cnn", True, ()),
    ("ravdess", "cnn", True, ()),
    ("emodb", "cnn_small", False, ()),
    ("ravdess", "cnn_small", False, ()),
    ("emodb", "cnn", False, ()),
    ("ravdess", "cnn", False, ()),
    ("ravdess", "cnn", True, SPEED),
    ("emodb", "cnn", True, SPEED),
    ("emodb", "crnn", True, ()),
    ("emodb", "mlp", True, ()),
    ("ravdess", "mlp", True, ()),
    ("emodb", "mlp", True, SPEED),
    ("ravdess", "mlp", True, SPEED),
    ("emodb", "mlp", False, ()),
    ("ravdess", "mlp", False, ()),
    ("emodb", "mlp", True, (), ("egemaps",)),  # ablations: which vector carries the gain
    ("ravdess", "mlp", True, (), ("egemaps",)),
    ("emodb", "mlp", True, (), ("ge2e",)),
    ("ravdess", "mlp", True, (), ("ge2e",)),
]


def tag(corpus: str, model: str, spk: bool, augment: tuple, parts: tuple = ()) -> str:
    vectors = f"[{'+'.join(parts)}]" if parts else ""
    return f"{corpus}/{model}{vectors}{'+spk' if spk else ''}{'+speed' if augment else ''}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--only", default="", help="comma-separated tags, e.g. emodb/cnn+spk,ravdess/cnn_small")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="override the epochs per corpus (use a fresh --out)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (use a fresh --out)")
    args = ap.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    rows, with_baseline = [], set()
    for corpus, model, spk, augment, *parts in SYSTEMS:
        name = tag(corpus, model, spk, augment, *parts)
        if wanted and name not in wanted:
            continue
        settings = Settings.build(model=model, speaker_norm=spk, augment=",".join(augment),
                                  epochs=args.epochs or EPOCHS[corpus], seed=args.seed)  # as the CLI does
        if parts:
            settings = replace(settings, features=replace(settings.features, utterance=parts[0]))
        baseline = corpus not in with_baseline
        with_baseline.add(corpus)
        t0 = time.perf_counter()
        m = experiment.evaluate(Path(args.data) / corpus, Path(args.out) / name.replace("/", "-"), settings,
                                corpus=corpus, folds=FOLDS[corpus], with_baseline=baseline, jobs=args.jobs,
                                threads=1)
        rows.append((corpus, m["name"], m, time.perf_counter() - t0))
        if baseline:
            rows.append((corpus, m["baseline"]["name"], m["baseline"], None))
        print_table(rows)


def print_table(rows) -> None:
    print("\n| corpus | system | folds | UA | WA | macro-F1 | UA mean ± std over folds | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for corpus, name, m, wall in rows:
        print(f"| {corpus} | {name} | {FOLDS[corpus]} | {m['ua']:.3f} | {m['wa']:.3f} | {m['macro_f1']:.3f} | "
              f"{m['mean']['ua']:.3f} ± {m['std']['ua']:.3f} | {'' if wall is None else f'{wall:.0f}'} |", flush=True)


if __name__ == "__main__":
    main()

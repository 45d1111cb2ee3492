"""Speaker-independent accuracy on the real corpora: each model beside eGeMAPS + SVM.

Usage::

    python benchmarks/accuracy.py [--data ../shared/data] [--out runs/bench] [--only emodb/cnn+spk,...]
                                  [--epochs N] [--seed S] [--conditions phone,white:10,...]

Each system is one ``emovox evaluate`` run (through the Python API; ``mlp`` reads eGeMAPS +
GE2E utterance vectors, ``kernel`` level-free eGeMAPS + GE2E + GE2E layer means, the other
models 64-band log-mel): RAVDESS with all 8 classes in 6 folds grouped by actor, EMO-DB with
all 7 classes leave-one-speaker-out, and ``loco``: RAVDESS, EMO-DB, nEMO and ASED, the four
classes they share, each corpus held out in turn (train on three, test on every file of the
fourth).
The first run of each corpus also runs eGeMAPSv02 + SVM on the same folds. Folds run 2
at a time (1 torch thread each). Finished folds are reused, so an interrupted run resumes.

With ``--conditions`` (test-time channels, :mod:`emovox.conditions`), each ``loco`` row
also scores every held-out corpus through each channel: one table per condition, and one
of each system's mean UA per condition and over all of them, clean included.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from emovox import experiment
from emovox.conditions import CLEAN
from emovox.settings import Settings

FOLDS = {"ravdess": "6", "emodb": "loso", "loco": "loco"}
EPOCHS = {"ravdess": 40, "emodb": 60, "loco": 60}  # RAVDESS has 2.7x the utterances per epoch
# leave-one-corpus-out: the four corpora of ../shared/data, the four classes they all share
LOCO_CORPORA = ("ravdess", "emodb", "nemo", "ased")
# (RAVDESS "calm" is left out, not merged into neutral: merged, it pulls the restrained clips
# of an unheard corpus into neutral; docs/benchmarks.md)
LOCO_CLASSES = "angry,happy,neutral,sad"
SPEED = ("speed:0.9", "speed:1.1")
CHANNEL = ("channel:1",)  # one copy through a random room / phone line / codec and noise per utterance
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
    ("loco", "kernel", False, ()),  # the default recipe: every held-out corpus unheard, one clip at a time
    ("loco", "kernel", False, SPEED),  # the bundled model's recipe: the same with speed perturbation
    ("loco", "kernel", False, SPEED + CHANNEL),  # ... and one channel-simulated copy
    ("loco", "kernel", False, SPEED + CHANNEL + ("channel:2",)),  # ... and two
    ("loco", "kernel", False, CHANNEL),  # channel simulation alone
    ("loco", "kernel", False, ("speed:0.95", "speed:1.05")),  # milder speed perturbation
    ("loco", "mlp", False, ()),  # the previous best recipe (eGeMAPS + GE2E -> MLP)
    ("loco", "kernel", False, (), ("egemaps", "ge2e")),  # kernel machine on the previous vectors
    ("loco", "mlp", False, (), ("egemaps_rel", "ge2e", "ge2e_layers")),  # MLP on the kernel's vectors
    ("loco", "kernel", False, (), ("egemaps_rel",)),  # openSMILE's level-free functionals alone
    ("loco", "kernel", False, (), ("voice",)),  # the torch front end's descriptors alone (emovox.voice)
    ("emodb", "kernel", False, ()),
    ("ravdess", "kernel", False, ()),
    ("emodb", "mlp", True, (), ("egemaps",)),  # ablations: which vector carries the gain
    ("ravdess", "mlp", True, (), ("egemaps",)),
    ("emodb", "mlp", True, (), ("ge2e",)),
    ("ravdess", "mlp", True, (), ("ge2e",)),
]


def tag(corpus: str, model: str, spk: bool, augment: tuple, parts: tuple = ()) -> str:
    """``loco/kernel+speed+channel2``: the corpus, model, vectors kept, speaker norm, and
    each augmentation kind with its number of copies; speed is ``+speed`` for :data:`SPEED`,
    else its factors (``+speed0.95-1.05``)."""
    vectors = f"[{'+'.join(parts)}]" if parts else ""
    kinds = Counter(spec.partition(":")[0] for spec in augment)
    speeds = tuple(spec for spec in augment if spec.startswith("speed:"))
    copies = "".join(
        ("+speed" if speeds == SPEED else "+speed" + "-".join(s.partition(":")[2] for s in speeds))
        if kind == "speed" else f"+{kind}{n if n > 1 else ''}"
        for kind, n in kinds.items())
    return f"{corpus}/{model}{vectors}{'+spk' if spk else ''}{copies}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--only", default="", help="comma-separated tags, e.g. emodb/cnn+spk,ravdess/cnn_small")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="override the epochs per corpus (use a fresh --out)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (use a fresh --out)")
    ap.add_argument("--conditions", default="", help="test conditions for the loco rows, e.g. phone,white:10")
    args = ap.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    rows, with_baseline = [], set()
    for corpus, model, spk, augment, *parts in SYSTEMS:
        name = tag(corpus, model, spk, augment, *parts)
        if wanted and name not in wanted:
            continue
        loco = corpus == "loco"
        doc = {"features": {"utterance": list(parts[0])}} if parts else {}  # as a --config file would say
        settings = Settings.from_doc(doc, model=model, speaker_norm=spk, augment=",".join(augment),
                                     epochs=args.epochs or EPOCHS[corpus], seed=args.seed,
                                     classes=LOCO_CLASSES if loco else None)
        baseline = corpus not in with_baseline
        with_baseline.add(corpus)
        t0 = time.perf_counter()
        data = [(c, Path(args.data) / c) for c in LOCO_CORPORA] if loco else Path(args.data) / corpus
        m = experiment.evaluate(data, Path(args.out) / name.replace("/", "-"), settings,
                                corpus=corpus, folds=FOLDS[corpus], with_baseline=baseline, jobs=args.jobs,
                                threads=1, test_conditions=args.conditions.split(",") if loco else ())
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
    loco = [(name, m) for corpus, name, m, _ in rows if corpus == "loco"]
    # each system's scores per test condition (clean: the run's own folds; the baseline has no others)
    tested = [(name, m.get("test_conditions") or {CLEAN: m}) for name, m in loco]
    conditions = list(dict.fromkeys(c for _, by in tested for c in by))
    held = " | ".join(f"{c} held out" for c in LOCO_CORPORA)
    for condition in conditions:
        under = "" if condition == CLEAN else f" under {condition}"
        print(f"\n| leave-one-corpus-out{under}: system | {held} | mean over held-out corpora |")
        print("|---" * (len(LOCO_CORPORA) + 2) + "|")
        for name, by in tested:
            if condition in by:
                ua = {f["test_corpus"]: f["ua"] for f in by[condition]["folds"]}
                print(f"| {name} | " + " | ".join(f"{ua[c]:.3f}" for c in LOCO_CORPORA) +
                      f" | {by[condition]['mean']['ua']:.3f} |", flush=True)
    if len(conditions) > 1:
        print("\n| leave-one-corpus-out: system | " + " | ".join(f"{c} mean UA" for c in conditions) +
              " | mean over conditions |")
        print("|---" * (len(conditions) + 2) + "|")
        for name, by in tested:
            if len(by) == len(conditions):
                means = [by[c]["mean"]["ua"] for c in conditions]
                print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in means) + f" | {sum(means) / len(means):.3f} |",
                      flush=True)


if __name__ == "__main__":
    main()

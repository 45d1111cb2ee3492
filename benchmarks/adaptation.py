"""Adaptation to a speaker or a recording, leave one corpus out: how the bundled recipe's
two heads do with the unlabelled audio a user has.

Usage::

    python benchmarks/adaptation.py [--config configs/bundled.yaml] [--data ../shared/data]
                                    [--priors 0,2,5,10] [--out runs/adaptation.json]

For each corpus held out in turn (4 classes: angry, happy, neutral, sad), two heads are
trained on the other three with the config's recipe: the *single-clip* head on the vectors
as they are, the *adapted* head on vectors z-scored per training speaker. Every clip of the
held-out corpus is then scored:

- ``one clip``: the single-clip head, nothing else known;
- ``speaker, all clips``: the adapted head, statistics from all of that speaker's clips;
- ``speaker, N clips``: statistics from N clips of the speaker drawn at random (2, 5, 10, 30);
- ``speaker, 10 clips 60% neutral``: 6 neutral clips and 4 others (1 of each other emotion);
- ``speaker, one emotion``: statistics from the speaker's clips of a single emotion, each
  emotion in turn (the mean UA over emotions);
- ``corpus pooled``: every clip of the corpus as one "speaker" (many voices pooled, no ids).

Statistics are shrunk toward the training speakers' prior by ``k`` pseudo-clips
(:class:`emovox.normalize.Prior`); each row is measured for every ``k`` in ``--priors``.
Adaptation sets hold unlabelled audio only: labels choose the skewed sets, as a user's
real mix would, and never reach the model. UA per held-out corpus, and the mean.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from emovox.dataset import DEFAULT_CACHE, load_dataset, model_inputs
from emovox.evaluate import scores
from emovox.frontend import clip_frames
from emovox.normalize import Prior, Stats
from emovox.predict import score_features
from emovox.settings import Settings
from emovox.splits import validation_split
from emovox.train import fit, for_features

CORPORA = ("ravdess", "emodb", "nemo", "ased")
CLASSES = "angry,happy,neutral,sad"
FEW = (2, 5, 10, 30)


def adaptation_sets(speakers: list, y: np.ndarray, labels: list[str], rng: np.random.Generator) -> dict:
    """Per scenario, a list of (clips scored, clips whose statistics adapt them) pairs."""
    by_speaker: dict = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(s, []).append(i)
    groups = [np.array(v) for v in by_speaker.values()]
    out = {"speaker, all clips": [(g, g) for g in groups]}
    for n in FEW:
        out[f"speaker, {n} clips"] = [(g, rng.choice(g, min(n, len(g)), replace=False)) for g in groups]
    neutral = labels.index("neutral")
    skewed = []
    for g in groups:
        calm, other = g[y[g] == neutral], g[y[g] != neutral]
        picked = list(rng.choice(calm, min(6, len(calm)), replace=False))
        for c in sorted(set(y[other])):
            picked += list(rng.choice(other[y[other] == c], 1))
        skewed.append((g, np.array(picked)))
    out["speaker, 10 clips 60% neutral"] = skewed
    out["speaker, one emotion"] = [[(g, g[y[g] == c]) for g in groups if (y[g] == c).any()] for c in range(len(labels))]
    everyone = np.arange(len(speakers))
    out["corpus pooled"] = [(everyone, everyone)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/bundled.yaml")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--priors", default="0,2,5,10")
    ap.add_argument("--out", default="runs/adaptation.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    s = Settings.build(args.config, classes=CLASSES)
    ds = load_dataset([(c, Path(args.data) / c) for c in CORPORA], features=s.features, classes=s.classes,
                      augment=s.train.augment, cache_dir=DEFAULT_CACHE)
    cfg, frames = for_features(s.train, s.features), clip_frames(s.features)
    corpus = np.array([u.corpus for u in ds.utterances])
    priors = [float(k) for k in args.priors.split(",")]
    heads = {"single": model_inputs(ds, speaker_norm=False), "adapted": model_inputs(ds, speaker_norm=True)}
    table: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for held in CORPORA:
        test, train_idx = np.flatnonzero(corpus == held), np.flatnonzero(corpus != held)
        fit_idx, val_idx = validation_split(train_idx, ds.speakers, fraction=cfg.val_fraction, seed=cfg.seed)
        nets = {}
        for name, (feats, augmented) in heads.items():
            nets[name] = fit(feats, ds.y, fit_idx, val_idx, n_classes=len(ds.labels), n_frames=frames, cfg=cfg,
                             groups=ds.groups, augmented=augmented, progress=False, description=name).model
        raw = [ds.features[i] for i in test]
        y, speakers = ds.y[test], [ds.speakers[i] for i in test]

        single = score_features(nets["single"], raw, frames).argmax(1)
        table.setdefault("one clip", {})[held] = scores(y, single, len(ds.labels)).ua
        prior_base = Prior.of([ds.features[i] for i in train_idx], [ds.speakers[i] for i in train_idx], frames=0)
        rng = np.random.default_rng(0)
        for scenario, sets in adaptation_sets(speakers, y, ds.labels, rng).items():
            nested = sets if scenario == "speaker, one emotion" else [sets]
            for k in priors:
                prior = Prior(prior_base.mean, prior_base.std, k)
                results = []
                for pairs in nested:
                    pred = np.zeros(len(test), dtype=np.int64)
                    for scored, adapt_on in pairs:
                        stats = Stats.of([raw[i] for i in adapt_on])
                        x = [stats.apply(raw[i], prior) for i in scored]
                        pred[scored] = score_features(nets["adapted"], x, frames).argmax(1)
                    covered = np.concatenate([p[0] for p in pairs])
                    results.append(scores(y[covered], pred[covered], len(ds.labels)).ua)
                table.setdefault(f"{scenario} (k={k:g})", {})[held] = float(np.mean(results))
        print(f"{held}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\n| situation | {' | '.join(CORPORA)} | mean |\n|---|{'---|' * (len(CORPORA) + 1)}")
    for row, by in table.items():
        vals = [by[c] for c in CORPORA]
        print(f"| {row} | {' | '.join(f'{v:.3f}' for v in vals)} | {np.mean(vals):.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()

"""Adaptation to a speaker or a recording, leave one corpus out: how the bundled recipe's
two heads do with the unlabelled audio a user has.

Usage::

    python benchmarks/adaptation.py [--config configs/bundled.yaml] [--data ../shared/data]
                                    [--priors 0,2,5,10] [--out runs/adaptation.json]
                                    [--trained-on four|config] [--seed N]

For each corpus held out in turn (4 classes: angry, happy, neutral, sad), two heads are
trained on the other three with the config's recipe (on those four classes, or with
``--trained-on config`` on the config's own, the shipped model's five, their predictions
then kept to the four as ``Predictor.only`` keeps them): the *single-clip* head on the vectors
as they are, the *adapted* head on vectors centred per training speaker and divided by the
training speakers' typical spread (only the mean moves with the speaker). Every clip of the
held-out corpus is then scored:

- ``one clip``: the single-clip head, nothing else known;
- ``speaker, all clips``: the adapted head, statistics from all of that speaker's clips;
- ``speaker, N clips``: statistics from N clips of the speaker drawn at random (2, 5, 10, 30);
- ``speaker, 10 clips 60% neutral``: 6 neutral clips and 4 others (1 of each other emotion);
- ``speaker, one emotion``: statistics from the speaker's clips of a single emotion, each
  emotion in turn (the mean UA over emotions);
- ``corpus pooled``: every clip of the corpus as one "speaker" (many voices pooled, no ids);
- ``recording, ...``: "recordings" of 2-4 speakers of the corpus (10 clips each, emotions
  as drawn, 5 per speaker-count and seed), as ``timeline`` sees a meeting: adapted with the
  whole recording pooled, per voice found by :func:`emovox.voices.group_voices` on the
  clips' d-vectors (a voice with fewer than ``--min-segments`` clips stays single-clip),
  and per true speaker (the ceiling).

Statistics are shrunk toward the training speakers' prior by ``k`` pseudo-clips
(:class:`emovox.normalize.Prior`); each row is measured for every ``k`` in ``--priors``.
Adaptation sets hold unlabelled audio only: labels choose the skewed sets, as a user's
real mix would, and never reach the model. UA per held-out corpus, and the mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from emovox.dataset import DEFAULT_CACHE, load_dataset, model_inputs
from emovox.evaluate import scores
from emovox.features import vector_slices
from emovox.frontend import clip_frames
from emovox.normalize import Prior, Stats
from emovox.predict import MIN_ADAPT_SEGMENTS, score_features
from emovox.settings import Settings
from emovox.splits import validation_split
from emovox.train import fit, for_features, for_inputs
from emovox.voices import group_voices

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


def recordings(speakers: list, rng: np.random.Generator, *, per_speaker: int = 10) -> list[np.ndarray]:
    """Clip indices of simulated multi-speaker recordings (2-4 speakers, 5 of each size)."""
    names = sorted(set(speakers), key=str)
    out = []
    for n in (2, 3, 4):
        for _ in range(5):
            chosen = rng.choice(len(names), min(n, len(names)), replace=False)
            clips = [rng.choice([i for i, s in enumerate(speakers) if s == names[c]],
                                min(per_speaker, speakers.count(names[c])), replace=False) for c in chosen]
            out.append(rng.permutation(np.concatenate(clips)))
    return out


def recording_sets(raw: list, speakers: list, rec: np.ndarray, dvec: slice, centre: np.ndarray,
                   min_segments: int) -> dict:
    """(scored, adapt-on) pairs for one recording: pooled, per voice found (d-vectors less
    ``centre``, as :meth:`emovox.predict.Predictor.voice_embeddings`), per true speaker."""
    voices = group_voices(np.stack([raw[i][dvec, 0] for i in rec]) - centre)
    found = [(rec[voices == v], rec[voices == v] if (voices == v).sum() >= min_segments else rec[:0])
             for v in set(voices)]  # a voice too small to adapt to: its clips stay single
    truth = [(rec[[speakers[i] == s for i in rec]],) * 2 for s in {speakers[i] for i in rec}]
    return {"recording pooled": [(rec, rec)], "recording, per voice found": found,
            "recording, per true speaker": truth}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/bundled.yaml")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--priors", default="0,2,5,10")
    ap.add_argument("--out", default="runs/adaptation.json")
    ap.add_argument("--min-segments", type=int, default=MIN_ADAPT_SEGMENTS)
    ap.add_argument("--trained-on", choices=("four", "config"), default="four",
                    help="four: heads trained on the four classes scored; config: on the config's classes (the "
                         "shipped model's five), their predictions kept to the four (Predictor.only)")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the config's)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    s = Settings.build(args.config, classes=CLASSES if args.trained_on == "four" else None)
    ds = load_dataset([(c, Path(args.data) / c) for c in CORPORA], features=s.features, classes=s.classes,
                      augment=s.train.augment, cache_dir=DEFAULT_CACHE)
    train = s.train if args.seed is None else dataclasses.replace(s.train, seed=args.seed)
    cfg, frames = for_features(train, s.features), clip_frames(s.features)
    parts = s.features.utterance
    dvec = vector_slices(parts)["dvector"]
    corpus = np.array([u.corpus for u in ds.utterances])
    keep = np.array([i for i, label in enumerate(ds.labels) if label in CLASSES.split(",")])  # the classes scored
    scored_labels = [ds.labels[i] for i in keep]

    def predicted(net, x: list) -> np.ndarray:  # the likeliest of the kept classes, as an index into keep
        return score_features(net, x, frames)[:, keep].argmax(1)

    priors = [float(k) for k in args.priors.split(",")]
    table: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for held in CORPORA:
        test, train_idx = np.flatnonzero((corpus == held) & np.isin(ds.y, keep)), np.flatnonzero(corpus != held)
        fit_idx, val_idx = validation_split(train_idx, ds.speakers, fraction=cfg.val_fraction, seed=cfg.seed)
        prior_base = Prior.of([ds.features[i] for i in fit_idx], [ds.speakers[i] for i in fit_idx], frames=0)
        heads = {"single": model_inputs(ds, speaker_norm=False),
                 "adapted": model_inputs(ds, speaker_norm=True, spread=prior_base.std)}
        nets = {}
        for name, (feats, augmented) in heads.items():
            nets[name] = fit(feats, ds.y, fit_idx, val_idx, n_classes=len(ds.labels), n_frames=frames,
                             cfg=for_inputs(cfg, speaker_normed=name == "adapted"),
                             groups=ds.groups, augmented=augmented, speakers=ds.speakers, progress=False,
                             description=name).model
        raw = [ds.features[i] for i in test]
        y, speakers = np.searchsorted(keep, ds.y[test]), [ds.speakers[i] for i in test]

        single = predicted(nets["single"], raw)
        table.setdefault("one clip", {})[held] = scores(y, single, len(keep)).ua
        rng = np.random.default_rng(0)
        scenarios = adaptation_sets(speakers, y, scored_labels, rng)
        for rec in recordings(speakers, rng):
            sets = recording_sets(raw, speakers, rec, dvec, prior_base.mean[dvec], args.min_segments)
            for name, pairs in sets.items():
                scenarios.setdefault(name, []).append(pairs)
        for scenario, sets in scenarios.items():
            nested = sets if scenario == "speaker, one emotion" or scenario.startswith("recording") else [sets]
            for k in priors:
                prior = Prior(prior_base.mean, prior_base.std, k)
                results, pooled_y, pooled_pred = [], [], []
                for pairs in nested:
                    pred = single.copy()  # clips of no set (a voice too small to adapt to) stay single
                    for scored, adapt_on in pairs:
                        if not len(adapt_on):
                            continue
                        stats = Stats.of([raw[i] for i in adapt_on])
                        x = [stats.apply(raw[i], prior) for i in scored]
                        pred[scored] = predicted(nets["adapted"], x)
                    covered = np.concatenate([p[0] for p in pairs])
                    results.append(scores(y[covered], pred[covered], len(keep)).ua)
                    pooled_y.append(y[covered])
                    pooled_pred.append(pred[covered])
                if scenario.startswith("recording"):  # small recordings lack classes: UA over all of them
                    results = [scores(np.concatenate(pooled_y), np.concatenate(pooled_pred), len(keep)).ua]
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

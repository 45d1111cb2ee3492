"""Grouping a recording's segments by voice (:func:`emovox.voices.group_voices`) on recordings
built from corpus speakers.

Usage::

    python benchmarks/voices.py [--model RUN_DIR] [--data ../shared/data] [--seeds 5] [--thresholds 0.7,...]

For each corpus (RAVDESS, EMO-DB, nEMO, ASED) and each seed, three recordings are built
with 1, 2, 3 and 4 speakers of that corpus: 20-60 segments (clips of the corpus), in
interleaved turns of 1-3 clips each, every speaker speaking at least once and never two
turns in a row. Each clip is embedded as ``timeline`` embeds a segment: the d-vector in
the model's own features (``--model``, default the bundled one; through the feature cache),
less the training speakers' mean d-vector (:meth:`emovox.predict.Predictor.voice_embeddings`);
the recording's embeddings are clustered, and the result is scored:

- purity: the share of segments whose cluster's majority speaker is their own speaker
  (1.0: no cluster mixes voices, whatever their number);
- coverage: the share of segments whose speaker's majority cluster is their own cluster
  (1.0: no voice is split over several clusters);
- F: their harmonic mean, by which the default threshold was chosen;
- voices found against the true number (mean, and the share of recordings where they
  are equal).

One-speaker recordings are built too (1-3 clips per turn, no interleaving): a recording
of one voice should come out as one.

Prints a sweep over thresholds (all corpora pooled) and the per-corpus table at the
default threshold (:data:`emovox.voices.THRESHOLD`).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from emovox.cache import extract_files
from emovox.corpora import load_corpus
from emovox.dataset import DEFAULT_CACHE
from emovox.predict import Predictor
from emovox.voices import THRESHOLD, group_voices

CORPORA = {"ravdess": "ravdess", "emodb": "emodb", "nemo": "nemo", "ased": "ased"}
SPEAKERS = (1, 2, 3, 4)
SEGMENTS = (20, 60)  # segments per recording, inclusive
TURN = (1, 3)  # clips per turn, inclusive
MIN_CLIPS = 15  # speakers with fewer clips are not used


def build(rng: np.random.Generator, clips: dict[str, list[str]], k: int) -> list[tuple[str, str]]:
    """One recording: ``(speaker, clip)`` per segment, ``k`` speakers in interleaved turns."""
    speakers = [str(s) for s in rng.choice(sorted(clips), k, replace=False)]
    pools = {s: list(rng.permutation(clips[s])) for s in speakers}
    target = int(rng.integers(SEGMENTS[0], SEGMENTS[1] + 1))
    order, previous = list(speakers), None  # every speaker first, then at random
    segments: list[tuple[str, str]] = []
    while len(segments) < target:
        choices = [s for s in speakers if pools[s] and (s != previous or k == 1)]
        if not choices:
            break
        s = order.pop(0) if order else str(rng.choice(choices))
        for _ in range(int(rng.integers(TURN[0], TURN[1] + 1))):
            if pools[s] and len(segments) < target:
                segments.append((s, pools[s].pop()))
        previous = s
    return segments


def purity_coverage(truth: list[str], found: np.ndarray) -> tuple[float, float]:
    """Purity and coverage (see the module docstring) of cluster labels ``found`` against ``truth``."""
    pairs = list(zip(truth, found.tolist(), strict=True))
    major_speaker = {c: Counter(s for s, c2 in pairs if c2 == c).most_common(1)[0][0] for c in set(found.tolist())}
    major_cluster = {s: Counter(c for s2, c in pairs if s2 == s).most_common(1)[0][0] for s in set(truth)}
    purity = np.mean([major_speaker[c] == s for s, c in pairs])
    coverage = np.mean([major_cluster[s] == c for s, c in pairs])
    return float(purity), float(coverage)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--thresholds", default="0.6,0.7,0.75,0.8,0.85,0.9,1.0")
    ap.add_argument("--model", default=None, help="run dir (default: the bundled model)")
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    args = ap.parse_args()
    torch.set_num_threads(1)
    thresholds = sorted({float(t) for t in args.thresholds.split(",")} | {THRESHOLD})

    recordings: dict[str, list[list[tuple[str, str]]]] = {}
    for name, reader in CORPORA.items():
        clips: dict[str, list[str]] = {}
        for u in load_corpus(Path(args.data) / name, corpus=reader):
            clips.setdefault(str(u.speaker), []).append(str(u.path))
        clips = {s: sorted(c) for s, c in clips.items() if len(c) >= MIN_CLIPS}
        recordings[name] = [build(np.random.default_rng(1000 * seed + k), clips, k)
                            for seed in range(args.seeds) for k in SPEAKERS]

    paths = sorted({p for recs in recordings.values() for r in recs for _, p in r})
    t0 = time.perf_counter()
    predictor = Predictor.load(args.model)
    feats = extract_files(paths, predictor.features, cache_dir=args.cache_dir, progress=False).features
    kept = [p for p in paths if p in feats]
    embedded = dict(zip(kept, predictor.voice_embeddings([feats[p] for p in kept]), strict=True))
    print(f"{len(paths)} clips embedded (model {args.model or 'bundled'}, cache {args.cache_dir}) "
          f"in {time.perf_counter() - t0:.0f} s\n")

    scores: dict[tuple[str, float], list[tuple[float, float, int, int]]] = {}
    for name, recs in recordings.items():
        for rec in recs:
            rec = [(s, p) for s, p in rec if p in embedded]  # an unreadable clip is left out
            truth = [s for s, _ in rec]
            e = np.stack([embedded[p] for _, p in rec])
            for t in thresholds:
                found = group_voices(e, threshold=t)
                scores.setdefault((name, t), []).append((*purity_coverage(truth, found), found.max() + 1,
                                                         len(set(truth))))

    print("Threshold sweep, all corpora pooled "
          f"({sum(len(r) for r in recordings.values())} recordings):\n")
    print("| threshold | purity | coverage | F | voices found / true | found = true |\n|---|---|---|---|---|---|")
    for t in thresholds:
        rows = [r for name in CORPORA for r in scores[(name, t)]]
        print(_row(f"{t:g}" + (" (default)" if t == THRESHOLD else ""), rows))
    print(f"\nPer corpus at the default threshold {THRESHOLD:g} ({args.seeds} seeds x {len(SPEAKERS)} "
          f"recordings of {', '.join(map(str, SPEAKERS))} speakers each):\n")
    print("| corpus | recordings | segments | purity | coverage | F | voices found / true | found = true |\n"
          "|---|---|---|---|---|---|---|---|")
    for name, recs in recordings.items():
        print(_row(f"{name} | {len(recs)} | {sum(len(r) for r in recs)}", scores[(name, THRESHOLD)]))
    for k in SPEAKERS:
        rows = [r for name in CORPORA for r in scores[(name, THRESHOLD)] if r[3] == k]
        print(_row(f"all, {k} speaker{'s' if k > 1 else ''} | {len(rows)} | -", rows))


def _row(head: str, rows: list[tuple[float, float, int, int]]) -> str:
    """A table row: mean purity, coverage and their harmonic mean, mean voices found / true,
    share of recordings with found = true."""
    purity, coverage, found, true = (np.mean([r[i] for r in rows]) for i in range(4))
    f = 2 * purity * coverage / (purity + coverage)
    exact = np.mean([r[2] == r[3] for r in rows])
    return f"| {head} | {purity:.3f} | {coverage:.3f} | {f:.3f} | {found:.2f} / {true:.2f} | {exact:.2f} |"


if __name__ == "__main__":
    main()

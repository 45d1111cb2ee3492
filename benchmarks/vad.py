"""Speech detection in noise: frame-level precision, recall and F1 of the VADs, and their speed.

Usage::

    python benchmarks/vad.py [--data ../shared/data] [--recordings 8] [--per-recording 12] [--seed 0]

Builds recordings from real corpus utterances (EMO-DB and RAVDESS; two speakers a
recording, as in a call), each utterance cut to its own speech extent (``librosa.effects.trim``
at 35 dB below the clip's loudest 25 ms frame: the ground truth is that extent, pauses
inside an utterance count as speech), set to a level drawn from -35 to -20 dBFS RMS
(quiet speech included) and separated by 0.3-2 s of silence, with 1 s before and after.
Noise is then added at a given SNR (speech power over the ground-truth frames against
the noise's power): white, pink (1/f) and babble (the sum of six utterances of nEMO and
ASED speakers, who are in no recording). Nothing is written to disk. ``--seed`` draws
other recordings, noise and babble (the level gate's constants were chosen on seed 1; the
table in docs/benchmarks.md is seed 0).

VADs: Silero as ``timeline`` runs it by default (with its level gate), Silero without the
gate (``gate_db=0``) and the energy gate. Each runs through
:func:`emovox.segment.speech_segments` as ``timeline`` runs it (default settings but the
VAD's, streamed in 1 s blocks). Scored on 10 ms frames:
"segments" counts a frame as detected when it lies inside an emitted segment (what
``timeline`` scores, 0.1 s padding and pauses under 0.4 s bridged included); "frames"
scores the detector's own frame decisions, before that smoothing. Speed: audio seconds
per CPU second of the whole segmentation (one thread).
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import librosa
import numpy as np
import torch

from emovox import audio
from emovox.segment import VadConfig, detector, speech_segments

SR = 16000
FRAME_S = 0.01  # scoring grid
TRIM_DB = 35.0
LEVELS_DBFS = (-35.0, -20.0)
PAUSE_S = (0.3, 2.0)
SNRS = (None, 20, 10, 5, 0)  # None: clean
NOISES = ("white", "pink", "babble")
BABBLE_TALKERS = 6
BLOCK_S = 1.0


def speakers(data: str) -> dict[str, list[str]]:
    """Recording speakers: EMO-DB (first two characters) and RAVDESS actors, files sorted."""
    out: dict[str, list[str]] = {}
    for f in sorted(glob.glob(f"{data}/emodb/wav/*.flac")):
        out.setdefault(f"emodb-{os.path.basename(f)[:2]}", []).append(f)
    for f in sorted(glob.glob(f"{data}/ravdess/Actor_*/*.flac")):
        out.setdefault(f"ravdess-{os.path.basename(os.path.dirname(f))}", []).append(f)
    return out


def speech_extent(y: np.ndarray) -> np.ndarray:
    """The clip cut to its energy-trimmed speech extent."""
    _, (a, b) = librosa.effects.trim(y, top_db=TRIM_DB, frame_length=400, hop_length=160)
    return y[a:b]


def build(files: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A recording of the files' speech extents with pauses, and its per-sample truth (bool)."""
    parts, truth = [np.zeros(SR, np.float32)], [np.zeros(SR, bool)]
    for f in files:
        y = speech_extent(audio.load(f, sr=SR))
        level = rng.uniform(*LEVELS_DBFS)
        y = y * (10 ** (level / 20) / np.sqrt(np.mean(y**2)))
        pause = int((rng.uniform(*PAUSE_S) if f != files[-1] else 1.0) * SR)
        parts += [y.astype(np.float32), np.zeros(pause, np.float32)]
        truth += [np.ones(len(y), bool), np.zeros(pause, bool)]
    return np.concatenate(parts), np.concatenate(truth)


def noise(kind: str, n: int, rng: np.random.Generator, babble: list[np.ndarray]) -> np.ndarray:
    """Unit-power noise of ``n`` samples."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SR)
        x = np.fft.irfft(spec / np.sqrt(np.maximum(f, 20.0)), n)
    else:
        talkers = rng.choice(len(babble), BABBLE_TALKERS, replace=False)
        x = np.zeros(n)
        for t in talkers:
            y = babble[t]
            x += np.roll(np.tile(y, n // len(y) + 1)[:n], rng.integers(len(y)))
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = np.sum(pred & truth)
    p = tp / max(pred.sum(), 1)
    r = tp / max(truth.sum(), 1)
    return p, r, 2 * p * r / max(p + r, 1e-12)


def frames_of(mask: np.ndarray) -> np.ndarray:
    """Per-sample bool -> one value per 10 ms frame (the frame's centre sample)."""
    step = int(FRAME_S * SR)
    return mask[step // 2 :: step]


VADS = {"silero": VadConfig(), "silero, no gate": VadConfig(gate_db=0.0), "energy": VadConfig(method="energy")}


def run_vad(y: np.ndarray, cfg: VadConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """(segment mask, decision mask) per sample, and the CPU seconds segmentation took."""
    blocks = [y[i : i + int(BLOCK_S * SR)] for i in range(0, len(y), int(BLOCK_S * SR))]
    t0 = time.process_time()
    segs = list(speech_segments(iter(blocks), SR, cfg))
    cpu = time.process_time() - t0
    seg_mask = np.zeros(len(y), bool)
    for s in segs:
        seg_mask[int(s.start * SR) : int(s.end * SR)] = True
    det = detector(SR, cfg)
    decisions = np.concatenate([det(b) for b in blocks] + [det.flush()])
    edges = [int(k * det.hop) for k in range(len(decisions) + 1)]
    dec_mask = np.zeros(len(y), bool)
    for k in np.flatnonzero(decisions):
        dec_mask[edges[k] : edges[k + 1]] = True
    return seg_mask, dec_mask, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--recordings", type=int, default=8)
    ap.add_argument("--per-recording", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0, help="draws the recordings, noise and babble")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    spk = speakers(args.data)
    names = sorted(spk)
    recordings = []
    for _ in range(args.recordings):
        pair = rng.choice(len(names), 2, replace=False)
        pool = [f for p in pair for f in spk[names[p]]]
        files = [pool[j] for j in rng.choice(len(pool), args.per_recording, replace=False)]
        recordings.append(build(files, rng))
    others = sorted(glob.glob(f"{args.data}/nemo/samples/*.flac")) + sorted(glob.glob(f"{args.data}/ased/*/*.flac"))
    babble = [speech_extent(audio.load(others[j], sr=SR)) for j in rng.choice(len(others), 60, replace=False)]
    total_s = sum(len(y) for y, _ in recordings) / SR
    speech_s = sum(t.sum() for _, t in recordings) / SR
    print(f"{len(recordings)} recordings, {total_s:.0f} s, {speech_s:.0f} s of speech ({speech_s / total_s:.0%})\n")

    methods = tuple(VADS)
    cpu = dict.fromkeys(methods, 0.0)
    audio_s = 0.0
    print("| noise | SNR (dB) | " + " | ".join(f"{m} P / R / F1 (segments) | {m} F1 (frames)" for m in methods) + " |")
    print("|---|---|" + "---|---|" * len(methods))
    for kind in ("none", *NOISES):
        for snr in SNRS:
            if (kind == "none") != (snr is None):
                continue
            seg_pred = {m: [] for m in methods}
            dec_pred = {m: [] for m in methods}
            truths = []
            for r, (y, truth) in enumerate(recordings):
                x = y
                if snr is not None:
                    n_rng = np.random.default_rng([args.seed, r, NOISES.index(kind), snr])
                    power = np.mean(y[truth] ** 2)
                    x = y + noise(kind, len(y), n_rng, babble) * np.sqrt(power / 10 ** (snr / 10))
                truths.append(frames_of(truth))
                audio_s += len(x) / SR
                for m in methods:
                    seg, dec, sec = run_vad(x.astype(np.float32), VADS[m])
                    seg_pred[m].append(frames_of(seg))
                    dec_pred[m].append(frames_of(dec))
                    cpu[m] += sec
            t = np.concatenate(truths)
            cells = []
            for m in methods:
                p, rc, f1 = scores(np.concatenate(seg_pred[m]), t)
                cells.append(f"{p:.3f} / {rc:.3f} / **{f1:.3f}** | {scores(np.concatenate(dec_pred[m]), t)[2]:.3f}")
            name, level = ("clean", "-") if snr is None else (kind, snr)
            print(f"| {name} | {level} | " + " | ".join(cells) + " |")
    print("\n| VAD | audio seconds per CPU second (1 thread) |\n|---|---|")
    for m in methods:
        print(f"| {m} | {audio_s / cpu[m]:.0f} |")


if __name__ == "__main__":
    main()

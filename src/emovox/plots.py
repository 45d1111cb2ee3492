"""Figures: confusion matrices and emotion timelines (matplotlib, written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emovox.files import atomic_write

VOICE_GAP = 0.03  # between the probability bars and the voice band, in probability units
VOICE_BAND = 0.07  # height of the voice band


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    _pyplot().close(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: list[str], path: Path, *, title: str) -> None:
    """Save a row-normalised confusion matrix (recall per true class) as PNG."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(1, m.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 0.8 + 0.7 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)


def plot_timeline(rows: list[dict], labels: list[str], path: Path, *, title: str = "") -> None:
    """Save emotion probabilities over time (one stacked bar per speech segment) as PNG; rows
    with a ``"speaker"`` (voice; ``None``: not known) also get a band above the bars, one shade per voice."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    colors, shades = plt.get_cmap("tab10"), plt.get_cmap("Pastel2")
    voices = list(dict.fromkeys(r["speaker"] for r in rows if r.get("speaker") is not None))
    for r in rows:
        bottom = 0.0
        for i, lab in enumerate(labels):
            p = r["scores"][lab]
            ax.bar(r["start"], p, width=r["end"] - r["start"], bottom=bottom, align="edge", color=colors(i % 10),
                   edgecolor="none")
            bottom += p
        if r.get("speaker") is not None:
            ax.bar(r["start"], VOICE_BAND, width=r["end"] - r["start"], bottom=1 + VOICE_GAP, align="edge",
                   color=shades(voices.index(r["speaker"]) % 8), edgecolor="none")
            ax.text((r["start"] + r["end"]) / 2, 1 + VOICE_GAP + VOICE_BAND / 2, r["speaker"], ha="center",
                    va="center", fontsize=6, clip_on=True)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1 + (VOICE_GAP + VOICE_BAND if voices else 0))
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors(i % 10)) for i in range(len(labels))]
    handles += [plt.Rectangle((0, 0), 1, 1, color=shades(i % 8)) for i in range(len(voices))]
    ax.legend(handles=handles, labels=[*labels, *(f"voice {v}" for v in voices)], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    _save(fig, path)

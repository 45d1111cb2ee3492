"""Metrics (UA, WA, macro-F1, confusion matrix), cross-validation summaries and reports."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


@dataclass(frozen=True)
class Scores:
    """Classification scores. UA = unweighted average recall; WA = accuracy."""

    ua: float
    wa: float
    macro_f1: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def scores(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> Scores:
    """UA, WA and macro-F1 over the classes present in ``y_true``.

    Examples
    --------
    >>> scores([0, 0, 1, 1], [0, 1, 1, 1], 2).ua
    0.75
    """
    labels = np.arange(n_classes)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    with warnings.catch_warnings():  # a fold may predict a class its speakers lack
        warnings.simplefilter("ignore", UserWarning)
        ua = float(balanced_accuracy_score(y_true, y_pred))
    return Scores(
        ua=ua,
        wa=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=labels[np.isin(labels, present)], average="macro",
                                zero_division=0)),
        n=len(y_true),
    )


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> list[list[int]]:
    """Confusion matrix over all ``n_classes`` (rows true, columns predicted) as nested lists."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)).tolist()


def summarise(y_true: np.ndarray, y_pred: np.ndarray, folds: list[dict], labels: list[str], *,
              name: str, speaker_independent: bool, extra: dict | None = None) -> dict:
    """The ``metrics.json`` document of a cross-validation run.

    Top-level ``ua``/``wa``/``macro_f1`` are computed over all pooled test predictions;
    ``mean``/``std`` summarise the per-fold values.
    """
    pooled = scores(y_true, y_pred, len(labels))
    per_fold = {k: [f[k] for f in folds] for k in ("ua", "wa", "macro_f1")}
    p, r, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(len(labels)),
                                                        zero_division=0)
    return {
        "name": name,
        "speaker_independent": speaker_independent,
        "labels": labels,
        "ua": pooled.ua,
        "wa": pooled.wa,
        "macro_f1": pooled.macro_f1,
        "mean": {k: float(np.mean(v)) for k, v in per_fold.items()},
        "std": {k: float(np.std(v)) for k, v in per_fold.items()},
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]),
                            "support": int(support[i])} for i, lab in enumerate(labels)},
        "confusion_matrix": confusion(y_true, y_pred, len(labels)),
        "folds": folds,
        **(extra or {}),
    }


def report_markdown(metrics: dict, *, baseline: dict | None = None, image: str | None = None) -> str:
    """A Markdown report: headline, per-class table, per-fold table, mean ± std, baseline."""
    loco = any(f.get("test_corpus") for f in metrics["folds"])
    split = "leave-one-corpus-out (each fold tests on every file of a corpus the model never heard)" if loco else \
        "speaker-independent (folds grouped by speaker)" if metrics["speaker_independent"] else \
        "**random utterance split: speakers are mixed between train and test; not speaker-independent**"
    lines = [f"# {metrics['name']}", "", f"Split: {split}.", ""]
    lines += _headline(metrics, baseline)
    lines += ["", "## Per class (pooled test predictions)", "", "| class | precision | recall | F1 | n |",
              "|---|---|---|---|---|"]
    for lab, c in metrics["per_class"].items():
        lines.append(f"| {lab} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    who = "held-out corpus" if loco else "test speakers"
    lines += ["", "## Per fold", "", f"| fold | {who} | n | UA | WA | macro-F1 |" +
              (" baseline UA |" if baseline else ""), "|---|---|---|---|---|---|" + ("---|" if baseline else "")]
    for i, f in enumerate(metrics["folds"]):
        who = f.get("test_corpus") or ", ".join(f["test_speakers"]) or "(mixed)"
        row = f"| {f['fold']} | {who} | {f['n']} | {f['ua']:.3f} | " \
              f"{f['wa']:.3f} | {f['macro_f1']:.3f} |"
        if baseline:
            row += f" {baseline['folds'][i]['ua']:.3f} |"
        lines.append(row)
    m, s = metrics["mean"], metrics["std"]
    over = "held-out corpora" if loco else "folds"
    lines += ["", f"Mean ± std over {over}: UA {m['ua']:.3f} ± {s['ua']:.3f}, WA {m['wa']:.3f} ± {s['wa']:.3f}, "
              f"macro-F1 {m['macro_f1']:.3f} ± {s['macro_f1']:.3f}."]
    if "test_conditions" in metrics:
        lines += ["", "## Test conditions", "", f"The same models, each fold's test audio through a channel "
                  f"(emovox.conditions): UA per {'held-out corpus' if loco else 'fold'}, then the means over "
                  f"{over}.", "", condition_table(metrics)]
    for f in metrics["folds"] if loco else ():
        lines += ["", f"Confusion matrix, {f['test_corpus']} held out (rows true, columns predicted):", "",
                  "| | " + " | ".join(metrics["labels"]) + " |", "|---" * (len(metrics["labels"]) + 1) + "|"]
        lines += [f"| {lab} | " + " | ".join(map(str, r)) + " |" for lab, r in zip(metrics["labels"],
                                                                              f["confusion_matrix"], strict=True)]
    if "calibration" in metrics:
        c = metrics["calibration"]
        lines += ["", f"Expected calibration error (15 bins, mean over folds): {c['ece_before']:.3f} before, "
                  f"{c['ece_after']:.3f} after temperature scaling fitted on each fold's validation speakers."]
    if image:
        lines += ["", f"![confusion matrix]({image})"]
    return "\n".join(lines) + "\n"


def condition_table(metrics: dict) -> str:
    """A Markdown table of ``metrics["test_conditions"]``: a row per condition (clean
    first), UA per fold (named by its held-out corpus in leave-one-corpus-out), and the
    mean UA, WA and macro-F1 over folds."""
    conditions = metrics["test_conditions"]
    folds = next(iter(conditions.values()))["folds"]
    names = [f.get("test_corpus") or f"fold {f['fold']}" for f in folds]
    lines = ["| condition | " + " | ".join(f"{n} UA" for n in names) + " | mean UA | mean WA | mean macro-F1 |",
             "|---" * (len(names) + 4) + "|"]
    for name, c in conditions.items():
        lines.append(f"| {name} | " + " | ".join(f"{f['ua']:.3f}" for f in c["folds"]) +
                     f" | {c['mean']['ua']:.3f} | {c['mean']['wa']:.3f} | {c['mean']['macro_f1']:.3f} |")
    return "\n".join(lines)


def _headline(metrics: dict, baseline: dict | None) -> list[str]:
    rows = [("model", metrics)] + ([("baseline", baseline)] if baseline else [])
    out = ["| system | UA | WA | macro-F1 |", "|---|---|---|---|"]
    for tag, m in rows:
        out.append(f"| {m['name']} ({tag}) | {m['ua']:.3f} | {m['wa']:.3f} | {m['macro_f1']:.3f} |")
    return out

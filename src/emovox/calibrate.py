"""Probability calibration: temperature scaling and expected calibration error (ECE)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from emovox.predict import score_features

BINS = 15


def ece(probs: np.ndarray, y: np.ndarray, *, bins: int = BINS) -> float:
    """Expected calibration error: confidence vs accuracy, averaged over equal-width bins.

    Examples
    --------
    >>> ece(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]))
    0.45
    """
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(conf[in_bin].mean() - correct[in_bin].mean())
    return float(total)


def fit_temperature(model, feats: Sequence[np.ndarray], y: np.ndarray, n_frames: int) -> float:
    """Temperature ``T`` minimising the negative log-likelihood of ``y`` (held-out speakers).

    Sets ``model.temperature`` to the result (the model divides its logits by it).
    """
    def nll(log_t: float) -> float:
        model.temperature.fill_(float(np.exp(log_t)))
        p = score_features(model, feats, n_frames)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))

    with torch.no_grad():
        best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                               options={"xatol": 1e-3})
        t = float(np.exp(best.x))
        model.temperature.fill_(t)
    return t


def calibrate_and_measure(model, feats, y, val_idx, test_idx, n_frames) -> dict:
    """Fit the temperature on ``val_idx`` (held-out speakers); ECE on ``test_idx`` before and after."""
    test_feats = [feats[i] for i in test_idx]
    before = ece(score_features(model, test_feats, n_frames), y[test_idx])
    t = fit_temperature(model, [feats[i] for i in val_idx], y[val_idx], n_frames)
    after = ece(score_features(model, test_feats, n_frames), y[test_idx])
    return {"temperature": round(t, 4), "ece_before": before, "ece_after": after}

import numpy as np
import torch

from emovox import models
from emovox.calibrate import ece, fit_temperature
from emovox.predict import score_features
from emovox.train import sample_weights


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    # bins: (0.5333,0.6]: conf .55 correct 1 -> |.55-1|; (0.6667,0.7333]: .7 vs 1; (0.7333,0.8]: .8 vs 0;
    # (0.8667,0.9333]: .9 vs 1
    expected = (0.45 + 0.3 + 0.8 + 0.1) / 4
    assert abs(ece(probs, y) - expected) < 1e-12


def test_temperature_scaling_reduces_overconfidence():
    """Logits right 70% of the time but ~100% confident: calibration should bring confidence to ~0.7."""
    rng = np.random.default_rng(0)
    net = models.Classifier(torch.nn.Flatten(), n_features=3)  # logits = the (3, 1) feature column
    y = rng.integers(0, 3, 300)
    shown = np.where(rng.random(300) < 0.7, y, (y + 1) % 3)
    feats = [(8.0 * np.eye(3)[k])[:, None].astype(np.float32) for k in shown]
    before = ece(score_features(net, feats, 1), y)
    t = fit_temperature(net, feats, y, 1)
    probs = score_features(net, feats, 1)
    after = ece(probs, y)
    assert before > 0.25 and after < 0.05 and t > 2
    assert abs(probs.max(axis=1).mean() - 0.7) < 0.05
    assert abs(float(net.temperature) - t) < 1e-5


def test_sample_weights_balance_classes_and_corpora():
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1, 1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    w = sample_weights(y, groups)
    totals = {(g, c): w[(groups == g) & (y == c)].sum() for g in (0, 1) for c in (0, 1)}
    assert np.allclose(list(totals.values()), 10 / 4)
    np.testing.assert_allclose(sample_weights(y), np.where(y == 0, 10 / (2 * 4), 10 / (2 * 6)))

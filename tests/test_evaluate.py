import json

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

from emovox.evaluate import report_markdown, scores, summarise


def test_scores_hand_computed():
    # class 0: 2/3 recalled, class 1: 1/1, class 2: 0/2 -> UA = (2/3 + 1 + 0) / 3
    y_true = [0, 0, 0, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 0, 1]
    s = scores(y_true, y_pred, 3)
    assert abs(s.ua - (2 / 3 + 1) / 3) < 1e-12
    assert abs(s.wa - 3 / 6) < 1e-12
    # F1: class0 p=2/3 r=2/3 -> 2/3; class1 p=1/3 r=1 -> 0.5; class2 -> 0
    assert abs(s.macro_f1 - (2 / 3 + 0.5 + 0) / 3) < 1e-12


def test_scores_against_sklearn_on_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true, y_pred = rng.integers(0, 5, 50), rng.integers(0, 5, 50)
        s = scores(y_true, y_pred, 5)
        assert np.isclose(s.ua, balanced_accuracy_score(y_true, y_pred))
        assert np.isclose(s.wa, np.mean(y_true == y_pred))
        assert np.isclose(s.macro_f1, f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true)))


def test_summary_and_report():
    y_true = np.array([0, 1, 1, 0])
    y_pred = np.array([0, 1, 0, 0])
    folds = [{"fold": 0, "test_speakers": ["a"], **scores(y_true[:2], y_pred[:2], 2).to_dict()},
             {"fold": 1, "test_speakers": ["b"], **scores(y_true[2:], y_pred[2:], 2).to_dict()}]
    m = summarise(y_true, y_pred, folds, ["neutral", "sad"], name="x", speaker_independent=True)
    json.dumps(m)
    assert m["confusion_matrix"] == [[2, 0], [1, 1]]
    assert m["ua"] == 0.75 and m["per_class"]["sad"]["recall"] == 0.5
    md = report_markdown(m, baseline=m)
    assert "speaker-independent" in md and "| 1 | b | 2 |" in md and "Mean ± std" in md
    m2 = summarise(y_true, y_pred, folds, ["neutral", "sad"], name="x", speaker_independent=False)
    assert "not speaker-independent" in report_markdown(m2)

"""The classic baseline: openSMILE eGeMAPSv02 functionals + an RBF SVM, on the same folds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from emovox.features import FeatureConfig

# 88 eGeMAPSv02 functionals per file, untrimmed, as the classic recipe computes them
FEATURES = FeatureConfig(kind="utterance", utterance=("egemaps",), trim_db=None)


def make_svm(seed: int = 0):
    """Standardise, then an RBF SVM with balanced class weights (the usual eGeMAPS recipe)."""
    return make_pipeline(StandardScaler(), SVC(C=1.0, kernel="rbf", class_weight="balanced", random_state=seed))


def fit_predict(x: np.ndarray, y: np.ndarray, train: Sequence[int], test: Sequence[int], *,
                seed: int = 0) -> np.ndarray:
    """Fit the SVM on ``train`` rows and predict ``test`` rows."""
    clf = make_svm(seed).fit(x[train], y[train])
    return clf.predict(x[test])

"""Group the speech segments of a recording by voice: clustering of speaker embeddings.

A meeting or a call holds a few voices. Each segment's GE2E d-vector, less the mean
d-vector of the model's training speakers (:meth:`emovox.predict.Predictor.voice_embeddings`:
what every d-vector shares), points in a direction of its own per speaker, so
segments whose embeddings lie close in angle are taken for one voice: agglomerative
clustering with cosine distance, average linkage, and a distance threshold (no number of
voices to guess beforehand). The threshold was chosen with ``benchmarks/voices.py`` on
recordings built from 2-4 corpus speakers (docs/benchmarks.md, "Grouping a recording's
segments by voice").
"""

from __future__ import annotations

import numpy as np

from emovox.errors import ConfigError

THRESHOLD = 0.85  # cosine distance (1 - cosine similarity) above which two groups are two voices
MIN_NORM = 1e-8  # an embedding shorter than this has no direction


def group_voices(embeddings: np.ndarray, *, threshold: float = THRESHOLD) -> np.ndarray:
    """A voice label per segment, from the segments' speaker embeddings.

    Parameters
    ----------
    embeddings : ndarray, shape (n, d)
        One speaker embedding per segment (unit length or not: only directions count).
    threshold : float
        Largest average cosine distance (0: same direction, 2: opposite) between two
        groups that are still merged into one voice.

    Returns
    -------
    ndarray of int, shape (n,)
        Voice labels ``0 .. k-1``, numbered in order of first appearance (the first
        segment's voice is 0).

    Examples
    --------
    >>> e = np.array([[1.0, 0.0], [0.0, 1.0], [0.99, 0.1]])
    >>> group_voices(e).tolist()
    [0, 1, 0]
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ConfigError(f"embeddings must be a 2-D array (segments, dimensions), got shape {e.shape}")
    if not 0 < threshold < 2:
        raise ConfigError(f"threshold is a cosine distance between 0 and 2, got {threshold}")
    if not np.isfinite(e).all() or (len(e) and np.linalg.norm(e, axis=1).min() < MIN_NORM):
        raise ConfigError("every embedding must be finite and non-zero")
    if len(e) < 2:
        return np.zeros(len(e), dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    raw = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                  distance_threshold=threshold).fit_predict(e)
    _, first = np.unique(raw, return_index=True)  # raw ids are 0 .. k-1: first[c] is where c first appears
    relabel = np.empty(len(first), dtype=int)
    relabel[np.argsort(first)] = np.arange(len(first))
    return relabel[raw]

"""Grouping segments by voice: clustering of speaker embeddings."""

import numpy as np
import pytest

from emovox.errors import ConfigError
from emovox.voices import THRESHOLD, group_voices


def voices(centres: np.ndarray, owners: list[int], *, spread: float, seed: int = 0) -> np.ndarray:
    """Unit-length embeddings scattered around the unit ``centres[owner]`` of each segment."""
    rng = np.random.default_rng(seed)
    e = centres[owners] + spread * rng.standard_normal((len(owners), centres.shape[1]))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_well_separated_voices_are_recovered_exactly_in_order_of_first_appearance(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 3
    centres = np.linalg.qr(rng.standard_normal((64, k)))[0].T  # k orthonormal directions
    owners = list(rng.permutation(np.repeat(np.arange(k), 8)))
    labels = group_voices(voices(centres, owners, spread=0.02, seed=seed))
    first_seen = list(dict.fromkeys(owners))
    assert labels.tolist() == [first_seen.index(o) for o in owners]


def test_one_voice_stays_one_and_a_distant_voice_is_split_off():
    rng = np.random.default_rng(1)
    centres = np.linalg.qr(rng.standard_normal((32, 2)))[0].T
    assert group_voices(voices(centres, [0] * 12, spread=0.02)).tolist() == [0] * 12
    assert group_voices(voices(centres, [1, 1, 0, 1], spread=0.02)).tolist() == [0, 0, 1, 0]


def test_one_segment_and_two_identical_segments_are_one_voice():
    e = np.array([[0.6, 0.8, 0.0]])
    assert group_voices(e).tolist() == [0]
    assert group_voices(np.repeat(e, 2, axis=0)).tolist() == [0, 0]
    assert group_voices(np.zeros((0, 3))).tolist() == []


def test_two_segments_split_exactly_at_the_threshold():
    def pair(distance):
        angle = np.arccos(1 - distance)
        return np.array([[1.0, 0.0], [np.cos(angle), np.sin(angle)]])

    assert group_voices(pair(THRESHOLD - 0.02)).tolist() == [0, 0]
    assert group_voices(pair(THRESHOLD + 0.02)).tolist() == [0, 1]
    assert group_voices(pair(0.2), threshold=0.1).tolist() == [0, 1]


@pytest.mark.parametrize(("embeddings", "message"), [
    (np.ones(4), "2-D"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), "non-zero"),
    (np.array([[1.0, np.nan]]), "finite"),
])
def test_bad_embeddings_are_refused(embeddings, message):
    with pytest.raises(ConfigError, match=message):
        group_voices(embeddings)
    with pytest.raises(ConfigError, match="threshold"):
        group_voices(np.eye(2), threshold=0)

import numpy as np
import pytest

from emovox.errors import ConfigError, CorpusError
from emovox.splits import RANDOM_SPLIT, make_folds, validation_split

SPEAKERS = [f"s{i % 7}" for i in range(70)]
LABELS = [str(i % 3) for i in range(70)]


@pytest.mark.parametrize("folds", [2, 3, 7, "loso"])
def test_no_speaker_in_two_splits(folds):
    splits = make_folds(SPEAKERS, LABELS, folds, seed=1)
    assert len(splits) == (7 if folds == "loso" else folds)
    covered = np.concatenate([f.test for f in splits])
    assert sorted(covered) == list(range(70))
    for f in splits:
        train_spk = {SPEAKERS[i] for i in f.train}
        test_spk = {SPEAKERS[i] for i in f.test}
        assert not train_spk & test_spk
        assert set(f.test_speakers) == test_spk and f.speaker_independent
        fit, val = validation_split(f.train, SPEAKERS, fraction=0.3, seed=0)
        assert not {SPEAKERS[i] for i in fit} & {SPEAKERS[i] for i in val}
        assert sorted(np.concatenate([fit, val])) == sorted(f.train)


def test_random_split_is_named_and_flagged():
    splits = make_folds(SPEAKERS, LABELS, RANDOM_SPLIT)
    assert all(not f.speaker_independent for f in splits)


def test_errors():
    with pytest.raises(ConfigError, match="folds"):
        make_folds(SPEAKERS, LABELS, "ten")
    with pytest.raises(ConfigError):
        make_folds(SPEAKERS, LABELS, 8)
    with pytest.raises(CorpusError, match="no speaker"):
        make_folds([None] * 4, ["a", "b"] * 2, 2)


def test_leave_one_corpus_out_tests_every_file_of_one_corpus():
    corpora = ["a", "a", "b", "b", "b", "c"]
    speakers = [f"{c}:{i % 2}" for i, c in enumerate(corpora)]
    folds = make_folds(speakers, ["x"] * 6, "loco", corpora=corpora)
    assert [f.test_corpus for f in folds] == ["a", "b", "c"]
    assert [f.test.tolist() for f in folds] == [[0, 1], [2, 3, 4], [5]]
    for f in folds:
        assert not {corpora[i] for i in f.train} & {f.test_corpus}
        assert sorted(f.train.tolist() + f.test.tolist()) == list(range(6))
    with pytest.raises(ConfigError, match="at least two corpora"):
        make_folds(speakers, ["x"] * 6, "loco", corpora=["a"] * 6)

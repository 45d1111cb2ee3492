import numpy as np
import pytest

from emovox import experiment
from emovox.errors import CorpusError
from emovox.export import OnnxModel, export
from emovox.features import FeatureConfig
from emovox.normalize import Stats, by_speaker
from emovox.predict import Predictor
from emovox.segment import VadConfig
from emovox.settings import Settings
from emovox.train import TrainConfig

from .conftest import PITCH, tone, write


def test_by_speaker_zscores_each_speakers_frames():
    rng = np.random.default_rng(0)
    feats = [rng.normal(5 * (i % 2), 1 + i % 2, (3, 20 + i)).astype(np.float32) for i in range(6)]
    speakers = ["a", "b"] * 3
    out = by_speaker(feats, speakers)
    for s in "ab":
        x = np.concatenate([o for o, sp in zip(out, speakers, strict=True) if sp == s], axis=1)
        np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)
        np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(Stats().update(feats[0]).apply(feats[0]).mean(axis=1), 0, atol=1e-5)
    with pytest.raises(CorpusError, match="speaker"):
        by_speaker(feats[:2], ["a", None])


def test_speaker_normalised_run_predicts_adapts_and_says_so(ravdess_dir, tmp_path):
    settings = Settings(features=FeatureConfig(n_mels=32, clip_s=1.0),
                        train=TrainConfig(model="cnn", epochs=3, batch_size=8), speaker_norm=True)
    metrics = experiment.train(ravdess_dir, tmp_path / "run", settings, cache_dir=tmp_path / "c", progress=False)
    assert "speaker norm" in metrics["name"]
    p = Predictor.load(tmp_path / "run")
    assert p.speaker_norm
    assert OnnxModel(export(tmp_path / "run", tmp_path / "m.onnx")).spec.speaker_norm  # the export says so too
    clips = [(tone(PITCH[e], 1.2, 16000, seed=i), 16000) for i, e in enumerate(PITCH)]
    own = p.predict(clips)
    adapted = p.adapt(clips).predict(clips)
    assert len(own) == len(adapted) == 4 and own != adapted
    y = np.concatenate([np.zeros(16000, np.float32), tone(PITCH["sad"], 1.5, 16000), np.zeros(16000, np.float32)])
    p.speaker_stats_ = None
    rows = p.timeline(write(tmp_path / "t.wav", y, 16000), vad=VadConfig(method="energy"))  # tones: not speech
    assert len(rows) == 1


def test_pooled_corpora_get_groups(ravdess_dir, tmp_path):
    from emovox.dataset import load_dataset

    from .conftest import write as write_audio

    emodb = tmp_path / "emodb" / "wav"
    for name, e in [("03a01Wa", "angry"), ("08a01Na", "neutral"), ("09a01Ta", "sad")]:
        write_audio(emodb / f"{name}.wav", tone(PITCH[e], 1.0, 16000), 16000)
    ds = load_dataset([("ravdess", ravdess_dir), ("emodb", tmp_path / "emodb")],
                      features=FeatureConfig(n_mels=32), cache_dir=None, progress=False, classes=("angry", "sad"))
    assert set(ds.labels) == {"angry", "sad"}
    corpora = [u.corpus for u in ds.utterances]
    assert corpora.count("emodb") == 2
    assert ds.groups.tolist() == [0 if c == "emodb" else 1 for c in corpora]

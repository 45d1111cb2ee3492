"""The checkpoint spec: typed, versioned, round-trips, and reads every earlier checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch

from emovox import audio, models
from emovox.errors import CheckpointError
from emovox.export import OnnxModel, to_onnx_bytes
from emovox.features import FeatureConfig
from emovox.models import ModelSpec
from emovox.predict import Predictor, score_features

DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello.flac"
# the bundled model of commit fc9959a (a cnn; its feature_config predates the utterance keys)
FORMAT1_CNN = DATA / "model-format1-cnn.pt"
# its probabilities on examples/hello.flac, computed by the emovox of that time
FORMAT1_HELLO = [0.9293279647827148, 0.014308356447145343, 0.025537439854815602, 0.001382832444505766,
                 0.006342764892906416, 0.023100662045180798]


def _spec(**kw) -> ModelSpec:
    base = dict(model="cnn_small", model_kwargs={"n_features": 8, "n_frames": 16, "n_classes": 2},
                labels=("sad", "angry"), features=FeatureConfig(n_mels=8), speaker_norm=True, corpora=("emodb",))
    return ModelSpec(**(base | kw))


def test_round_trips_through_a_dict():
    spec = _spec()
    data = spec.to_dict()
    assert data["format"] == models.FORMAT and data["speaker_norm"] is True
    assert ModelSpec.from_dict(data) == spec
    assert (spec.n_features, spec.n_frames, spec.n_classes) == (8, 16, 2)


def test_is_frozen_and_checked_when_built():
    with pytest.raises(AttributeError):
        _spec().speaker_norm = False  # type: ignore[misc]
    with pytest.raises(CheckpointError, match="n_frames"):
        ModelSpec("cnn", {"n_features": 8, "n_classes": 2})
    with pytest.raises(CheckpointError, match="3 labels for 2 classes"):
        _spec(labels=("a", "b", "c"))
    with pytest.raises(CheckpointError, match="unknown model format"):
        ModelSpec.from_dict(_spec().to_dict() | {"format": "emovox-model/99"})


def test_save_and_load_keep_every_field(tmp_path):
    spec = _spec()
    models.save(tmp_path / "m.pt", models.build(spec.model, **spec.model_kwargs), spec=spec)
    _, loaded = models.load(tmp_path / "m.pt")
    assert isinstance(loaded, ModelSpec) and loaded.emovox_version
    assert loaded == ModelSpec.from_dict(spec.to_dict() | {"emovox_version": loaded.emovox_version})


def test_onnx_metadata_keeps_speaker_normalisation():
    spec = _spec()
    onnx = OnnxModel(to_onnx_bytes(models.build(spec.model, **spec.model_kwargs).eval(), spec))
    assert onnx.spec.speaker_norm and onnx.spec.labels == spec.labels and onnx.spec.features == spec.features
    assert Predictor(onnx, onnx.spec).speaker_norm


def test_a_format1_checkpoint_of_an_earlier_emovox_still_loads_and_predicts_the_same():
    p = Predictor.load(FORMAT1_CNN)
    assert p.spec.model == "cnn" and p.spec.corpora == ("emodb", "ravdess") and not p.speaker_norm
    assert p.features.utterance == FeatureConfig().utterance  # keys it lacked take their defaults
    y = audio.load(EXAMPLE, sr=p.features.sample_rate)
    probs = score_features(p.model, p.extract([y]), p.n_frames)[0]
    np.testing.assert_allclose(probs, FORMAT1_HELLO, atol=1e-6)
    assert p.predict(EXAMPLE)["label"] == "neutral"


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    torch.save({"weights": 1}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not an emovox model checkpoint"):
        models.load(tmp_path / "x.pt")

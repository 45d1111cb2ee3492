"""Self-supervised encoders as backbones, with tiny randomly initialised configs (no download)."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel  # noqa: E402

from emovox import experiment, ssl  # noqa: E402
from emovox.errors import ConfigError  # noqa: E402
from emovox.export import (
    OnnxModel,  # noqa: E402
    export,  # noqa: E402
)
from emovox.predict import Predictor  # noqa: E402
from emovox.settings import Settings  # noqa: E402

from .conftest import PITCH, tone  # noqa: E402

FAMILIES = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel),
            "wavlm": (WavLMConfig, WavLMModel)}
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
            conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _save_tiny(family: str, root) -> object:
    config_cls, model_cls = FAMILIES[family]
    torch.manual_seed(0)
    path = root.mktemp(family)
    model_cls(config_cls(**TINY)).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=list(FAMILIES))
def encoder_dir(request, tmp_path_factory):
    """Each family in turn."""
    return _save_tiny(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    """One family, for behaviour that does not depend on the family."""
    return _save_tiny("hubert", tmp_path_factory)


def test_train_evaluate_predict_export(encoder_dir, ravdess_dir, tmp_path):
    settings = Settings.build(None, backbone=str(encoder_dir), epochs=2)
    assert settings.features.kind == "ssl" and settings.train.model == "ssl"
    assert settings.train.model_kwargs == {}  # the encoder is read when training starts, not by the config
    kw = dict(cache_dir=tmp_path / "cache", progress=False)
    m = experiment.evaluate(ravdess_dir, tmp_path / "cv", settings, folds=2, **kw)
    assert {"ua", "wa", "macro_f1", "folds"} <= set(m)
    experiment.train(ravdess_dir, tmp_path / "run", settings, **kw)
    p = Predictor.load(tmp_path / "run")
    r = p.predict((tone(PITCH["sad"], 1.5, 16000), 16000))
    assert set(r["scores"]) == {"neutral", "happy", "sad", "angry"}
    onnx = OnnxModel(export(tmp_path / "run", tmp_path / "m.onnx"))
    feats = torch.randn(3, p.spec.n_features, p.n_frames)
    with torch.no_grad():
        assert (torch.softmax(onnx(feats), 1) - torch.softmax(p.model(feats), 1)).abs().max() <= 1e-4
    onnx_pred = Predictor.load(tmp_path / "run", backend="onnx").predict((tone(PITCH["sad"], 1.5, 16000), 16000))
    assert onnx_pred["label"] == r["label"]


def test_layer_cache_is_reused(hubert_dir, ravdess_dir, tmp_path, monkeypatch):
    encoder_dir = hubert_dir
    settings = Settings.build(None, backbone=str(encoder_dir), epochs=2)
    kw = dict(folds=2, cache_dir=tmp_path / "cache", progress=False)
    experiment.evaluate(ravdess_dir, tmp_path / "a", settings, **kw)
    encoder = ssl.load_encoder(str(encoder_dir))
    calls = []
    real = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = experiment.evaluate(ravdess_dir, tmp_path / "b", settings, **kw)
    assert calls == []  # no second encoder pass: every hidden state came from the cache
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["ua"] == second["ua"]


def test_long_input_is_chunked(hubert_dir):
    encoder_dir = hubert_dir
    y = tone(150, 7.0, 16000)
    whole = ssl.hidden_states([y], str(encoder_dir), chunk_s=100.0)[0]
    chunked = ssl.hidden_states([y], str(encoder_dir), chunk_s=2.0)[0]
    assert whole.shape[0] == chunked.shape[0] == 3 * 32
    assert abs(whole.shape[1] - chunked.shape[1]) <= 2 * 4  # each of 4 chunks loses at most the edge frames


def test_hub_name_without_network_says_how_to_use_a_local_path(monkeypatch):
    monkeypatch.delenv("EMOVOX_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(ConfigError, match="--backbone DIR"):
        ssl.load_encoder("facebook/wav2vec2-base")


def test_finetune_mode_trains_top_layers_and_loads_without_the_backbone(hubert_dir, ravdess_dir, tmp_path):
    import shutil

    backbone = tmp_path / "backbone"
    shutil.copytree(hubert_dir, backbone)
    doc = {"features": {"clip_s": 1.0}, "train": {"model_kwargs": {"unfreeze": 1}}}
    settings = Settings.from_doc(doc, backbone=str(backbone), ssl_mode="finetune", epochs=2)
    assert settings.features.kind == "waveform" and settings.train.model == "ssl_finetune"
    experiment.train(ravdess_dir, tmp_path / "run", settings, cache_dir=tmp_path / "cache", progress=False)
    pretrained = ssl.load_encoder(str(backbone)).state_dict()
    shutil.rmtree(backbone)  # the checkpoint must not need it
    p = Predictor.load(tmp_path / "run")
    tuned = p.model.body.encoder.state_dict()
    def same(prefix):
        return all(torch.equal(tuned[k], pretrained[k]) for k in tuned if k.startswith(prefix))

    assert same("feature_projection.") and same("encoder.layers.0.")  # frozen
    assert not same("encoder.layers.1.")  # the unfrozen top layer learned
    r = p.predict((tone(PITCH["angry"], 1.5, 16000), 16000))
    assert set(r["scores"]) == {"neutral", "happy", "sad", "angry"}
    onnx = OnnxModel(export(tmp_path / "run", tmp_path / "whole.onnx"))  # encoder and head in one graph
    x = torch.from_numpy(0.1 * np.random.default_rng(0).standard_normal((2, 1, p.n_frames)).astype(np.float32))
    with torch.no_grad():
        assert (torch.softmax(onnx(x), 1) - torch.softmax(p.model(x), 1)).abs().max() <= 1e-4

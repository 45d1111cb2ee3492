"""An adaptive model: two heads in one checkpoint, one clip as it is, a speaker's audio adapted."""

import numpy as np
import pytest

from emovox import experiment, models
from emovox.features import FeatureConfig
from emovox.normalize import Prior, Stats, by_speaker
from emovox.predict import Predictor, score_features
from emovox.settings import Settings
from emovox.train import TrainConfig

from .conftest import PITCH, make_ravdess, tone


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("adaptive")
    settings = Settings(features=FeatureConfig(n_mels=32, clip_s=1.0),
                        train=TrainConfig(model="cnn_small", epochs=4, batch_size=8, lr=3e-3, adapt_prior=2.0))
    metrics = experiment.train(make_ravdess(root / "ravdess"), root / "run", settings, cache_dir=root / "cache",
                               progress=False)
    return root / "run", metrics


def test_train_saves_both_heads_and_the_training_speakers_prior_in_one_model(adaptive_run):
    run, metrics = adaptive_run
    model, spec = models.load(run / "model.pt")
    assert isinstance(model, models.Adaptive) and spec.model == "adaptive" and not spec.speaker_norm
    assert model.prior_frames == 2.0 and (model.prior_std > 0).all() and model.prior_mean.abs().sum() > 0
    assert set(metrics) >= {"single", "adapted", "validation"}  # each head's figures; the single one's on top
    assert metrics["validation"] == metrics["single"]["validation"]
    assert not (run / "single" / "checkpoint.pt").exists()


def _probs(results: list[dict]) -> np.ndarray:
    return np.array([list(r["scores"].values()) for r in results])


def test_one_clip_takes_the_single_head_and_statistics_the_adapted_one(adaptive_run):
    run, _ = adaptive_run
    model, _ = models.load(run / "model.pt")
    p = Predictor.load(run)
    assert p.can_adapt
    clips = [tone(PITCH[e], 1.3, 16000, seed=40 + i) for i, e in enumerate(PITCH)]
    feats = p.extract(clips)
    stats = Stats.of(feats)
    single = score_features(model.single, feats, p.n_frames)
    adapted = score_features(model.adapted, [stats.apply(f, p.prior) for f in feats], p.n_frames)
    assert not np.array_equal(single, adapted)  # two heads (both sure of these clean tones), two answers
    np.testing.assert_allclose(_probs(p.predict_signals(clips)), single, atol=1e-6)  # nothing pooled without stats
    np.testing.assert_allclose(_probs(p.score(feats, [1.3] * 4, stats=stats)), adapted, atol=1e-6)
    mixed = _probs(p.score(feats, [1.3] * 4, stats=[stats, None, stats, None]))  # per item, as the service batches
    np.testing.assert_allclose(mixed, [adapted[0], single[1], adapted[2], single[3]], atol=1e-6)
    np.testing.assert_allclose(_probs(p.adapt(clips, sr=16000).predict_signals(clips)), adapted, atol=1e-6)


def test_a_single_clip_adapts_toward_the_prior_instead_of_failing(adaptive_run):
    run, _ = adaptive_run
    p = Predictor.load(run)
    one = Stats.of(p.extract([tone(PITCH["sad"], 1.3, 16000, seed=9)]))
    mean, std = one.moments(p.prior)
    assert np.isfinite(mean).all() and (std > 0).all()


def test_shrinkage_moves_the_mean_from_the_prior_to_the_speaker_as_audio_grows_and_keeps_the_spread():
    rng = np.random.default_rng(0)
    prior = Prior(np.zeros(3), np.ones(3), frames=10)
    feats = [rng.normal(5.0, 2.0, (3, 1)) for _ in range(1000)]
    few, many = Stats.of(feats[:2]).moments(prior), Stats.of(feats).moments(prior)
    assert np.all(np.abs(few[0]) < 2.0) and np.allclose(many[0], 5.0, atol=0.3)
    # a speaker's own spread is as skewed as their audio: the prior's is kept
    assert np.array_equal(few[1], prior.std) and np.array_equal(many[1], prior.std)
    assert np.allclose(Stats().moments(prior)[0], 0.0) and np.allclose(Stats().moments(prior)[1], 1.0)


def test_by_speaker_with_a_spread_centres_each_speaker_and_divides_by_it():
    feats = [np.array([[1.0, 3.0]]), np.array([[5.0, 9.0]])]
    out = by_speaker(feats, ["a", "b"], spread=np.array([2.0]))
    np.testing.assert_allclose(out[0], [[-0.5, 0.5]], atol=1e-4)
    np.testing.assert_allclose(out[1], [[-1.0, 1.0]], atol=1e-4)


def test_the_onnx_backend_scores_both_heads_like_torch(adaptive_run):
    run, _ = adaptive_run
    by_torch, by_onnx = Predictor.load(run), Predictor.load(run, backend="onnx")
    clips = [tone(PITCH[e], 1.3, 16000, seed=60 + i) for i, e in enumerate(PITCH)]
    stats = Stats.of(by_torch.extract(clips))
    for stats_ in (None, stats):
        for a, b in zip(by_torch.predict_signals(clips, stats=stats_), by_onnx.predict_signals(clips, stats=stats_),
                        strict=True):
            np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=1e-4)


def test_only_the_single_clip_head_trains_on_speaker_swaps(tmp_path, monkeypatch):
    # the adapted head's inputs are centred per speaker, so swapping centres would do nothing there
    seen, real = {}, experiment.fit

    def spy(*args, cfg, description, **kwargs):
        seen[description] = cfg.speaker_swap
        return real(*args, cfg=cfg, description=description, **kwargs)

    monkeypatch.setattr(experiment, "fit", spy)
    settings = Settings(features=FeatureConfig(n_mels=32, clip_s=1.0),
                        train=TrainConfig(model="cnn_small", epochs=1, batch_size=8, adapt_prior=2.0, speaker_swap=1))
    experiment.train(make_ravdess(tmp_path / "ravdess"), tmp_path / "run", settings, cache_dir=tmp_path / "cache",
                     progress=False)
    assert seen == {"single": 1, "adapted": 0}

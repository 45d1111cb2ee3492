import numpy as np
import pytest
import torch

from emovox import models
from emovox.evaluate import scores
from emovox.features import FeatureConfig, extract_batch
from emovox.predict import score_features
from emovox.train import TrainConfig, class_weights, corpus_classes, fit, spec_augment

from .conftest import tone

CFG = FeatureConfig(n_mels=32, clip_s=0.5)


@pytest.fixture(scope="module")
def tones():
    """4 pitch classes x 6 'speakers' x 4 takes; speakers 4 and 5 are the test set."""
    signals, y, spk = [], [], []
    for s in range(6):
        for c, pitch in enumerate((110.0, 170.0, 260.0, 400.0)):
            for k in range(4):
                seed = 1000 * s + 10 * c + k
                signals.append(tone(pitch * (1 + 0.03 * (s - 3)), 0.6 + 0.1 * k, 16000, seed=seed))
                y.append(c)
                spk.append(s)
    return extract_batch(signals, CFG), np.array(y), np.array(spk)


def test_class_weights_balanced():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / (2 * 3), 4 / (2 * 1), 0.0])
    from sklearn.utils.class_weight import compute_class_weight

    y = np.random.default_rng(0).integers(0, 5, 200)
    np.testing.assert_allclose(class_weights(y, 5), compute_class_weight("balanced", classes=np.arange(5), y=y))


@pytest.mark.parametrize("name", [m for m in models.MODELS if m != "ssl_finetune"])  # that one: test_ssl.py
def test_each_model_learns_a_separable_task(tones, name):
    feats, y, spk = tones
    fit_idx, val_idx, test_idx = np.where(spk < 3)[0], np.where(spk == 3)[0], np.where(spk >= 4)[0]
    small = {"bilstm": {"hidden": 32}, "crnn": {"hidden": 32}, "ssl": {"n_layers": 1}}.get(name, {})
    cfg = TrainConfig(model=name, model_kwargs=small, epochs=15, batch_size=8, lr=3e-3, patience=15)
    result = fit(feats, y, fit_idx, val_idx, n_classes=4, n_frames=CFG.clip_frames, cfg=cfg, progress=False)
    pred = score_features(result.model, [feats[i] for i in test_idx], CFG.clip_frames).argmax(1)
    assert scores(y[test_idx], pred, 4).ua >= 0.9, name
    assert len(result.history) >= result.best_epoch >= 1


def test_resume_after_interruption_gives_identical_weights(tones, tmp_path, monkeypatch):
    from emovox import train as train_mod

    feats, y, spk = tones
    fit_idx, val_idx = np.where(spk < 4)[0], np.where(spk >= 4)[0]
    cfg = TrainConfig(model="cnn", epochs=4, patience=10)
    kw = dict(n_classes=4, n_frames=CFG.clip_frames, progress=False, cfg=cfg)
    full = fit(feats, y, fit_idx, val_idx, **kw)

    real_ua, calls = train_mod._ua, []

    def dies_in_epoch_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after epoch 2's checkpoint, in the middle of epoch 3
        return real_ua(*args)

    monkeypatch.setattr(train_mod, "_ua", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(feats, y, fit_idx, val_idx, checkpoint_dir=tmp_path, **kw)
    monkeypatch.setattr(train_mod, "_ua", real_ua)
    torch.manual_seed(12345)  # the resumed run must not depend on the global state it starts with
    resumed = fit(feats, y, fit_idx, val_idx, checkpoint_dir=tmp_path, **kw)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_spec_augment_masks_but_keeps_shape():
    x = torch.randn(4, 32, 50)
    out = spec_augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    assert (out == x).float().mean() > 0.5


def test_checkpoint_roundtrip_and_corrupt_file(tmp_path):
    from emovox.errors import CheckpointError

    net = models.build("crnn", n_features=32, n_frames=20, n_classes=3)
    kwargs = {"n_features": 32, "n_frames": 20, "n_classes": 3}
    spec = {"model": "crnn", "model_kwargs": kwargs, "labels": ["a", "b", "c"]}
    models.save(tmp_path / "m.pt", net, spec=spec)
    loaded, got = models.load(tmp_path / "m.pt")
    x = torch.randn(2, 32, 20)
    torch.testing.assert_close(loaded(x), net.eval()(x))
    assert got.labels == ("a", "b", "c")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: corrupt checkpoint"):
        models.load(tmp_path / "bad.pt")


def test_a_corpus_only_sees_its_own_classes_in_the_loss():
    y = np.array([0, 1, 2, 0, 1, 0, 1, 2])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])  # corpus 1 has class 2 only outside training
    fit_idx = np.arange(7)
    allowed = corpus_classes(y, fit_idx, groups, 3)
    assert allowed[0].tolist() == [True, True, True] and allowed[4].tolist() == [True, True, False]
    assert corpus_classes(y, np.arange(8), groups, 3) is None  # every corpus has every class
    assert corpus_classes(y, fit_idx, None, 3) is None

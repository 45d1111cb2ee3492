"""Quick checks on the real corpora in ../shared/data (skipped when they are absent).

Each trains a small model on speakers it then never tests on, and asserts it is far above
chance; the full benchmarks are in benchmarks/accuracy.py and docs/benchmarks.md.
"""

import numpy as np

from emovox import experiment
from emovox.dataset import load_dataset, model_inputs
from emovox.evaluate import scores
from emovox.features import FeatureConfig
from emovox.predict import score_features
from emovox.settings import Settings
from emovox.train import TrainConfig, fit


def test_cnn_on_ravdess_actors_it_never_heard(real_data, tmp_path):
    """4 classes of RAVDESS; fit on actors 7-24, early-stop on 5-6, test on 1-4."""
    cfg = FeatureConfig()
    train = TrainConfig(model="cnn", epochs=8)
    ds = load_dataset(real_data / "ravdess", corpus="ravdess", features=cfg,
                      classes=("neutral", "happy", "sad", "angry"), cache_dir=tmp_path, jobs=2, progress=False)
    feats, _ = model_inputs(ds, speaker_norm=True)
    actor = np.array([int(s.split(":")[1]) for s in ds.speakers])
    test, val, fit_idx = np.where(actor <= 4)[0], np.where((actor == 5) | (actor == 6))[0], np.where(actor > 6)[0]
    result = fit(feats, ds.y, fit_idx, val, n_classes=4, n_frames=cfg.clip_frames, cfg=train, progress=False)
    pred = score_features(result.model, [feats[i] for i in test], cfg.clip_frames).argmax(1)
    ua = scores(ds.y[test], pred, 4).ua
    assert ua >= 0.5, ua  # chance: 0.25; measured 0.68


def test_best_model_beats_egemaps_svm_on_emodb(real_data, tmp_path):
    """eGeMAPS + GE2E vectors -> MLP, speaker-normalised, 5 speaker folds of EMO-DB, beside the
    equally normalised eGeMAPS + SVM on the same folds."""
    settings = Settings.build(model="mlp", speaker_norm=True)
    m = experiment.evaluate(real_data / "emodb", tmp_path / "run", settings, corpus="emodb", folds=5,
                            with_baseline=True, cache_dir=tmp_path / "cache", jobs=2, progress=False)
    assert m["speaker_independent"] and len(m["folds"]) == 5
    assert m["ua"] >= 0.75, m["ua"]  # chance: 1/7; measured 0.844
    assert m["ua"] > m["baseline"]["ua"], (m["ua"], m["baseline"]["ua"])  # measured 0.771


def test_default_recipe_on_a_corpus_it_never_heard(real_data, tmp_path):
    """Leave one corpus out between EMO-DB (German) and eight RAVDESS actors (English), the four
    classes they share, with the default recipe (kernel machine over utterance vectors)."""
    ravdess = tmp_path / "ravdess"
    for actor in range(1, 9):
        folder = ravdess / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for clip in (real_data / "ravdess" / folder.name).iterdir():
            (folder / clip.name).symlink_to(clip)
    settings = Settings.build(classes="angry,happy,neutral,sad")
    m = experiment.evaluate([("emodb", real_data / "emodb"), ("ravdess", ravdess)], tmp_path / "run", settings,
                            folds="loco", with_baseline=True, cache_dir=tmp_path / "cache", jobs=2, progress=False)
    held_out = {f["test_corpus"]: f["ua"] for f in m["folds"]}
    assert set(held_out) == {"emodb", "ravdess"}
    assert min(held_out.values()) >= 0.4, held_out  # chance: 0.25
    assert m["mean"]["ua"] > m["baseline"]["mean"]["ua"], (m["mean"], m["baseline"]["mean"])

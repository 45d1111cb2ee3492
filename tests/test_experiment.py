"""Cross-validation orchestration: parallel folds, resume, configuration files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from emovox import baseline, experiment
from emovox.cache import extract_files
from emovox.dataset import load_dataset
from emovox.errors import ConfigError
from emovox.features import FeatureConfig
from emovox.settings import Settings
from emovox.splits import make_folds
from emovox.train import TrainConfig

SETTINGS = Settings(features=FeatureConfig(n_mels=32, clip_s=1.0),
                    train=TrainConfig(model="cnn", epochs=3, batch_size=8, lr=3e-3))


def _strip(metrics):
    return {k: v for k, v in metrics.items() if k not in ("skipped",)}


def test_parallel_folds_equal_serial(ravdess_dir, tmp_path):
    kw = dict(folds=2, cache_dir=tmp_path / "c", progress=False, threads=1)
    serial = experiment.evaluate(ravdess_dir, tmp_path / "serial", SETTINGS, jobs=1, **kw)
    parallel = experiment.evaluate(ravdess_dir, tmp_path / "parallel", SETTINGS, jobs=2, **kw)
    assert _strip(serial) == _strip(parallel)


def test_a_run_dir_of_another_recipe_is_refused_not_read_back(ravdess_dir, tmp_path):
    kw = dict(folds=2, cache_dir=tmp_path / "c", progress=False, threads=1)
    first = experiment.evaluate(ravdess_dir, tmp_path / "run", SETTINGS, **kw)
    assert experiment.evaluate(ravdess_dir, tmp_path / "run", SETTINGS, **kw)["ua"] == first["ua"]  # resumes
    other = Settings(features=SETTINGS.features, train=TrainConfig(model="cnn", epochs=4, batch_size=8, lr=3e-3))
    with pytest.raises(ConfigError, match="another train"):
        experiment.evaluate(ravdess_dir, tmp_path / "run", other, **kw)


def test_settings_file_roundtrip_and_errors(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("features: {n_mels: 40}\ntrain: {model: crnn}\n"
                   "data: {classes: [Anger, sad], merge: {calm: neutral}}\n")
    s = Settings.build(cfg, epochs=7)
    assert s.features.n_mels == 40 and s.train.model == "crnn" and s.train.epochs == 7
    assert s.classes == ("angry", "sad") and s.merge == {"calm": "neutral"}
    assert Settings.from_doc(json.loads(json.dumps(s.to_dict()))) == s
    cfg.write_text("train: {modle: cnn}\n")
    with pytest.raises(ConfigError, match="modle"):
        Settings.build(cfg)


def test_speaker_norm_is_a_data_setting_and_the_old_train_key_still_reads(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {model: cnn, speaker_norm: true}\n")  # the spelling of configs before the move
    old = Settings.build(cfg)
    assert old.speaker_norm and old.train.model == "cnn" and not hasattr(old.train, "speaker_norm")
    cfg.write_text("train: {model: cnn}\ndata: {speaker_norm: true}\n")
    new = Settings.build(cfg)
    assert new == old and new.to_dict()["data"]["speaker_norm"] is True and "speaker_norm" not in new.to_dict()["train"]
    assert not Settings.build(cfg, speaker_norm=False).speaker_norm  # --no-speaker-norm wins
    assert Settings.from_doc(json.loads(json.dumps(new.to_dict()))) == new
    cfg.write_text("train: {speaker_norm: true}\ndata: {speaker_norm: false}\n")
    with pytest.raises(ConfigError, match="both data: and train:"):
        Settings.build(cfg)


def test_resume_reads_speaker_norm_from_an_old_run_dirs_train_section(tmp_path, monkeypatch):
    """A run dir written before speaker_norm moved has it under train: (the previous bundled
    model's run record is one)."""
    doc = json.loads((Path(__file__).parent / "data" / "old-run-config.json").read_text())
    assert "speaker_norm" in doc["train"] and "speaker_norm" not in doc["data"]
    doc["train"]["speaker_norm"] = True
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(doc))
    seen = []
    monkeypatch.setattr(experiment, "train", lambda data, out, settings, **kw: seen.append(settings))
    experiment.resume(tmp_path / "run", device="cpu")
    assert seen[0].speaker_norm and seen[0].train.model == "kernel" and seen[0].classes


def _train_cmd(data, out, cache, epochs):
    return [sys.executable, "-m", "emovox.cli", "train", "--data", str(data), "--out", str(out), "--model", "cnn",
            "--epochs", str(epochs), "--cache-dir", str(cache), "--quiet", "--config", str(out.parent / "t.yaml")]


def test_sigkill_then_resume_gives_the_uninterrupted_weights(ravdess_dir, tmp_path):
    (tmp_path / "t.yaml").write_text("features: {n_mels: 32, clip_s: 1.0}\ntrain: {batch_size: 4, patience: 50}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    epochs = 40  # an epoch of this tiny set can take 40 ms: enough of them that the kill lands mid-run
    subprocess.run(_train_cmd(ravdess_dir, tmp_path / "full", tmp_path / "c", epochs), check=True, env=env)
    victim = subprocess.Popen(_train_cmd(ravdess_dir, tmp_path / "killed", tmp_path / "c", epochs), env=env)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.05)  # into the next epoch
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert ckpt.exists() and not (tmp_path / "killed" / "model.pt").exists()
    r = subprocess.run([sys.executable, "-m", "emovox.cli", "train", "--resume", str(tmp_path / "killed"),
                        "--cache-dir", str(tmp_path / "c"), "--quiet"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    full = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state_dict"]
    assert max((full[k].float() - resumed[k].float()).abs().max().item() for k in full) <= 1e-6


def test_sigterm_mid_epoch_checkpoints_the_step_and_resumes_exactly(ravdess_dir, tmp_path):
    (tmp_path / "t.yaml").write_text("features: {n_mels: 32, clip_s: 1.0}\ntrain: {batch_size: 4, patience: 50}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    epochs = 40  # an epoch of this tiny set can take 40 ms: enough of them that the signal lands mid-run
    subprocess.run(_train_cmd(ravdess_dir, tmp_path / "full", tmp_path / "c", epochs), check=True, env=env)
    proc = subprocess.Popen(_train_cmd(ravdess_dir, tmp_path / "run", tmp_path / "c", epochs), env=env,
                            stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.01)  # inside epoch 2 (the first checkpoint is written as epoch 1 ends)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"emovox train --resume {tmp_path / 'run'}" in " ".join(err.split())
    state = torch.load(ckpt, weights_only=False)["state"]
    assert state["step"] > 0 and state["order"] is not None  # the position inside the epoch
    home = tmp_path / "home"  # --resume must find the run's --cache-dir, not fall back to ~/.cache
    r = subprocess.run([sys.executable, "-m", "emovox", "train", "--resume", str(tmp_path / "run"), "--quiet"],
                       env={**env, "HOME": str(home)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (home / ".cache" / "emovox").exists()
    full = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_baseline_is_speaker_normalised_like_the_model(ravdess_dir, tmp_path):
    ds = load_dataset(ravdess_dir, features=SETTINGS.features, cache_dir=tmp_path / "c", progress=False)
    splits = make_folds(ds.speakers, [str(v) for v in ds.y], 2)
    kw = dict(cache_dir=tmp_path / "c", jobs=1, progress=False, seed=0, independent=True)
    normed, plain = (experiment.run_baseline(ds, splits, speaker_norm=norm, **kw) for norm in (True, False))
    assert normed["name"] == "eGeMAPSv02 + SVM + speaker norm" and plain["name"] == "eGeMAPSv02 + SVM"
    assert normed["confusion_matrix"] != plain["confusion_matrix"]
    raw = extract_files([u.path for u in ds.utterances], baseline.FEATURES, cache_dir=tmp_path / "c",
                        progress=False).features
    x = np.stack([raw[u.path][:, 0] for u in ds.utterances]).astype(np.float64)
    speakers = np.array(ds.speakers)
    for s in set(ds.speakers):  # z-score each speaker's functionals by hand
        rows = speakers == s
        x[rows] = (x[rows] - x[rows].mean(axis=0)) / (x[rows].std(axis=0) + 1e-5)
    expected = np.zeros_like(ds.y)
    for fold in splits:
        expected[fold.test] = baseline.fit_predict(x.astype(np.float32), ds.y, fold.train, fold.test, seed=0)
    assert normed["confusion_matrix"] == confusion_matrix(ds.y, expected, labels=range(len(ds.labels))).tolist()

"""Shared fixtures: synthetic audio with controlled pitch and energy, corpus-shaped folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # small models: one thread is fastest and immune to a busy machine

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# A pitch per synthetic "emotion": models must tell them apart from the spectrum.
PITCH = {"neutral": 140.0, "happy": 260.0, "sad": 110.0, "angry": 200.0}


def tone(pitch: float, seconds: float, sr: int, *, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A voiced-like harmonic tone with vibrato and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = pitch * (1 + 0.03 * np.sin(2 * np.pi * 5 * t) + 0.02 * rng.standard_normal())
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = np.minimum(1, np.minimum(t, t[-1] - t) * 20)
    y = amp * y * env / 2 + 0.003 * rng.standard_normal(len(t))
    return y.astype(np.float32)


def same_features(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float32 rounding: BLAS picks its kernels by matrix shape (OpenBLAS in
    numpy 2.4 does for these sizes), so a clip featurised in a batch may differ from the
    same clip alone in the last bit; padding or batching bugs move far more than that."""
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def write(path: Path, y: np.ndarray, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr)
    return path


def make_ravdess(root: Path) -> Path:
    """RAVDESS layout: 4 actors x 4 emotions x 3 files, with one stereo 48 kHz file,
    one corrupt file, one silent file, and one song file (must be ignored)."""
    codes = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05"}
    for actor in range(1, 5):
        for i, (emo, code) in enumerate(codes.items()):
            for rep in range(1, 4):
                name = f"03-01-{code}-01-01-{rep:02d}-{actor:02d}.wav"
                seed = actor * 100 + i * 10 + rep
                write(root / f"Actor_{actor:02d}" / name, tone(PITCH[emo], 1.2 + 0.1 * rep, 16000, seed=seed), 16000)
    stereo = tone(PITCH["happy"], 1.5, 48000, seed=7)
    write(root / "Actor_01" / "03-01-03-02-02-01-01.wav", np.stack([stereo, 0.5 * stereo], axis=1), 48000)
    (root / "Actor_02" / "03-01-05-02-02-01-02.wav").write_bytes(b"RIFF\x00\x00not really audio")
    write(root / "Actor_03" / "03-01-04-02-02-01-03.wav", np.zeros(16000, np.float32), 16000)
    write(root / "Actor_04" / "03-02-05-01-01-01-04.wav", tone(300, 1.0, 16000), 16000)  # song: ignored
    return root


def make_nemo(root: Path) -> Path:
    """nEMO layout: 2 speakers x 4 emotions x 3 files."""
    for speaker in ("EB0", "KS0"):
        for i, (emo, label) in enumerate((("neutral", "neutral"), ("happiness", "happy"),
                                          ("sadness", "sad"), ("anger", "angry"))):
            for n in range(3):
                write(root / "samples" / f"{speaker}_{emo}_{n}.wav",
                      tone(PITCH[label], 1.3, 16000, seed=10 * i + n + (speaker == "KS0")), 16000)
    return root


@pytest.fixture
def ravdess_dir(tmp_path: Path) -> Path:
    return make_ravdess(tmp_path / "ravdess")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run dir: a small CNN trained for a few epochs on the synthetic corpus."""
    from emovox import experiment
    from emovox.features import FeatureConfig
    from emovox.settings import Settings
    from emovox.train import TrainConfig

    root = tmp_path_factory.mktemp("tiny")
    corpus = make_ravdess(root / "ravdess")
    settings = Settings(features=FeatureConfig(n_mels=32, clip_s=1.0),
                        train=TrainConfig(model="cnn", epochs=6, batch_size=8, lr=3e-3))
    experiment.train(corpus, root / "run", settings, cache_dir=root / "cache", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def normed_run(tiny_run, tmp_path_factory) -> Path:
    """A run dir that can adapt: ``tiny_run``'s network marked speaker-normalised, so that it
    z-scores its input with a speaker's statistics, and its input standardisation undone
    (z-scored features are already on the scale the network saw), so that its
    probabilities move with the statistics instead of saturating."""
    import dataclasses

    from emovox import models

    model, spec = models.load(tiny_run / "model.pt")
    model.norm.mean.zero_()
    model.norm.std.fill_(1.0)
    out = tmp_path_factory.mktemp("normed")
    models.save(out / "model.pt", model, spec=dataclasses.replace(spec, speaker_norm=True))
    return out


@pytest.fixture(scope="session")
def voiced_run(tmp_path_factory) -> Path:
    """A run dir whose features hold a GE2E d-vector (so that ``timeline`` groups segments by
    voice) and that can adapt: an untrained speaker-normalised perceptron, for the plumbing."""
    from emovox import models
    from emovox.features import FeatureConfig
    from emovox.models import ModelSpec

    torch.manual_seed(0)
    cfg = FeatureConfig(kind="utterance", utterance=("dvector",))
    shape = dict(n_features=cfg.n_features, n_frames=1, n_classes=len(PITCH))
    out = tmp_path_factory.mktemp("voiced")
    models.save(out / "model.pt", models.build("mlp", **shape),
                spec=ModelSpec(model="mlp", model_kwargs=shape, labels=tuple(PITCH), features=cfg, speaker_norm=True))
    return out


@pytest.fixture
def real_data() -> Path:
    if not (DATA / "emodb" / "wav").is_dir():
        pytest.skip(f"real corpora not found at {DATA}")
    return DATA

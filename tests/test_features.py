import librosa
import numpy as np
import pytest

from emovox.errors import ConfigError
from emovox.features import (
    FeatureConfig,
    extract,
    extract_batch,
    fit_frames,
    logmel_batch,
    mfcc_batch,
    spectrogram_batch,
    windows,
)

from .conftest import same_features, tone

SR = 16000
# Tolerances asserted against librosa: dB values (range ~80 dB) and magnitudes.
DB_ATOL = 5e-3
MAG_RTOL = 1e-4


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(0)
    return [tone(150, 1.3, SR), tone(240, 0.77, SR, seed=1), 0.1 * rng.standard_normal(SR * 2).astype(np.float32)]


@pytest.mark.parametrize("n_fft,hop", [(512, 160), (400, 100), (1024, 256)])
def test_stft_magnitude_matches_librosa(signals, n_fft, hop):
    cfg = FeatureConfig(n_fft=n_fft, hop_length=hop, trim_db=None)
    for y, ours in zip(signals, spectrogram_batch(signals, cfg), strict=True):
        ref = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=MAG_RTOL, atol=1e-5 * ref.max())


@pytest.mark.parametrize("n_mels,fmin,fmax", [(64, 0.0, None), (40, 50.0, 7000.0)])
def test_logmel_matches_librosa(signals, n_mels, fmin, fmax):
    cfg = FeatureConfig(n_mels=n_mels, fmin=fmin, fmax=fmax, trim_db=None)
    for y, ours in zip(signals, logmel_batch(signals, cfg), strict=True):
        mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                             n_mels=n_mels, fmin=fmin, fmax=fmax)
        ref = librosa.power_to_db(mel, top_db=cfg.top_db)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=DB_ATOL)


def test_mfcc_and_deltas_match_librosa(signals):
    cfg = FeatureConfig(kind="mfcc", n_mfcc=20, deltas=2, trim_db=None)
    for y, ours in zip(signals, extract_batch(signals, cfg), strict=True):
        ref = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                   n_mels=cfg.n_mels)
        ref = np.concatenate([ref, librosa.feature.delta(ref), librosa.feature.delta(ref, order=2)])
        assert ours.shape == (60, ref.shape[1]) == (cfg.n_features, ref.shape[1])
        np.testing.assert_allclose(ours, ref, atol=DB_ATOL * 10)  # DCT sums ~64 dB values
    np.testing.assert_array_equal(mfcc_batch(signals[-1:], cfg)[0], ours[:20])


def test_batch_equals_one_by_one(signals):
    cfg = FeatureConfig(kind="logmel", prosody=True)
    batch = extract_batch(signals, cfg)
    for y, b in zip(signals, batch, strict=True):
        same_features(extract(y, cfg), b)
    assert batch[0].shape[0] == cfg.n_features == 66


def test_trim_removes_silence_edges():
    y = np.concatenate([np.zeros(SR, np.float32), tone(200, 1.0, SR), np.zeros(SR, np.float32)])
    trimmed = extract(y, FeatureConfig())
    untrimmed = extract(y, FeatureConfig(trim_db=None))
    assert untrimmed.shape[1] == 1 + len(y) // 256
    assert trimmed.shape[1] < 0.5 * untrimmed.shape[1]


def test_fixed_size_windows():
    f = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    assert fit_frames(f, 4, start=3).tolist() == f[:, 3:7].tolist()
    padded = fit_frames(f, 12)
    assert padded.shape == (2, 12) and (padded[:, 10:] == f.min()).all()
    w = windows(f, 4)
    assert w.shape == (4, 2, 4) and w[-1].tolist() == f[:, 6:].tolist()
    assert windows(f, 20).shape == (1, 2, 20)


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown feature kind"):
        FeatureConfig(kind="cqt")
    with pytest.raises(ConfigError, match="deltas"):
        FeatureConfig(deltas=3)
    assert FeatureConfig(clip_s=3.0).clip_frames == 188 and FeatureConfig().clip_frames == 126

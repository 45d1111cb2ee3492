"""Waveform augmentation: the transforms, their cached features, and their use in training."""

import numpy as np
import pytest

from emovox import train as train_mod
from emovox.augment import AugmentedFeatures, WaveAugment, speaker_swaps
from emovox.cache import extract_files
from emovox.dataset import load_dataset, model_inputs
from emovox.errors import ConfigError
from emovox.features import FeatureConfig, extract_batch
from emovox.train import TrainConfig, fit

from .conftest import tone

SR = 16000


def _peak_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / SR)[spectrum.argmax()])


def test_speed_perturbation_scales_tempo_and_pitch():
    t = np.arange(SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)
    fast = WaveAugment.parse("speed:1.1")(y, SR)
    slow = WaveAugment.parse("speed:0.9")(y, SR)
    assert abs(len(fast) - SR / 1.1) <= 2 and abs(len(slow) - SR / 0.9) <= 2
    assert _peak_hz(fast) == pytest.approx(440, abs=2) and _peak_hz(slow) == pytest.approx(360, abs=2)


def test_noise_has_the_asked_snr_and_is_deterministic():
    y = tone(200, 1.0, SR, seed=1)
    noisy = WaveAugment.parse("noise:20")(y, SR)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(20, abs=0.3)
    np.testing.assert_array_equal(noisy, WaveAugment.parse("noise:20")(y, SR))
    assert not np.array_equal(WaveAugment.parse("noise:20")(tone(200, 1.0, SR, seed=2), SR)[:100], noisy[:100])


def _band_power(y: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def test_phone_line_keeps_the_telephone_band_only():
    y = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    line = WaveAugment.parse("phone:8000")(y, SR)
    assert len(line) == len(y) and line.dtype == np.float32
    inside = _band_power(line, 500, 3000) / _band_power(y, 500, 3000)
    above = _band_power(line, 4500, 8000) / _band_power(y, 4500, 8000)
    below = _band_power(line, 0, 150) / _band_power(y, 0, 150)
    assert inside > 0.5 and above < 1e-3 and below < 0.05


def test_reverb_smears_a_click_over_its_rt60_and_keeps_the_level():
    click = np.zeros(SR, np.float32)
    click[100] = 1.0
    wet = WaveAugment.parse("reverb:0.4")(click, SR)
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(click**2)), rel=1e-3)
    energy = np.cumsum(wet.astype(np.float64) ** 2)
    ms = lambda s: 100 + int(s * SR)  # noqa: E731
    assert 0.02 < 1 - energy[ms(0.005)] / energy[-1]  # a tail after the direct sound ...
    assert 1 - energy[ms(0.4)] / energy[-1] < 1e-4  # ... 60 dB down by the RT60


def test_mp3_round_trip_keeps_length_and_most_of_the_signal():
    y = tone(300, 1.0, SR, seed=3)
    coded = WaveAugment.parse("mp3:0.5")(y, SR)
    assert len(coded) == len(y) and not np.array_equal(coded, y)
    lag = int(np.argmax(np.correlate(coded[2000:6000], y[2000:4000], mode="valid")))
    residual = coded[2000 + lag : 14000 + lag] - y[2000:14000]
    assert np.mean(residual**2) < 0.1 * np.mean(y[2000:14000] ** 2)


def test_channel_copies_are_deterministic_and_differ_from_each_other():
    y = tone(200, 1.0, SR, seed=4)
    one = WaveAugment.parse("channel:1")(y, SR)
    np.testing.assert_array_equal(one, WaveAugment.parse("channel:1")(y, SR))
    assert len(one) == len(y) and not np.array_equal(one, WaveAugment.parse("channel:2")(y, SR))
    assert not np.array_equal(one, y)


@pytest.mark.parametrize("spec", ["speed", "speed:3", "noise:x", "reverb:9", "phone:4000", "echo:1", ""])
def test_bad_spec_is_a_config_error_with_the_fix(spec):
    with pytest.raises(ConfigError, match="speed:F"):
        TrainConfig(augment=(spec,))


def test_augmented_features_are_cached_under_their_own_key(ravdess_dir, tmp_path):
    cfg = FeatureConfig(n_mels=32)
    aug = AugmentedFeatures(cfg, WaveAugment("speed", 0.9))
    paths = sorted(str(p) for p in ravdess_dir.rglob("03-01-0[345]-01-01-01-01.wav"))
    cache = tmp_path / "cache"
    first = extract_files(paths, aug, cache_dir=cache, progress=False).features
    plain = extract_files(paths, cfg, cache_dir=cache, progress=False).features
    assert len(list(cache.iterdir())) == 2  # one directory per (config, augmentation)
    from emovox.audio import load

    for p in paths:
        expected = extract_batch([WaveAugment("speed", 0.9)(load(p, sr=SR), SR)], cfg)[0]
        np.testing.assert_array_equal(first[p], expected)
        assert first[p].shape[1] > plain[p].shape[1]  # slower audio, more frames
    again = extract_files(paths, aug, cache_dir=cache, progress=False).features
    assert all(np.array_equal(first[p], again[p]) for p in paths)


def test_dataset_carries_aligned_augmented_copies_normalised_on_their_own(ravdess_dir, tmp_path):
    ds = load_dataset(ravdess_dir, features=FeatureConfig(n_mels=32), augment=("speed:1.1", "noise:10"),
                      cache_dir=tmp_path / "cache", progress=False)
    assert len(ds.augmented) == 2 and all(len(a) == len(ds.features) for a in ds.augmented)
    feats, augmented = model_inputs(ds, speaker_norm=True)
    speaker = [i for i, s in enumerate(ds.speakers) if s == ds.speakers[0]]
    for copy in augmented:  # every copy is z-scored with its own per-speaker statistics
        frames = np.concatenate([copy[i] for i in speaker], axis=1)
        np.testing.assert_allclose(frames.mean(axis=1), 0, atol=1e-3)


def test_training_draws_originals_and_copies_of_training_utterances_only(monkeypatch):
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((16, 40)).astype(np.float32) for _ in range(24)]
    copies = [f + 1 for f in feats]
    y = np.arange(24) % 2
    fit_idx, val_idx = np.arange(16), np.arange(16, 24)
    seen = []
    real = train_mod.fit_frames

    def spy(f, n, start=0):
        seen.append(id(f))
        return real(f, n, start=start)

    monkeypatch.setattr(train_mod, "fit_frames", spy)
    fit(feats, y, fit_idx, val_idx, n_classes=2, n_frames=20, augmented=[copies], progress=False,
        cfg=TrainConfig(epochs=3, batch_size=4, patience=5))
    originals, copied = {id(feats[i]) for i in fit_idx}, {id(copies[i]) for i in fit_idx}
    assert seen and set(seen) <= originals | copied
    assert len(set(seen) & originals) > 8 and len(set(seen) & copied) > 8


def test_speaker_swaps_move_training_utterances_between_training_speakers_centres():
    # speakers a, b (training) and c (validation); a recorded class 0 three times, class 1 once
    rng = np.random.default_rng(0)
    speakers = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 2)
    y = np.array([0, 0, 0, 1, 0, 1, 0, 1, 0, 1])
    offset = {"a": 0.0, "b": 10.0, "c": 100.0}
    feats = [(offset[s] + 4.0 * c + rng.standard_normal((3, 5))).astype(np.float32)
             for s, c in zip(speakers, y, strict=True)]
    fit_idx = np.arange(8)
    # a centre is the mean of per-class means (a plain mean would put a's 1 lower, toward class 0)
    centre = {s: np.mean([np.mean([feats[i].mean(1) for i in fit_idx if speakers[i] == s and y[i] == c], axis=0)
                          for c in (0, 1)], axis=0) for s in ("a", "b")}
    copies = speaker_swaps(feats, y, speakers, fit_idx, copies=3, seed=1)
    assert len(copies) == 3
    moved = set()
    for copy in copies:
        for i in (8, 9):  # validation utterances stay as they are
            assert copy[i] is feats[i]
        for i in fit_idx:
            shift = (copy[i] - feats[i]).mean(axis=1)
            np.testing.assert_allclose(copy[i] - feats[i], np.repeat(shift[:, None], 5, axis=1), atol=1e-4)
            target = min(("a", "b"), key=lambda s: np.abs(centre[speakers[i]] + shift - centre[s]).max())
            np.testing.assert_allclose(shift, centre[target] - centre[speakers[i]], atol=1e-4)  # onto a or b, never c
            moved.add(target != speakers[i])
    assert moved == {True, False}  # some utterances land on the other speaker, some stay
    again = speaker_swaps(feats, y, speakers, fit_idx, copies=3, seed=1)
    assert all(np.array_equal(u, v) for c1, c2 in zip(copies, again, strict=True) for u, v in zip(c1, c2, strict=True))


def test_speakers_unknown_or_of_one_class_neither_move_nor_receive():
    speakers = np.array(["a", "a", "b", "b", "c", "c", None, None], dtype=object)
    y = np.array([0, 1, 0, 1, 1, 1, 0, 1])  # c recorded one class only; the last two have no speaker
    feats = [np.full((2, 3), 10.0 * i, dtype=np.float32) for i in range(8)]
    for copy in speaker_swaps(feats, y, speakers, np.arange(8), copies=4, seed=0):
        for i in (4, 5, 6, 7):
            assert copy[i] is feats[i]
        for i in (0, 1, 2, 3):  # a's centre is 5, b's 25: a clip stays or moves by +-20
            assert (copy[i] - feats[i]).max() in (-20.0, 0.0, 20.0)


def test_speaker_swap_in_training_needs_speakers():
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((4, 1)).astype(np.float32) for _ in range(8)]
    y = np.arange(8) % 2
    cfg = TrainConfig(model="kernel", epochs=1, batch_size=4, speaker_swap=1, model_kwargs={"landmarks": 4})
    with pytest.raises(ConfigError, match="speaker"):
        fit(feats, y, np.arange(6), np.arange(6, 8), n_classes=2, n_frames=1, cfg=cfg, progress=False)
    result = fit(feats, y, np.arange(6), np.arange(6, 8), n_classes=2, n_frames=1, cfg=cfg, progress=False,
                 speakers=["a", "a", "a", "b", "b", "b", "c", "c"])
    assert result.best_epoch == 1
    with pytest.raises(ConfigError, match="speaker_swap"):
        TrainConfig(speaker_swap=-1)


def test_mp3_takes_every_level_in_its_range():
    y = tone(300, 0.5, SR)
    for level in (0.0, 0.99995, 1.0):  # libsndfile itself refuses levels above 0.9999
        assert len(WaveAugment.parse(f"mp3:{level}")(y, SR)) == len(y)

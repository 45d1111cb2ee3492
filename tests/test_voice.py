"""The torch voice descriptors against synthetic signals whose true values are known."""

import numpy as np
import pytest
import scipy.signal
import torch

from emovox.features import UTTERANCE_DIMS, FeatureConfig
from emovox.utterance import vectors
from emovox.voice import NAMES, SAMPLE_RATE, VoiceFeatures

SR = SAMPLE_RATE
PULSE_TAU = 0.0005  # s: glottal-like pulse (t / tau) exp(-t / tau), -12 dB / octave above 318 Hz


@pytest.fixture(scope="module")
def voice() -> VoiceFeatures:
    return VoiceFeatures()


def pulses(times: np.ndarray, amps: np.ndarray, seconds: float) -> np.ndarray:
    """Glottal-like pulses starting at ``times`` (s, any fraction of a sample) with peak ``amps``."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for t0, a in zip(times, amps, strict=True):
        u = (t[int(t0 * SR): int((t0 + 30 * PULSE_TAU) * SR) + 2] - t0) / PULSE_TAU
        y[int(t0 * SR): int(t0 * SR) + len(u)] += a * np.e * np.clip(u, 0, None) * np.exp(-u)
    return y.astype(np.float32)


def train(f0: float = 150.0, seconds: float = 1.0, *, jitter: float = 0.0, shimmer: float = 0.0,
          seed: int = 0) -> tuple[np.ndarray, float, float]:
    """A pulse train at ``f0`` Hz whose periods and amplitudes vary at random (Gaussian, iid)
    with these local jitter / shimmer; returns the signal and the realised local jitter and shimmer."""
    rng = np.random.default_rng(seed)
    n = int(seconds * f0) + 2
    periods = (1 + jitter * np.sqrt(np.pi) / 2 * rng.standard_normal(n)) / f0  # E|dT| = jitter * T
    amps = 0.5 * (1 + shimmer * np.sqrt(np.pi) / 2 * rng.standard_normal(n))
    times = 0.002 + np.concatenate([[0.0], np.cumsum(periods[:-1])])
    keep = times < seconds - 0.01
    periods, amps, times = periods[keep][:-1], amps[keep], times[keep]
    true_jitter = np.abs(np.diff(periods)).mean() / periods.mean()
    true_shimmer = np.abs(np.diff(amps)).mean() / amps.mean()
    return pulses(times, amps, seconds), true_jitter, true_shimmer


def run(voice: VoiceFeatures, *signals: np.ndarray) -> list[dict[str, float]]:
    lengths = [len(y) for y in signals]
    wave = torch.zeros(len(signals), max(lengths))
    for i, y in enumerate(signals):
        wave[i, : len(y)] = torch.from_numpy(np.asarray(y, dtype=np.float32))
    with torch.no_grad():
        out = voice(wave, torch.tensor(lengths)).numpy()
    return [dict(zip(NAMES, row.tolist(), strict=True)) for row in out]


def semitones(hz: float) -> float:
    return 12 * np.log2(hz / 27.5)


@pytest.mark.parametrize("f0", [100.0, 150.0, 240.0])
def test_pitch_of_a_pulse_train(voice, f0):
    (got,) = run(voice, train(f0)[0])
    assert abs(got["f0_mean"] - semitones(f0)) < 12 * np.log2(1.01)  # within 1 %
    assert got["f0_range"] < 0.2 and got["voiced_fraction"] > 0.9
    assert got["hnr_mean"] > 20  # clean


def test_jitter_follows_the_true_local_jitter(voice):
    measured = []
    for target in (0.0, 0.01, 0.03):
        y, true_jitter, _ = train(150.0, 2.0, jitter=target, seed=1)
        (got,) = run(voice, y)
        assert abs(got["jitter_mean"] - true_jitter) < 0.2 * true_jitter + 0.002, (target, true_jitter, got)
        measured.append(got["jitter_mean"])
    assert measured[0] < measured[1] < measured[2]


def test_shimmer_follows_the_true_local_shimmer(voice):
    measured = []
    for target in (0.0, 0.03, 0.1):
        y, _, true_shimmer = train(150.0, 2.0, shimmer=target, seed=2)
        (got,) = run(voice, y)
        assert abs(got["shimmer_mean"] - true_shimmer) < 0.2 * true_shimmer + 0.003, (target, true_shimmer, got)
        measured.append(got["shimmer_mean"])
    assert measured[0] < measured[1] < measured[2]


@pytest.mark.parametrize("hnr_db", [0.0, 10.0, 20.0])
def test_hnr_of_a_pulse_train_in_white_noise(voice, hnr_db):
    """True HNR: harmonic over noise energy in the 0-4 kHz band the measure reads."""
    y, _, _ = train(150.0, 2.0)
    noise = np.random.default_rng(3).standard_normal(len(y))
    band = np.fft.rfftfreq(len(y), 1 / SR) <= 4000

    def band_energy(s):
        return (np.abs(np.fft.rfft(s))[band] ** 2).sum()

    noise *= np.sqrt(band_energy(y) / band_energy(noise) / 10 ** (hnr_db / 10))
    (got,) = run(voice, (y + noise).astype(np.float32))
    assert abs(got["hnr_mean"] - hnr_db) < 3.0, got["hnr_mean"]


def test_formants_of_a_synthetic_vowel(voice):
    """/a/-like: 120 Hz pulses, differentiated (lip radiation, +6 dB / octave), through
    resonators at 700, 1220 and 2600 Hz."""
    y = np.diff(train(120.0, 1.0)[0], prepend=0.0)
    for freq, bw in ((700, 130), (1220, 70), (2600, 160)):
        r = np.exp(-np.pi * bw / SR)
        y = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / SR), r * r], y)
    (got,) = run(voice, y.astype(np.float32))
    for name, freq in (("f1_hz_mean", 700), ("f2_hz_mean", 1220), ("f3_hz_mean", 2600)):
        assert abs(got[name] - freq) < 0.1 * freq, (name, got[name])
    assert 30 < got["f1_bandwidth_mean"] < 400


def test_gain_changes_nothing(voice):
    rng = np.random.default_rng(4)
    y = 10 * np.diff(train(130.0, 1.5, jitter=0.01)[0], prepend=0.0) + 0.05 * rng.standard_normal(24000)
    y = y.astype(np.float32)
    y[:4000] *= 0.01  # a quiet lead-in
    base = np.array(list(run(voice, y)[0].values()))
    for gain in (0.05, 20.0):
        got = np.array(list(run(voice, gain * y)[0].values()))
        np.testing.assert_allclose(got, base, rtol=1e-3, atol=1e-4)


def test_padding_and_batch_change_nothing(voice):
    a = train(110.0, 1.3, jitter=0.02)[0]
    b = train(210.0, 0.7, shimmer=0.05)[0] + 0.01 * np.random.default_rng(5).standard_normal(11200).astype(np.float32)
    alone = [np.array(list(run(voice, y)[0].values())) for y in (a, b)]
    together = [np.array(list(d.values())) for d in run(voice, a, b, np.zeros(40000, np.float32))]
    for one, batched in zip(alone, together[:2], strict=True):  # float sums follow the thread count: ~1e-4
        np.testing.assert_allclose(batched, one, rtol=1e-3, atol=1e-3)


def test_silence_short_clips_and_dc_are_finite(voice):
    outs = run(voice, np.zeros(16000, np.float32), np.full(16000, 0.3, np.float32),
               train(150.0, 0.05)[0], np.zeros(1, np.float32))
    for out in outs:
        assert np.isfinite(list(out.values())).all()


def test_onnx_export_matches_torch(voice, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "voice.onnx"
    wave, lengths = torch.zeros(2, 16000), torch.tensor([16000, 8000])
    axes = {"wave": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "features": {0: "batch"}}
    torch.onnx.export(voice, (wave, lengths), str(path), input_names=["wave", "lengths"], output_names=["features"],
                      opset_version=17, dynamo=False, dynamic_axes=axes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    a = train(120.0, 1.2, jitter=0.02)[0]
    b = train(230.0, 0.6)[0] + 0.02 * np.random.default_rng(6).standard_normal(9600).astype(np.float32)
    wave = np.zeros((2, len(a)), np.float32)
    wave[0], wave[1, : len(b)] = a, b
    lengths = np.array([len(a), len(b)])
    got = session.run(None, {"wave": wave, "lengths": lengths})[0]
    with torch.no_grad():
        want = voice(torch.from_numpy(wave), torch.from_numpy(lengths)).numpy()
    scale = np.abs(want).max(axis=0) + 1e-3
    assert (np.abs(got - want) / scale).max() < 1e-4


def test_registered_as_the_voice_utterance_vector():
    y = train(140.0, 0.8)[0]
    cfg = FeatureConfig(kind="utterance", utterance=("voice",), trim_db=None)
    cols = vectors([y, y[:6000], np.zeros(3000, np.float32)], cfg, device="cpu")
    assert UTTERANCE_DIMS["voice"] == len(NAMES) and all(c.shape == (len(NAMES), 1) for c in cols)
    (alone,) = run(VoiceFeatures(), y[:6000])
    np.testing.assert_allclose(cols[1][:, 0], list(alone.values()), rtol=1e-3, atol=1e-3)


def test_spectral_descriptors_read_the_telephone_band(voice):
    """Spectral balance, MFCC, flux and formant levels read only 300-3400 Hz: removing the
    rest (a steep band-pass) moves each by less than 1.5 (dB, or MFCC units)."""
    y = np.diff(train(160.0, 1.2, jitter=0.01)[0], prepend=0.0)
    y = y + 0.01 * np.random.default_rng(6).standard_normal(len(y))
    sos = scipy.signal.butter(8, [300, 3400], btype="bandpass", fs=SR, output="sos")
    full, band = run(voice, y.astype(np.float32), scipy.signal.sosfiltfilt(sos, y).astype(np.float32))
    # (the 300-1000 Hz slope is left out: the filter's skirt just above 300 Hz tilts it by ~2.5 dB/kHz)
    for name in ("alpha_ratio_voiced_mean", "hammarberg_voiced_mean", "mfcc1_voiced_mean", "mfcc2_voiced_mean",
                 "f1_amplitude_rel_level_mean"):
        assert abs(full[name] - band[name]) < 1.5, (name, full[name], band[name])


def test_noise_before_and_after_speech_is_cut(voice):
    """A second of white noise 30 dB below a pulse train on either side: the span is the
    pulse train's, so its rhythm and loudness functionals stay near the clean clip's."""
    y = np.diff(train(150.0, 1.0, shimmer=0.05)[0], prepend=0.0).astype(np.float32)
    noise = np.random.default_rng(7).standard_normal(SR).astype(np.float32) * np.sqrt(np.mean(y**2)) * 10 ** (-30 / 20)
    (clean, padded) = run(voice, y, np.concatenate([noise, y + noise[: len(y)], noise]))
    assert padded["voiced_fraction"] > 0.8 and abs(padded["voiced_fraction"] - clean["voiced_fraction"]) < 0.1
    assert padded["unvoiced_segment_mean_s"] < 0.1
    assert abs(padded["f0_mean"] - clean["f0_mean"]) < 0.2

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from emovox.errors import ConfigError
from emovox.segment import VadConfig, speech_segments
from emovox.vad import SILERO_FRAME, SILERO_SR, EnergyDetector, SileroDetector, _silero_weights

from .test_segment import HELLO


def _reference_probabilities(y: np.ndarray) -> np.ndarray:
    """Silero's own streaming model (TorchScript, from the wheel), one 512-sample frame a call."""
    model = torch.jit.load(str(_silero_weights()), map_location="cpu").eval()
    with torch.no_grad():
        return np.array([model(torch.from_numpy(y[i : i + SILERO_FRAME])[None], SILERO_SR).item()
                         for i in range(0, len(y) - SILERO_FRAME + 1, SILERO_FRAME)])


def test_silero_probabilities_match_its_streaming_model_whatever_the_blocks():
    y, _ = sf.read(HELLO, dtype="float32")
    y = y + 0.01 * np.random.default_rng(0).standard_normal(len(y)).astype(np.float32)
    expected = _reference_probabilities(y)
    assert expected.max() > 0.9 and expected.min() < 0.1  # speech and pauses both present
    for size in (len(y), 777, 300):
        det = SileroDetector(SILERO_SR, threshold=0.5)
        got = np.concatenate([det.probabilities(y[i : i + size]) for i in range(0, len(y), size)])
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_silero_decisions_hold_through_a_dip():
    det = SileroDetector(SILERO_SR, threshold=0.5, gate_db=0.0)
    probs = np.array([0.2, 0.45, 0.6, 0.4, 0.3, 0.6])
    assert det._decide(probs, np.ones(6)).tolist() == [False, False, True, True, False, True]


def _babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Six talkers at once (the example sentence at six speeds and pitches, each looped from a
    random point), unit power."""
    y, _ = sf.read(HELLO, dtype="float32")
    x = np.zeros(n)
    for rate in np.linspace(0.75, 1.35, 6):
        v = soxr.resample(y, SILERO_SR, SILERO_SR * rate)
        x += np.roll(np.tile(v, n // len(v) + 1)[:n], rng.integers(len(v)))
    return x / np.sqrt(np.mean(x**2))


def _talk(quiet_s: float = 3.0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The example sentence twice between pauses of ``quiet_s``, and where it is (s)."""
    y, _ = sf.read(HELLO, dtype="float32")
    pause = np.zeros(int(quiet_s * SILERO_SR), np.float32)
    n = len(y) / SILERO_SR
    said = [(quiet_s, quiet_s + n), (2 * quiet_s + n, 2 * (quiet_s + n))]
    return np.concatenate([pause, y, pause, y, pause]), said


def _segments(x: np.ndarray, **vad) -> list[tuple[float, float]]:
    blocks = (x[i : i + 8000] for i in range(0, len(x), 8000))
    return [(s.start, s.end) for s in speech_segments(blocks, SILERO_SR, VadConfig(**vad))]


def test_level_gate_drops_the_babble_in_the_pauses_and_keeps_the_talker():
    talk, said = _talk()
    speech = np.zeros(len(talk), bool)
    for a, b in said:
        speech[int(a * SILERO_SR) : int(b * SILERO_SR)] = True
    noise = _babble(len(talk), np.random.default_rng(0)) * np.sqrt(np.mean(talk[speech] ** 2) / 10)  # 10 dB SNR
    x = (talk + noise).astype(np.float32)
    # without the gate, Silero hears the crowd as speech: one stretch of speech, pauses and all
    assert sum(b - a for a, b in _segments(x, gate_db=0.0)) > 0.8 * len(x) / SILERO_SR
    # with it (the default), both sentences are found, and once the floor has settled (the
    # first pause: it is estimated from what came before) nothing in the pauses is
    segs = _segments(x)
    for a, b in said:
        assert sum(min(e, b) - max(s, a) for s, e in segs if s < b and e > a) > 0.8 * (b - a), segs
    settled = said[0][1] + 0.5
    assert not any(e > settled and not any(s < b and e > a for a, b in said) for s, e in segs), segs
    # frame by frame: the frames Silero calls speech in the talker alone are kept, and past
    # the first pause, little else
    alone = SileroDetector(SILERO_SR, threshold=0.5, gate_db=0.0)(talk)
    gated = SileroDetector(SILERO_SR, threshold=0.5)(x)
    later = np.arange(len(gated)) * SILERO_FRAME > said[0][0] * SILERO_SR
    assert gated[alone].mean() > 0.85 and gated[~alone & later].mean() < 0.1


@pytest.mark.parametrize("level_db", [-50.0, -30.0])
def test_level_gate_leaves_speech_in_silence_or_steady_noise_alone(level_db):
    talk, _ = _talk(quiet_s=1.0)
    rng = np.random.default_rng(1)
    for floor_db in (-90.0, level_db - 15.0):  # near silence; white noise 15 dB under the speech
        x = (talk * 10 ** (level_db / 20) / np.sqrt(np.mean(talk**2))
             + 10 ** (floor_db / 20) * rng.standard_normal(len(talk))).astype(np.float32)
        plain = SileroDetector(SILERO_SR, threshold=0.5, gate_db=0.0)(x)
        gated = SileroDetector(SILERO_SR, threshold=0.5)(x)
        assert plain.sum() > 100 and gated.tolist() == plain.tolist()


def test_level_gate_decisions_do_not_depend_on_the_blocks():
    talk, _ = _talk(quiet_s=2.0)
    x = (talk + 0.01 * _babble(len(talk), np.random.default_rng(2))).astype(np.float32)
    whole = SileroDetector(SILERO_SR, threshold=0.5)(x)
    for size in (777, 5000):
        det = SileroDetector(SILERO_SR, threshold=0.5)
        got = np.concatenate([det(x[i : i + size]) for i in range(0, len(x), size)])
        assert got.tolist() == whole.tolist()


@pytest.mark.parametrize("sr", [SILERO_SR, 44100])
def test_level_gate_decides_every_frame_of_a_stream_shorter_than_its_first_second(sr):
    y = soxr.resample(_talk(quiet_s=0.1)[0][: SILERO_SR // 2], SILERO_SR, sr)  # half a second
    det = SileroDetector(sr, threshold=0.5)
    held, rest = det(y), det.flush()
    assert len(held) == 0  # the first second's decisions wait for it, or for the end
    plain = SileroDetector(sr, threshold=0.5, gate_db=0.0)
    assert len(rest) == len(np.concatenate([plain(y), plain.flush()]))


def test_level_gate_must_be_a_level_over_the_background():
    with pytest.raises(ConfigError):
        SileroDetector(SILERO_SR, threshold=0.5, gate_db=-3.0)


def test_energy_detector_carries_partial_frames():
    det = EnergyDetector(16000, frame_s=0.01, threshold_db=-30.0)
    y = np.concatenate([np.zeros(800), np.full(800, 0.1)]).astype(np.float32)  # -20 dBFS from 50 ms
    got = np.concatenate([det(y[:250]), det(y[250:1234]), det(y[1234:]), det.flush()])
    assert got.tolist() == [False] * 5 + [True] * 5

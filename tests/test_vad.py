import numpy as np
import soundfile as sf
import torch

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
    det = SileroDetector(SILERO_SR, threshold=0.5)
    assert det._decide(np.array([0.2, 0.45, 0.6, 0.4, 0.3, 0.6])).tolist() == [False, False, True, True,
                                                                                False, True]


def test_energy_detector_carries_partial_frames():
    det = EnergyDetector(16000, frame_s=0.01, threshold_db=-30.0)
    y = np.concatenate([np.zeros(800), np.full(800, 0.1)]).astype(np.float32)  # -20 dBFS from 50 ms
    got = np.concatenate([det(y[:250]), det(y[250:1234]), det(y[1234:]), det.flush()])
    assert got.tolist() == [False] * 5 + [True] * 5

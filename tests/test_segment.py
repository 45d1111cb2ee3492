import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emovox.config import from_dict, to_dict
from emovox.errors import ConfigError
from emovox.segment import VadConfig, frame_db, speech_segments

from .conftest import tone

SR = 16000
ENERGY = VadConfig(method="energy", pad_s=0.0)
HELLO = Path(__file__).resolve().parents[1] / "examples" / "hello.flac"  # a synthetic (espeak-ng) sentence


def _sentence_in_noise(noise_rms: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """1.5 s quiet, the example sentence (-23 dBFS RMS), 1.5 s quiet, in white noise of
    ``noise_rms``; and the truth per sample: the energy VAD's segments of the clean signal."""
    pad = np.zeros(int(1.5 * SR), np.float32)
    y = np.concatenate([pad, sf.read(HELLO, dtype="float32")[0], pad])
    truth = _mask(speech_segments([y], SR, ENERGY), len(y))
    return (y + noise_rms * np.random.default_rng(seed).standard_normal(len(y))).astype(np.float32), truth


def _mask(segments, n: int) -> np.ndarray:
    out = np.zeros(n, bool)
    for s in segments:
        out[int(s.start * SR) : int(s.end * SR)] = True
    return out


def _precision_recall(y: np.ndarray, truth: np.ndarray, cfg: VadConfig) -> tuple[float, float]:
    found = _mask(speech_segments(_blocks(y, SR), SR, cfg), len(y))
    return (found & truth).sum() / max(found.sum(), 1), (found & truth).sum() / truth.sum()


def _signal(layout):
    return np.concatenate([tone(200, s, SR) if speech else np.zeros(int(s * SR), np.float32) for s, speech in layout])


def _blocks(y, size):
    return (y[i : i + size] for i in range(0, len(y), size))


def test_segments_found_whatever_the_block_size():
    y = _signal([(0.5, False), (1.0, True), (0.2, False), (0.8, True), (1.0, False), (2.0, True), (0.3, False)])
    # the 0.2 s pause is shorter than min_silence_s, so the first two bursts merge
    expected = [(0.5, 2.5), (3.5, 5.5)]
    for size in (SR // 10, 777, SR * 3):
        segs = list(speech_segments(_blocks(y, size), SR, ENERGY))
        got = [(round(s.start, 1), round(s.end, 1)) for s in segs]
        assert got == expected, size
        for s in segs:
            assert abs(len(s.audio) / SR - (s.end - s.start)) < 1e-6


def test_long_speech_is_cut_and_short_blips_dropped():
    y = _signal([(0.2, False), (7.0, True), (0.5, False), (0.1, True), (0.5, False)])
    segs = list(speech_segments(_blocks(y, 4000), SR, VadConfig(method="energy", max_segment_s=3.0, pad_s=0.0)))
    assert [round(s.end - s.start, 1) for s in segs] == [3.0, 3.0, 1.0]


def test_frame_db_levels():
    assert np.allclose(frame_db(np.full(480, 0.1, np.float32), 160), -20.0)


@pytest.mark.parametrize("method", ["silero", "energy"])
def test_both_methods_find_speech_in_light_noise(method):
    y, truth = _sentence_in_noise(0.002)  # -54 dBFS: under the energy gate's -45, SNR 31 dB
    precision, recall = _precision_recall(y, truth, VadConfig(method=method, pad_s=0.0))
    assert precision > 0.9 and recall > 0.9


def test_silero_keeps_to_speech_where_noise_passes_the_energy_gate():
    y, truth = _sentence_in_noise(0.01)  # -40 dBFS noise, SNR 17 dB
    precision, recall = _precision_recall(y, truth, ENERGY)
    assert recall == 1.0 and precision < 0.6  # the noise is speech to a level gate
    precision, recall = _precision_recall(y, truth, VadConfig(pad_s=0.0))
    assert precision > 0.9 and recall > 0.9


def test_silero_segments_do_not_depend_on_the_block_size():
    y = np.concatenate([_sentence_in_noise(0.005, seed=2)[0], _sentence_in_noise(0.005, seed=3)[0]])
    spans = []
    for size in (SR // 10, 777, 511, SR * 30):
        spans.append([(s.start, s.end, len(s.audio)) for s in speech_segments(_blocks(y, size), SR, VadConfig())])
    assert len(spans[0]) >= 2 and all(s == spans[0] for s in spans)


def test_silero_on_a_stream_at_another_rate():
    import soxr

    y = _sentence_in_noise(0.005)[0]
    at16 = [(s.start, s.end) for s in speech_segments(_blocks(y, SR), SR, VadConfig(pad_s=0.0))]
    y44 = soxr.resample(y, SR, 44100).astype(np.float32)
    at44 = [(s.start, s.end) for s in speech_segments(_blocks(y44, 44100), 44100, VadConfig(pad_s=0.0))]
    assert len(at44) == len(at16) == 2
    assert np.allclose(at44, at16, atol=0.07)  # two 32 ms frames


def test_vad_config_round_trips_and_refuses_unknown_methods():
    cfg = VadConfig(method="energy", threshold_db=-40.0)
    assert from_dict(VadConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert VadConfig().method == "silero"
    with pytest.raises(ConfigError, match="unknown VAD method 'webrtc'"):
        VadConfig(method="webrtc")
    with pytest.raises(ConfigError, match="probability"):
        VadConfig(threshold=1.5)

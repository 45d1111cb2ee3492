import json

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt

from emovox.quality import assess

from .test_segment import HELLO

SR = 16000


def _tone_in_noise(snr_db: float, seed: int = 0) -> np.ndarray:
    """5 s of white noise (-40 dBFS), a 440 Hz tone in the middle 2.5 s at ``snr_db`` above it."""
    rng = np.random.default_rng(seed)
    t = np.arange(5 * SR) / SR
    tone = np.sqrt(2) * 0.01 * 10 ** (snr_db / 20) * np.sin(2 * np.pi * 440 * t) * ((t > 1.25) & (t < 3.75))
    return (0.01 * rng.standard_normal(len(t)) + tone).astype(np.float32)


@pytest.mark.parametrize("snr_db", [5.0, 10.0, 20.0, 30.0])
def test_snr_of_a_tone_in_white_noise(snr_db):
    q = assess(_tone_in_noise(snr_db), SR)
    assert abs(q["snr_db"] - snr_db) < 3.0
    assert ("noisy" in " ".join(q["issues"])) == (snr_db < 10)


def test_clipping_share_of_an_overdriven_sine():
    t = np.arange(SR) / SR
    sine = np.sin(2 * np.pi * 200 * t)
    # |2 sin| >= 0.99 for a share 1 - 2/pi * arcsin(0.495) of the time
    clipped = assess(np.clip(2 * sine, -1, 1), SR)
    assert clipped["clipping"] == pytest.approx(1 - 2 / np.pi * np.arcsin(0.495), abs=0.01)
    assert any(i.startswith("clipped") for i in clipped["issues"])
    assert assess(0.5 * sine, SR)["clipping"] == 0.0


def test_bandwidth_of_speech_through_a_telephone_low_pass():
    y, _ = sf.read(HELLO, dtype="float32")
    assert assess(y, SR)["bandwidth_hz"] > 5000
    low = sosfilt(butter(10, 3400, fs=SR, output="sos"), y)
    noisy_low = low + 0.001 * np.random.default_rng(0).standard_normal(len(y))
    for q in (assess(low, SR), assess(noisy_low, SR)):
        assert 3000 <= q["bandwidth_hz"] <= 3800
        assert any(i.startswith("narrow band") for i in q["issues"])


def test_speech_seconds_and_a_clean_clip_has_no_issues():
    y, _ = sf.read(HELLO, dtype="float32")
    padded = np.concatenate([np.zeros(2 * SR, np.float32), y, np.zeros(2 * SR, np.float32)])
    q = assess(padded, SR)
    assert 3.0 < q["speech_s"] < len(y) / SR  # the sentence has pauses; the padding is not speech
    assert q["issues"] == [] and q["snr_db"] > 30
    assert json.loads(json.dumps(q)) == q  # plain JSON types


@pytest.mark.parametrize("n", [0, 100, 2 * SR])
def test_silence(n):
    q = assess(np.zeros(n, np.float32), SR)
    assert q == {"snr_db": None, "clipping": 0.0, "bandwidth_hz": None, "speech_s": 0.0,
                 "issues": ["no speech found"]}

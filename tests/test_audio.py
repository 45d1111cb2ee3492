import numpy as np
import pytest
import soundfile as sf

from emovox import audio
from emovox.errors import AudioError

from .conftest import tone, write


def test_stereo_48k_becomes_mono_16k(tmp_path):
    y = tone(200, 1.5, 48000)
    path = write(tmp_path / "s.wav", np.stack([y, y], axis=1), 48000)
    out = audio.load(path, sr=16000)
    assert out.ndim == 1 and out.dtype == np.float32
    assert abs(len(out) - 24000) <= 1
    ref = audio.load(write(tmp_path / "m.wav", y, 48000), sr=16000)
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_flac_and_ogg_decode(tmp_path):
    y = tone(200, 1.0, 22050)
    for ext in ("flac", "ogg"):
        path = tmp_path / f"x.{ext}"
        sf.write(path, y, 22050)
        assert abs(len(audio.load(path, sr=16000)) - 16000) <= 2


@pytest.mark.parametrize(("content", "message"), [(b"garbage", "cannot decode"), (b"", "cannot decode")])
def test_corrupt_file_error_names_file(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=f"bad.wav: {message}"):
        audio.load(path, sr=16000)


def test_silent_short_and_nan_are_rejected(tmp_path):
    with pytest.raises(AudioError, match="silent"):
        audio.load(write(tmp_path / "z.wav", np.zeros(16000, np.float32), 16000), sr=16000)
    with pytest.raises(AudioError, match="shorter"):
        audio.check_signal(np.ones(100, np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        audio.check_signal(np.full(16000, np.nan, np.float32), 16000)


def test_stream_matches_whole_file_load(tmp_path):
    y = tone(180, 5.0, 44100)
    path = write(tmp_path / "long.wav", y, 44100)
    blocks = list(audio.stream(path, sr=16000, block_s=0.7))
    assert len(blocks) > 5
    streamed = np.concatenate(blocks)
    whole = audio.load(path, sr=16000)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_decode_bytes(tmp_path):
    path = write(tmp_path / "a.wav", tone(200, 1.0, 8000), 8000)
    assert abs(len(audio.decode_bytes(path.read_bytes(), sr=16000)) - 16000) <= 2
    with pytest.raises(AudioError, match="empty"):
        audio.decode_bytes(b"", sr=16000)

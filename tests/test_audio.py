import os

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


def test_audio_files_of_a_folder_are_recursive_sorted_and_audio_only(tmp_path):
    y = tone(200, 0.5, 16000)
    for name in ("b.wav", "a/z.FLAC", "a/b/c.ogg", "A.wav", "a-b.wav", ".hidden.wav", ".git/x.wav", "a/._c.wav"):
        write(tmp_path / name, y, 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "a" / "labels.csv").write_text("path,label\n")
    (tmp_path / "d.wav").mkdir()  # a folder with an audio-like name is no file
    got = audio.audio_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["A.wav", "a/b/c.ogg", "a/z.FLAC", "a-b.wav", "b.wav"]
    assert audio.audio_files(str(tmp_path)) == got  # str or Path, same answer
    (tmp_path / "notes.txt").rename(tmp_path / "notes.dat")
    assert audio.audio_files(tmp_path / "notes.dat") == [tmp_path / "notes.dat"]  # a file is taken as given


def test_audio_files_says_what_a_bad_path_is(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "gone.wav")
    os.mkfifo(tmp_path / "pipe")
    for name, words in [("missing.wav", "no such file or folder"), ("empty", "folder has no audio files"),
                        ("text", "folder has no audio files"), ("link", "broken symbolic link, neither a file nor"),
                        ("pipe", "named pipe, neither a file nor a folder")]:
        with pytest.raises(AudioError, match=words) as info:
            audio.audio_files(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    with pytest.raises(AudioError, match="is a folder, not a file"):
        audio.load(tmp_path / "empty", sr=16000)

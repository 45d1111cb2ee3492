"""Load any audio format as mono float32 at a chosen rate; detect silence; stream long files."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from emovox.errors import AudioError

SILENCE_PEAK = 1e-4  # a peak below this (about -80 dBFS) counts as silence
MIN_SECONDS = 0.1
# File extensions of the formats libsndfile decodes (soundfile.available_formats()). Left out on
# purpose: RAW (headerless, needs its parameters), MAT4/MAT5 and HTK (.mat/.htk files are mostly
# numeric data or features, not audio).
_FORMAT_EXTENSIONS = {
    "WAV": (".wav", ".wave"), "WAVEX": (".wav",), "W64": (".w64",), "RF64": (".rf64",), "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",), "AIFF": (".aif", ".aiff", ".aifc"), "AU": (".au", ".snd"),
    "CAF": (".caf",), "NIST": (".sph", ".nist"), "IRCAM": (".sf",), "VOC": (".voc",), "AVR": (".avr",),
    "SVX": (".iff", ".svx"), "PAF": (".paf",), "PVF": (".pvf",), "SD2": (".sd2",), "SDS": (".sds",),
    "WVE": (".wve",), "XI": (".xi",),
}
AUDIO_EXTENSIONS = frozenset(ext for fmt, exts in _FORMAT_EXTENSIONS.items() if fmt in sf.available_formats()
                             for ext in exts)


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average channels; accepts ``(n,)`` or ``(n, channels)`` as soundfile returns."""
    y = np.asarray(y, dtype=np.float32)
    return y.mean(axis=1) if y.ndim == 2 else y


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono signal with soxr (high quality)."""
    if sr_in == sr_out:
        return np.ascontiguousarray(y, dtype=np.float32)
    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def check_signal(y: np.ndarray, sr: int, *, source: str | Path = "<array>") -> np.ndarray:
    """Validate a signal at the boundary: finite, long enough, not silent.

    Returns the signal as contiguous mono float32; raises :class:`AudioError` otherwise.
    """
    y = to_mono(y)
    if y.ndim != 1:
        raise AudioError(f"expected 1-D or (samples, channels) audio, got shape {y.shape}", path=source)
    if y.size < int(MIN_SECONDS * sr):
        raise AudioError(f"audio is shorter than {MIN_SECONDS} s", path=source, fix="pass a longer recording")
    if not np.isfinite(y).all():
        raise AudioError("audio contains NaN or infinite samples", path=source)
    if float(np.abs(y).max()) < SILENCE_PEAK:
        raise AudioError("audio is silent", path=source, fix="check the recording level or remove the file")
    return np.ascontiguousarray(y)


def audio_files(path: str | Path) -> list[Path]:
    """The audio files a path names: a file itself, or every audio file under a folder.

    A folder is searched recursively for files with an extension of a format that
    libsndfile decodes (:data:`AUDIO_EXTENSIONS`, any case), skipping hidden files and
    folders (names starting with ``.``, such as macOS ``._x.wav`` companions); the
    result is sorted by relative path, so it is the same on every run and machine. A
    file is returned as it is, whatever its extension (decoding it says if it is not audio).

    Parameters
    ----------
    path : str or Path
        An audio file or a folder.

    Returns
    -------
    list of Path
        One or more paths (a folder's are ``path / relative``).

    Raises
    ------
    AudioError
        When ``path`` does not exist, is neither a file nor a folder (a socket, a device,
        a pipe), or is a folder without audio files.

    Examples
    --------
    >>> audio_files("recordings/")  # doctest: +SKIP
    [PosixPath('recordings/a.wav'), PosixPath('recordings/day2/b.flac')]
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        if not found:
            raise AudioError("folder has no audio files", path=path,
                             fix="emovox reads WAV, FLAC, OGG, MP3, AIFF and the other formats of libsndfile")
        return sorted(found, key=lambda p: p.relative_to(path).parts)
    if not path.exists() and not path.is_symlink():
        raise AudioError("no such file or folder", path=path, fix="check the path")
    raise AudioError(f"is {_kind(path)}, neither a file nor a folder", path=path, fix="pass an audio file or a folder")


def _kind(path: Path) -> str:
    """What a path that is neither a regular file nor a folder is, in words."""
    if not path.exists():
        return "a broken symbolic link"
    mode = path.stat().st_mode
    for test, words in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "a special file"


def load(path: str | Path, *, sr: int) -> np.ndarray:
    """Decode a file (any libsndfile format, rate, channel count) to mono float32 at ``sr`` Hz.

    Examples
    --------
    >>> y = load("speech.flac", sr=16000)  # doctest: +SKIP
    """
    if Path(path).is_dir():
        raise AudioError("is a folder, not a file", path=path, fix="emovox.audio_files(folder) lists its audio files")
    if not Path(path).is_file():
        raise AudioError("no such file", path=path, fix="check the path")
    return _decode(str(path), sr, name=path, fix="convert it to WAV/FLAC or remove it")


def decode_bytes(data: bytes, *, sr: int, source: str = "<upload>") -> np.ndarray:
    """Like :func:`load` for an in-memory file (e.g. an HTTP upload)."""
    if not data:
        raise AudioError("empty file", path=source)
    return _decode(io.BytesIO(data), sr, name=source, fix="upload WAV, FLAC or OGG audio")


def _decode(source: str | BinaryIO, sr: int, *, name: str | Path, fix: str) -> np.ndarray:
    try:
        y, sr_in = sf.read(source, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"cannot decode audio ({exc})", path=name, fix=fix) from None
    return resample(check_signal(y, sr_in, source=name), sr_in, sr)


def duration(source: str | Path | bytes) -> float:
    """Duration in seconds, read from the header only (a path or a file's bytes)."""
    try:
        if isinstance(source, bytes):
            with sf.SoundFile(io.BytesIO(source)) as fh:
                return fh.frames / fh.samplerate
        return sf.info(str(source)).duration
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"cannot read audio header ({exc})", path=None if isinstance(source, bytes) else source,
                         fix="use WAV, FLAC or OGG audio") from None


def stream(source: str | Path | BinaryIO, *, sr: int, block_s: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive mono blocks at ``sr`` Hz without loading the whole file.

    ``source`` is a path or a binary file object. Memory stays flat whatever the length:
    one block is decoded and resampled at a time (soxr keeps the filter state between
    blocks, so the joins are seamless).
    """
    name = source if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")
    try:
        fh = sf.SoundFile(str(source) if isinstance(source, Path) else source)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"cannot decode audio ({exc})", path=name, fix="convert it to WAV/FLAC") from None
    with fh:
        rate = fh.samplerate
        resampler = None if rate == sr else soxr.ResampleStream(rate, sr, 1, dtype="float32")
        blocksize = int(block_s * rate)
        while True:
            block = fh.read(blocksize, dtype="float32", always_2d=False)
            last = len(block) < blocksize
            y = to_mono(block)
            if resampler is not None:
                y = resampler.resample_chunk(y, last=last)
            if y.size:
                yield y.astype(np.float32, copy=False)
            if last:
                return

"""Test-time channel conditions: held-out audio through a telephone line, noise, a room or a codec.

Training augmentation (:mod:`emovox.augment`) makes copies to learn from; a condition
degrades the *test* audio, so an evaluation says how a model holds up on the channels users
record through. The transforms are :mod:`emovox.augment`'s own; what differs is where their
random draws come from (below). Names, as ``--test-conditions`` takes them:

- ``clean``: the audio as it is;
- ``phone``: a telephone line, 300-3400 Hz at 8 kHz with G.711 mu-law coding;
- ``white:SNR``, ``pink:SNR``: white or pink (-3 dB per octave) noise, ``SNR`` dB below the
  clip's mean power (measured over the whole clip);
- ``babble:SNR``: :data:`BABBLE_TALKERS` utterances of other speakers, each as loud as the
  others, summed into babble at ``SNR`` dB; the voices come from a pool of files that the
  evaluation chooses among speakers who are not tested (:func:`babble_pool`; in
  leave-one-corpus-out, never the held-out corpus);
- ``reverb:RT60``: a synthetic room with an ``RT60``-second reverberation time;
- ``mp3:LEVEL``: MP3 coding at libsndfile's variable-bitrate compression level (0 best,
  1 smallest; on ten EMO-DB and ten nEMO clips at 16 kHz ``mp3:0.5`` came out at about
  43 kbit/s, ``mp3:0.9`` at 31, ``mp3:1`` at 24);
- a chain with ``+``, applied left to right: ``phone+white:15`` is the telephone line,
  then white noise at 15 dB SNR (``white:15+phone`` puts the noise before the line).

Draws: every condition is deterministic per clip and condition. Its random numbers are
seeded by SHA-256 of (:data:`SALT`, the condition's name, the clip's samples), so the same
file under the same condition always gives the same audio, another condition (or salt)
other audio. Training augmentation seeds its draws by CRC-32 of the samples alone, so a
test noise, room or babble is never a training copy played back. ``phone`` and ``mp3``
draw nothing: a telephone line is the same line at training and at test time.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import librosa
import numpy as np

from emovox import audio
from emovox.augment import Rng, mp3, noise, noise_rms, phone, reverb
from emovox.errors import ConfigError

CLEAN = "clean"
SALT = "emovox/test-condition/1"  # test draws differ from training augmentation's
PHONE_RATE = 8000  # Hz: a narrow-band telephone line
BABBLE_TALKERS = 6  # voices summed into one babble
BABBLE_POOL = 32  # files a fold's babble is drawn from, one per speaker as far as they go
BABBLE_TRIM_DB = 30  # silence trimmed off each babble voice (dB below its peak)


def _babble(y: np.ndarray, sr: int, snr_db: float, rng: Rng, *, voices: Sequence[np.ndarray]) -> np.ndarray:
    """Add :data:`BABBLE_TALKERS` of ``voices``, each looped from a random start to the clip's
    length and scaled to the same power, summed, at ``snr_db`` below ``y``."""
    mix = np.zeros(len(y))
    for i in rng.choice(len(voices), size=min(BABBLE_TALKERS, len(voices)), replace=False):
        v = voices[i]
        talker = np.resize(np.roll(v, -int(rng.integers(len(v)))), len(y)).astype(np.float64)
        mix += talker / np.sqrt(max(np.mean(talker**2), 1e-20))
    return y + mix / np.sqrt(max(np.mean(mix**2), 1e-20)) * noise_rms(y, snr_db)


# step kind -> (transform(y, sr, value, rng), lowest value, highest value); phone takes no value
STEPS: dict[str, tuple[Callable[..., np.ndarray], float, float]] = {
    "phone": (lambda y, sr, _, rng: phone(y, sr, PHONE_RATE, rng), 0, 0),
    "white": (noise, -10.0, 60.0),
    "pink": (lambda y, sr, snr, rng: noise(y, sr, snr, rng, pink=True), -10.0, 60.0),
    "babble": (_babble, -10.0, 60.0),
    "reverb": (reverb, 0.05, 3.0),
    "mp3": (mp3, 0.0, 1.0),
}
FIX = ("use clean, phone, white:SNR_DB, pink:SNR_DB, babble:SNR_DB, reverb:RT60_S (0.05-3) or mp3:LEVEL (0-1), "
       "chained with +, e.g. phone,white:10,babble:10,phone+white:15,reverb:0.6")


def _step(spec: str) -> tuple[str, float]:
    kind, colon, value = spec.partition(":")
    known = STEPS.get(kind)
    if known is None or (kind == "phone") == bool(colon):
        raise ConfigError(f"bad test condition {spec!r}", fix=FIX)
    if kind == "phone":
        return kind, 0.0
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"bad test condition {spec!r}", fix=FIX) from None
    if not known[1] <= number <= known[2]:
        raise ConfigError(f"test condition {spec!r} is out of range", fix=FIX)
    return kind, number


@dataclass(frozen=True)
class Condition:
    """A test-time channel: a chain of steps named like ``phone+white:15`` (module docstring).

    Attributes
    ----------
    name : str
        The canonical name (numbers as ``%g``: ``white:10.0`` is ``white:10``).
    babble : tuple of str
        Audio files the ``babble`` steps draw their voices from (see :func:`babble_pool`).
    salt : str
        Mixed into every seed; :data:`SALT` unless a test wants other draws.

    Examples
    --------
    >>> line = Condition.parse("phone+white:15")
    >>> line.name, line.needs_babble
    ('phone+white:15', False)
    >>> noisy = line(np.random.randn(16000).astype("float32"), 16000)  # doctest: +SKIP
    """

    name: str
    babble: tuple[str, ...] = ()
    salt: str = SALT

    @classmethod
    def parse(cls, spec: str) -> Condition:
        """``" white:10.0 "`` -> ``Condition("white:10")``; a bad name is a :class:`ConfigError`."""
        steps = [_step(part.strip()) for part in spec.strip().split("+")]
        return cls("+".join(k if k == "phone" else f"{k}:{v:g}" for k, v in steps))

    @property
    def steps(self) -> list[tuple[str, float]]:
        return [_step(part) for part in self.name.split("+")]

    @property
    def needs_babble(self) -> bool:
        return any(kind == "babble" for kind, _ in self.steps)

    def seed(self, y: np.ndarray) -> int:
        """The seed of this condition's draws for clip ``y``: SHA-256 of salt, name and samples."""
        h = hashlib.sha256(f"{self.salt}\0{self.name}\0".encode())
        h.update(np.ascontiguousarray(y, dtype=np.float32).tobytes())
        return int.from_bytes(h.digest()[:16], "little")

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        """The clip ``y`` (mono, ``sr`` Hz) through the chain, float32, as long as ``y``."""
        rng = np.random.default_rng(self.seed(y))
        out = np.asarray(y, dtype=np.float32)
        for kind, value in self.steps:
            if kind == "babble":
                if not self.babble:
                    raise ConfigError(f"{self.name}: babble needs other speakers' audio",
                                      fix="evaluate with speakers outside the test set")
                out = _babble(out, sr, value, rng, voices=_voices(self.babble, sr))
            else:
                out = STEPS[kind][0](out, sr, value, rng)
        return np.asarray(out, dtype=np.float32)


def parse_conditions(specs: Sequence[str]) -> tuple[Condition, ...]:
    """Conditions from names (``clean`` and repeats dropped: clean is always reported)."""
    found = {c.name: c for c in (Condition.parse(s) for s in specs if s.strip() and s.strip() != CLEAN)}
    return tuple(found.values())


def babble_pool(paths: Sequence[str], speakers: Sequence[str | None], corpora: Sequence[str], *,
                test_speakers: set[str | None], test_corpus: str | None = None,
                size: int = BABBLE_POOL) -> tuple[str, ...]:
    """The files a fold's babble is made of: ``size`` of the given utterances, one per
    speaker in a seeded order, then a second round, and so on; never one of
    ``test_speakers``, of an unknown speaker, or of the held-out ``test_corpus``.

    Parameters
    ----------
    paths, speakers, corpora : sequences
        One entry per candidate utterance (a fold's training utterances).
    test_speakers : set
        Speakers under test: their voices never make babble.
    test_corpus : str, optional
        The held-out corpus in leave-one-corpus-out.
    size : int
        Files in the pool.
    """
    by_speaker: dict[str, list[str]] = {}
    for path, speaker, corpus in zip(paths, speakers, corpora, strict=True):
        if speaker is not None and speaker not in test_speakers and corpus != test_corpus:
            by_speaker.setdefault(speaker, []).append(path)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{SALT}\0babble-pool".encode()).digest()[:8], "little"))
    queues = [list(rng.permutation(sorted(by_speaker[s]))) for s in rng.permutation(sorted(by_speaker))]
    pool: list[str] = []
    while len(pool) < size and any(queues):
        pool += [q.pop(0) for q in queues if q][: size - len(pool)]
    return tuple(str(p) for p in pool)


@functools.lru_cache(maxsize=4)
def _voices(paths: tuple[str, ...], sr: int) -> tuple[np.ndarray, ...]:
    """The babble pool's audio at ``sr`` Hz, leading and trailing silence trimmed (cached per process)."""
    return tuple(librosa.effects.trim(audio.load(p, sr=sr), top_db=BABBLE_TRIM_DB)[0] for p in paths)

"""How good is the input? Estimated SNR, clipping, effective bandwidth and speech seconds.

:func:`assess` is a pure function of a mono signal. Its block travels with each result so
that a user can see why a result may be doubtful (a noisy line, a clipped recording, a
telephone band, too little speech).
"""

from __future__ import annotations

import numpy as np

from emovox.segment import VadConfig, detector

N_FFT = 512  # samples per analysis frame (32 ms at 16 kHz), hann window
HOP = 256
NOISE_SHARE = 0.1  # the quietest tenth of the frames is the noise floor
ACTIVE_DB = 3.0  # a frame (or a frequency bin) this far above the floor holds signal
MAX_SNR_DB = 60.0  # reported as at most this (clean audio with digital silence has no floor)
CLIP_LEVEL = 0.99  # |sample| at or above this share of full scale counts as clipped
BANDWIDTH_SHARE = 0.999  # the effective band holds this share of the energy above the floor
SILENT_POWER = 1e-10  # mean square below this (-100 dBFS) is digital silence
# when to say so in "issues"
LOW_SNR_DB = 10.0
CLIPPED_SHARE = 0.001
NARROW_BAND_HZ = 3700.0  # a telephone line passes 300-3400 Hz
LITTLE_SPEECH_S = 1.0


def assess(y: np.ndarray, sr: int, *, vad: VadConfig | None = None) -> dict:
    """The quality block of one mono signal.

    Parameters
    ----------
    y : np.ndarray
        Mono samples, full scale 1.0 (the model's input, e.g. 16 kHz).
    sr : int
        Sample rate in Hz.
    vad : VadConfig, optional
        Speech detector counting ``speech_s`` (default: the default VAD, Silero).

    Returns
    -------
    dict
        ``snr_db``: signal-to-noise ratio in dB, the mean power of the 32 ms frames 3 dB
        or more above the noise floor (the mean of the quietest tenth) against that floor,
        at most 60; ``None`` when no frame rises 3 dB above the floor. ``clipping``: share
        of samples at or above 99% of full scale. ``bandwidth_hz``: the frequency in Hz
        below which 99.9% of the energy lies that stands 3 dB above the noise spectrum
        (a telephone line gives about 3.4 kHz); ``None`` for silence.
        ``speech_s``: seconds the VAD takes for speech. ``issues``: short phrases for what
        is poor (empty when nothing is).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> assess(0.01 * rng.standard_normal(16000), 16000)["speech_s"]
    0.0
    """
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    clipping = float(np.mean(np.abs(y) >= CLIP_LEVEL)) if len(y) else 0.0
    speech_s = _speech_seconds(y, sr, vad or VadConfig())
    power = _frame_spectra(y)
    snr_db = bandwidth_hz = None
    if power.size and float(np.mean(y.astype(np.float64) ** 2)) > SILENT_POWER:
        energy = power.sum(axis=1)
        quiet = np.argsort(energy)[: max(1, int(NOISE_SHARE * len(energy)))]
        floor = max(float(energy[quiet].mean()), SILENT_POWER * N_FFT)
        active = energy > floor * 10 ** (ACTIVE_DB / 10)
        if active.any():
            snr_db = min(MAX_SNR_DB, round(float(10 * np.log10(max(energy[active].mean() / floor - 1.0, 1e-3))), 1))
            signal = power[active].mean(axis=0)
            noise = power[~active].mean(axis=0) if not active.all() else power[quiet].mean(axis=0)
        else:  # steady: no floor to stand out from, so the band of all there is
            signal, noise = power.mean(axis=0), np.zeros(power.shape[1])
        above = np.where(signal > noise * 10 ** (ACTIVE_DB / 10), signal - noise, 0.0)
        share = np.cumsum(above) / above.sum()
        bandwidth_hz = round(float(np.fft.rfftfreq(N_FFT, 1 / sr)[np.searchsorted(share, BANDWIDTH_SHARE)]))
    return {"snr_db": snr_db, "clipping": round(clipping, 5), "bandwidth_hz": bandwidth_hz,
            "speech_s": round(speech_s, 2), "issues": _issues(snr_db, clipping, bandwidth_hz, speech_s)}


def _frame_spectra(y: np.ndarray) -> np.ndarray:
    """Power spectra ``(frames, N_FFT // 2 + 1)`` of hann-windowed frames."""
    if len(y) < N_FFT:
        return np.zeros((0, N_FFT // 2 + 1))
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP].astype(np.float64)
    return np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2


def _speech_seconds(y: np.ndarray, sr: int, cfg: VadConfig) -> float:
    det = detector(sr, cfg)
    decisions = np.concatenate([det(y), det.flush()])
    return float(decisions.sum() * det.hop / sr)


def _issues(snr_db: float | None, clipping: float, bandwidth_hz: float | None, speech_s: float) -> list[str]:
    out = []
    if speech_s < LITTLE_SPEECH_S:
        out.append("no speech found" if speech_s == 0 else f"little speech ({speech_s:.1f} s)")
    if snr_db is not None and snr_db < LOW_SNR_DB:
        out.append(f"noisy (SNR {snr_db:.0f} dB)")
    if clipping >= CLIPPED_SHARE:
        out.append(f"clipped ({clipping:.1%} of samples)")
    if bandwidth_hz is not None and bandwidth_hz < NARROW_BAND_HZ:
        out.append(f"narrow band ({bandwidth_hz / 1000:.1f} kHz, telephone-like)")
    return out

"""eGeMAPS-style voice descriptors and their functionals, batched in torch and exportable to ONNX.

:class:`VoiceFeatures` turns a batch of zero-padded 16 kHz clips into one vector per clip
(:data:`NAMES`): pitch, voice quality (jitter, shimmer, HNR, H1-H2, H1-A3), formants,
loudness contour, spectral balance, MFCC 1-4 and the rhythm of voiced segments, each summed
up over its frames the way eGeMAPS does (means, spreads, percentiles, slopes, rates). It
need not reproduce openSMILE's numbers, only its use as an emotion feature; unlike
openSMILE it runs a whole batch in one pass, on CPU or CUDA, and exports as ONNX.

Every value is level-free: the clip is first scaled to unit RMS (after its DC offset is
removed), and every threshold is relative to the clip itself, so the gain of the
microphone chain changes nothing. Row ``b`` depends only on ``wave[b, :lengths[b]]``.

The descriptors are made to survive a telephone line and background noise (the model is
trained on clean audio and tested through ``phone`` and ``white:10``,
:mod:`emovox.conditions`): everything spectral reads only the 300-3400 Hz telephone band,
and a **noise floor** is removed first. Per mel band, the floor is the 10th percentile of
the band's power over the clip's frames (at most half its mean, so a steady sound is not
taken for noise); spread back over the bins, it is subtracted from every frame's power
spectrum, which keeps at least a tenth of each bin's power. The clip's **span** runs from its
first to its last frame more than 3 times above the floor (noise before and after speech
does not count as pause); every functional and rate is taken over the span.

One analysis frame (40 ms Hann window, 10 ms hop, 1024-point FFT) serves every descriptor:

- **F0** from the normalised autocorrelation of the 0-4 kHz band of the raw spectrum,
  computed as a matmul of the power spectrum with a cosine basis at log-spaced lags (1/3
  semitone steps, 60-600 Hz), divided by the window's own autocorrelation (Boersma 1993),
  with an octave cost and parabolic refinement, then a 3-frame median; a frame is voiced
  when the peak exceeds 0.45 and the frame (floor removed) is less than 30 dB below the
  clip's loudest frame. HNR is ``10 log10(r / (1 - r))`` of that peak (so it is the HNR of
  the 0-4 kHz band).
- **Jitter and shimmer** from five successive glottal pulses from every third frame (the
  signal's maximum in each expected period, refined to a fraction of a sample): local jitter
  is the mean absolute difference of successive periods over their mean, local shimmer the
  same for the pulse amplitudes (peak to trough within the pulse's search window).
- **Formants** F1-F3 every other frame from LPC (order 8, Levinson-Durbin) of the 0-4 kHz
  band (selective linear prediction from the floor-removed power spectrum), the first three
  peaks of the LPC envelope on a 31 Hz grid, refined by a parabola whose curvature gives the
  bandwidth; H1-H2 and H1-A3 from the strongest spectrum bin near each harmonic and formant,
  and each formant's level re the frame's level in the 300-3400 Hz mel bands (not re H1,
  which a telephone line removes below 300 Hz).
- **Spectral balance**: alpha ratio (300-1000 over 1000-3400 Hz) and Hammarberg index
  (strongest bin in 300-2000 over 2000-3400 Hz) from the spectrum; slopes 300-1000 and
  500-1500 Hz, MFCC 1-4 (DCT of the mel bands centred in 300-3400 Hz), flux (of those
  bands' shares of their energy) and loudness (the sum of those bands' powers ** 0.3,
  divided by the clip's mean) from 26 HTK mel bands; a loudness peak must rise 1 % of the
  mean loudness above the frame before it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SAMPLE_RATE = 16000  # Hz
HOP = 160  # samples: 10 ms between frames
WIN = 640  # samples: 40 ms Hann window
N_FFT = 1024  # >= WIN + the longest pitch lag, so the spectrum's autocorrelation does not wrap
F0_MIN, F0_MAX = 60.0, 600.0  # Hz: the pitch range searched
F0_REF = 27.5  # Hz: semitone reference (eGeMAPS)
LAG_STEP_ST = 1 / 3  # semitones between the autocorrelation lags searched
PITCH_BAND_HZ = 4000.0  # the autocorrelation for pitch and HNR reads the spectrum up to here
HIGH_PASS_HZ = 50.0  # spectrum bins below this (DC, rumble, the window's leakage of them) are dropped
OCTAVE_COST = 0.1  # per octave of lag: favours the shorter of near-equal autocorrelation peaks
VOICING = 0.45  # normalised autocorrelation peak above which a frame may be voiced
SILENCE_DB = -30.0  # dB re the clip's loudest frame below which no frame is voiced
PULSES = 5  # glottal pulses located per voiced frame (4 periods, 3 period differences)
PULSE_SEARCH = 0.25  # each next pulse is searched within this share of a period of its expected place
PULSE_FRAME_STRIDE = 3  # pulses are located from every third frame (30 ms apart: about the span they cover)
FORMANT_FRAME_STRIDE = 2  # formants and harmonic amplitudes are read every other frame (20 ms)
LPC_ORDER = 8
LPC_BAND_HZ = 4000.0  # formants are read from the 0-4 kHz band (effective rate 8 kHz)
LPC_LAG_WINDOW_HZ = 60.0  # Gaussian lag window (bandwidth broadening) for a stable LPC
PRE_EMPHASIS = 0.97
ENVELOPE_POINTS = 128  # LPC envelope grid over 0-4 kHz (31 Hz steps)
FORMANT_MIN_HZ = 90.0
MAX_BANDWIDTH_HZ = 1000.0  # flatter envelope peaks are counted at this bandwidth
N_MELS = 26  # HTK mel bands for loudness and MFCC
N_MFCC = 4  # MFCC 1-4 (MFCC 0 is the level)
LOUDNESS_POWER = 0.3  # specific loudness ~ band power ** 0.3 (Zwicker's law, roughly)
PEAK_SMOOTH = 5  # frames of the moving average before counting loudness peaks
PEAK_MARGIN = 0.01  # a loudness peak rises this much (re the clip's mean loudness) above the frame before it
EPS = 1e-10
BAND_LO, BAND_HI = 300.0, 3400.0  # Hz: spectral balance, MFCC, flux and loudness read this telephone band
FLOOR_QUANTILE = 0.1  # each mel band's noise floor: this quantile of its power over the clip's frames
FLOOR_CAP = 0.5  # ... at most this share of the band's mean power (a steady sound is not all noise)
FLOOR_KEEP = 0.1  # spectral subtraction leaves at least this share of a bin's power
SPAN_OVER_FLOOR = 3.0  # the clip runs from its first to its last frame this many times above the floor
QUANTILES = (0.2, 0.5, 0.8)

_VOICED_LLDS = ("jitter", "shimmer", "hnr", "h1h2", "h1a3")
_FORMANTS = ("f1", "f2", "f3")
_SPECTRAL = ("alpha_ratio", "hammarberg", "slope300_1000", "slope500_1500",
             *(f"mfcc{i}" for i in range(1, N_MFCC + 1)), "flux")


def _names() -> tuple[str, ...]:
    pitch = ["f0_mean", "f0_cv", *(f"f0_p{int(q * 100)}" for q in QUANTILES), "f0_range",
             "f0_rise_mean", "f0_rise_std", "f0_fall_mean", "f0_fall_std"]
    loud = ["loudness_cv", *(f"loudness_p{int(q * 100)}" for q in QUANTILES), "loudness_range",
            "loudness_rise_mean", "loudness_rise_std", "loudness_fall_mean", "loudness_fall_std",
            "loudness_peaks_per_s", "loudness_voiced_mean", "loudness_unvoiced_mean"]
    voiced = [*_VOICED_LLDS, *(f"{f}_hz" for f in _FORMANTS), *(f"{f}_bandwidth" for f in _FORMANTS),
              *(f"{f}_amplitude_rel_level" for f in _FORMANTS)]
    stats = [f"{n}_{s}" for n in voiced for s in ("mean", "std")]
    spectral = [f"{n}_{s}" for n in _SPECTRAL for s in ("voiced_mean", "voiced_std", "unvoiced_mean")]
    rhythm = ["voiced_fraction", "voiced_segments_per_s", "voiced_segment_mean_s", "voiced_segment_std_s",
              "unvoiced_segment_mean_s", "unvoiced_segment_std_s"]
    return (*pitch, *loud, *stats, *spectral, *rhythm)


NAMES: tuple[str, ...] = _names()


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _bases() -> dict[str, np.ndarray]:
    """The constants of the analysis (float64, int64 or bool arrays), computed once."""
    freqs = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
    one_sided = np.where((freqs == 0) | (freqs == SAMPLE_RATE / 2), 1.0, 2.0)
    window = np.zeros(N_FFT)
    window[:WIN] = np.hanning(WIN + 1)[:-1]  # periodic Hann
    # pitch: autocorrelation at log-spaced lags from the 0-4 kHz band
    n_lags = int(12 * math.log2(F0_MAX / F0_MIN) / LAG_STEP_ST) + 1
    f0_grid = F0_MAX * 2.0 ** (-np.arange(n_lags) * LAG_STEP_ST / 12)
    lags = SAMPLE_RATE / f0_grid  # samples
    band = freqs <= PITCH_BAND_HZ
    acf = one_sided[band, None] * np.cos(2 * np.pi * np.outer(freqs[band], lags) / SAMPLE_RATE)
    win_power = np.abs(np.fft.rfft(window)) ** 2
    win_acf = (one_sided * win_power) @ np.cos(2 * np.pi * np.outer(freqs, lags) / SAMPLE_RATE)
    win_acf /= (one_sided * win_power).sum()
    # formants: autocorrelation of the pre-emphasised 0-5.5 kHz band at lags of 1 / 11 kHz
    lpc_band = freqs <= LPC_BAND_HZ
    emphasis = np.abs(1 - PRE_EMPHASIS * np.exp(-2j * np.pi * freqs / SAMPLE_RATE)) ** 2
    m = np.arange(LPC_ORDER + 1)
    lag_window = np.exp(-0.5 * (2 * np.pi * LPC_LAG_WINDOW_HZ * m / (2 * LPC_BAND_HZ)) ** 2)
    lpc_acf = ((one_sided * emphasis)[lpc_band, None]
               * np.cos(2 * np.pi * np.outer(freqs[lpc_band], m) / (2 * LPC_BAND_HZ)) * lag_window)
    lpc_acf[:, 0] *= 1.0 + 1e-4  # white-noise correction
    # Levinson-Durbin step i reads r[i - j] for j < i: one (order+1) x (order * (order+1)) map
    shift = np.zeros((LPC_ORDER + 1, LPC_ORDER, LPC_ORDER + 1))
    flip = np.zeros((LPC_ORDER, LPC_ORDER + 1, LPC_ORDER + 1))  # a_j <- a_(i - j), j = 1..i
    for i in range(1, LPC_ORDER + 1):
        for j in range(i):
            shift[i - j, i - 1, j] = 1.0
        for j in range(1, i + 1):
            flip[i - 1, i - j, j] = 1.0
    env_hz = np.linspace(0, LPC_BAND_HZ, ENVELOPE_POINTS)
    phase = 2 * np.pi * np.outer(m, env_hz) / (2 * LPC_BAND_HZ)
    # bands: alpha ratio (50-1000, 1000-5000 Hz) and HTK mel triangles (20 Hz - 8 kHz)
    edges = 700.0 * (10 ** (np.linspace(_hz_to_mel(20.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2) / 2595) - 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    mel = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))).T
    alpha = np.stack([(freqs >= BAND_LO) & (freqs < 1000), (freqs >= 1000) & (freqs < BAND_HI)], axis=1)
    inband = (mid[:, 0] >= BAND_LO) & (mid[:, 0] <= BAND_HI)
    n_in = int(inband.sum())
    k = np.arange(n_in)
    dct = np.zeros((N_MELS, N_MFCC))
    dct[inband] = np.sqrt(2.0 / n_in) * np.cos(np.pi / n_in * (k[:, None] + 0.5) * np.arange(1, N_MFCC + 1))
    # noise floor of each mel band spread back over the bins (triangular interpolation)
    spread = mel.T / np.maximum(mel.sum(0), 1e-3)[:, None] / np.maximum(mel.sum(1), 1e-3)[None, :]
    dct *= math.log(10) / 10  # applied to band levels in dB, gives the MFCC of natural-log energies
    # spectral slopes: regression of the mel bands' levels (dB, harmonics smoothed out) on their centres
    slopes = np.zeros((N_MELS, 2))
    for col, (a, b) in enumerate(((BAND_LO, 1000), (500, 1500))):
        inside = (mid[:, 0] >= a) & (mid[:, 0] <= b)
        f = mid[inside, 0] / 1000.0  # kHz: slopes in dB / kHz
        slopes[inside, col] = (f - f.mean()) / ((f - f.mean()) ** 2).sum()
    max_period = math.ceil(SAMPLE_RATE / F0_MIN)
    high_pass = freqs >= HIGH_PASS_HZ
    # (bases x bins) matrices that read the (B, bins, T) power spectrum, high-passed
    pitch = np.concatenate([acf, one_sided[band, None]], axis=1) * high_pass[band, None]
    lpc_acf = lpc_acf * high_pass[lpc_band, None]
    bands = np.concatenate([alpha, mel, np.ones((len(freqs), 1))], axis=1) * high_pass[:, None]
    return {
        "window": window, "pitch_basis": pitch.T, "window_acf": np.clip(win_acf, 1e-3, None),
        "octave_cost": -OCTAVE_COST * np.log2(lags * F0_MIN / SAMPLE_RATE),
        "lpc_basis": lpc_acf.T, "lpc_shift": shift.reshape(LPC_ORDER + 1, -1), "lpc_flip": flip,
        "env_basis": np.concatenate([np.cos(phase), np.sin(phase)], axis=1),
        "formant_range": env_hz[1:-1] >= FORMANT_MIN_HZ, "peak_rank": np.arange(1.0, 4.0)[:, None],
        "bands": bands.T, "dct": dct, "slopes": slopes, "spread": spread, "inband": inband.astype(float),
        # integer offsets: a pulse's first search window (one period), the next ones, parabola points, +-4 bins
        "first_span": np.arange(max_period + 1), "later_span": np.arange(math.ceil(2 * PULSE_SEARCH * max_period) + 1),
        "three": np.arange(-1, 2), "nine": np.arange(-4, 5), "quantiles": np.array(QUANTILES),
        "floor_q": np.array([FLOOR_QUANTILE]),
    }


def _masked_stats(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation over frames (dim 1) of ``x`` weighted by the 0/1 mask ``w``
    (both ``(B, T, D)`` or broadcastable); 0 where the mask is empty."""
    n = w.sum(1).clamp_min(1.0)
    mean = (x * w).sum(1) / n
    var = ((x - mean.unsqueeze(1)).square() * w).sum(1) / n
    return mean, var.sqrt()


def masked_quantiles(x: Tensor, w: Tensor, q: Tensor) -> Tensor:
    """Quantiles ``q`` (in [0, 1]) of ``x`` ``(B, K, T)`` over the frames where ``w`` is 1
    (linear interpolation, as numpy); 0 where the mask is empty: ``(B, K, len(q))``."""
    n = w.sum(2, keepdim=True)
    ordered = torch.sort(torch.where(w > 0, x, torch.full_like(x, 1e9)), dim=2).values
    pos = q * (n - 1).clamp_min(0.0)
    lo = pos.floor()
    both = ordered.gather(2, torch.cat([lo, torch.minimum(lo + 1, (n - 1).clamp_min(0.0))], dim=2).long())
    v_lo, v_hi = both.chunk(2, dim=2)
    return (v_lo + (pos - lo) * (v_hi - v_lo)) * (n > 0).to(x.dtype)


def _slopes(x: Tensor, w: Tensor) -> Tensor:
    """Mean and std of the rising, then of the falling frame-to-frame changes of ``x``
    ``(B, K, T)`` between consecutive frames both in mask ``w``, per second: ``(B, K, 4)``."""
    d = (x[..., 1:] - x[..., :-1]) * (SAMPLE_RATE / HOP)
    both = w[..., 1:] * w[..., :-1]
    rise = (d > 0).to(x.dtype)
    mean, std = _masked_stats(torch.stack([d, -d], dim=3).transpose(1, 2),
                              (both.unsqueeze(3) * torch.stack([rise, 1 - rise], dim=3)).transpose(1, 2))
    return torch.stack([mean, std], dim=3).flatten(2)  # rise mean, rise std, fall mean, fall std


def _runs(v: Tensor, u: Tensor) -> Tensor:
    """Mean and std of the lengths (s) of the runs of frames where ``v`` is 1, then of those
    where ``u`` is 1 (``u`` and ``v`` disjoint 0/1 masks ``(B, T)``): ``(B, 4)``."""
    before = torch.cumsum(v, dim=1)
    t = torch.cumsum(torch.ones_like(v), dim=1)
    bins = F.pad(v, (0, 1)) * 0.0
    # a run of v frames keeps t - cumsum(v) constant, a run of u frames keeps cumsum(v)
    lengths = torch.stack([bins.scatter_add(1, (t - before).long(), v),
                           bins.scatter_add(1, before.long(), u)], dim=2) * (HOP / SAMPLE_RATE)
    mean, std = _masked_stats(lengths, (lengths > 0).to(v.dtype))
    return torch.stack([mean, std], dim=2).flatten(1)


def _median3(x: Tensor, w: Tensor) -> Tensor:
    """``x`` ``(B, T)`` through a 3-frame median filter within runs where ``w`` is 1 (a missing
    neighbour counts as the frame itself), which removes single-frame octave jumps."""
    prev = torch.where(F.pad(w[:, :-1], (1, 0)) > 0, F.pad(x[:, :-1], (1, 0)), x)
    nxt = torch.where(F.pad(w[:, 1:], (0, 1)) > 0, F.pad(x[:, 1:], (0, 1)), x)
    return torch.maximum(torch.minimum(prev, x), torch.minimum(torch.maximum(prev, x), nxt))


def _parabola(y: Tensor) -> tuple[Tensor, Tensor]:
    """Offset (within +-0.5) and height of the vertex of the parabola through the three
    points ``y[..., 0:3]`` around a maximum ``y[..., 1]``."""
    left, mid, right = y.unbind(-1)
    offset = (0.5 * (left - right) / (left - 2 * mid + right).clamp(max=-EPS)).clamp(-0.5, 0.5)
    return offset, mid - 0.25 * (left - right) * offset


class VoiceFeatures(torch.nn.Module):
    """Batched eGeMAPS-style functionals: ``(B, N)`` 16 kHz waves -> ``(B, len(NAMES))``.

    Examples
    --------
    >>> wave = torch.randn(2, 16000)
    >>> VoiceFeatures()(wave, torch.tensor([16000, 8000])).shape
    torch.Size([2, 83])
    """

    def __init__(self) -> None:
        super().__init__()
        for name, value in _bases().items():
            tensor = torch.from_numpy(value)
            self.register_buffer(name, tensor.float() if tensor.is_floating_point() else tensor, persistent=False)

    def forward(self, wave: Tensor, lengths: Tensor) -> Tensor:
        """Functionals of each clip.

        Parameters
        ----------
        wave : Tensor
            ``(B, N)`` float32 samples at 16 kHz, zero-padded past each clip's length.
        lengths : Tensor
            ``(B,)`` int64: valid samples per row.

        Returns
        -------
        Tensor
            ``(B, len(NAMES))`` float32, in the order of :data:`NAMES`.
        """
        dtype = wave.dtype
        valid_samples = (torch.arange(wave.shape[1], device=wave.device) < lengths[:, None]).to(dtype)
        count = lengths[:, None].to(dtype).clamp_min(1.0)
        x = wave * valid_samples
        x = (x - x.sum(1, keepdim=True) / count) * valid_samples
        x = x / ((x.square().sum(1, keepdim=True) / count).sqrt() + EPS)

        # frame t's window is centred on sample t * HOP; N // HOP + 1 frames
        spec = torch.stft(F.pad(x, (WIN // 2, N_FFT - WIN // 2)), N_FFT, hop_length=HOP, window=self.window,
                          center=False, return_complex=False)
        raw = spec[..., 0].square() + spec[..., 1].square()  # (B, bins, T), never transposed
        valid = (torch.arange(raw.shape[2], device=wave.device) * HOP < lengths[:, None]).to(dtype)
        # noise floor: per mel band, a low quantile of its power over the clip (at most a share of its
        # mean), spread back over the bins and subtracted from every frame (pitch and HNR read `raw`)
        mel_raw = self.bands[2:2 + N_MELS] @ raw
        floor = masked_quantiles(mel_raw, valid.unsqueeze(1).expand_as(mel_raw), self.floor_q)[..., 0]
        mean_band = (mel_raw * valid.unsqueeze(1)).sum(2) / valid.sum(1, keepdim=True).clamp_min(1.0)
        floor = torch.minimum(floor, FLOOR_CAP * mean_band)  # (B, N_MELS)
        power = torch.maximum(raw - (floor @ self.spread).unsqueeze(2), FLOOR_KEEP * raw)
        # the clip's span: from its first to its last frame well above the floor (noise before and after is cut)
        active = valid * (mel_raw.sum(1) > torch.minimum(SPAN_OVER_FLOOR * floor.sum(1, keepdim=True),
                                                          FLOOR_CAP * mean_band.sum(1, keepdim=True))).to(dtype)
        after_first = torch.cumsum(active, dim=1) > 0
        before_last = (active.sum(1, keepdim=True) - torch.cumsum(active, dim=1) + active) > 0
        valid = valid * (after_first & before_last).to(dtype)
        # alpha ratio bands, mel bands, total energy: (B, T, 2 + N_MELS + 1), high-passed
        bands = (self.bands @ power).transpose(1, 2)
        energy = bands[..., -1]
        loud_enough = energy > energy.amax(1, keepdim=True) * 10 ** (SILENCE_DB / 10)

        # pitch and HNR: normalised autocorrelation of the 0-4 kHz band at log-spaced lags
        acf = (self.pitch_basis @ raw[:, : self.pitch_basis.shape[1]]).transpose(1, 2)
        r = acf[..., :-1] / (acf[..., -1:] + EPS) / self.window_acf
        scored = r + self.octave_cost
        best = scored.argmax(2, keepdim=True).clamp(1, r.shape[2] - 2) + self.three
        offset, _ = _parabola(torch.gather(scored, 2, best))
        _, peak = _parabola(torch.gather(r, 2, best))
        semitones = 12 * math.log2(F0_MAX / F0_REF) - (best[..., 1] + offset) * LAG_STEP_ST
        f0_hz = F0_REF * torch.exp(semitones * (math.log(2) / 12))
        voiced = valid * ((peak > VOICING) & loud_enough).to(dtype)
        unvoiced = valid - voiced
        semitones = _median3(semitones, voiced)
        peak = peak.clamp(1e-4, 1 - 1e-4)
        hnr = 10 * torch.log10(peak / (1 - peak))

        jitter, shimmer, pulses_ok = self._perturbation(x, f0_hz[:, ::PULSE_FRAME_STRIDE], lengths)
        sparse = power[..., ::FORMANT_FRAME_STRIDE]
        formant_hz, bandwidth, found = self._formants(
            (self.lpc_basis @ sparse[:, : self.lpc_basis.shape[1]]).transpose(1, 2))

        # harmonic amplitudes (dB): the strongest bin within +-1 bin of F0 and 2 F0, within
        # +-4 bins (+-62 Hz) of each formant
        bin_hz = SAMPLE_RATE / N_FFT
        f0_sparse = f0_hz[:, ::FORMANT_FRAME_STRIDE].unsqueeze(2)
        centres = (torch.cat([f0_sparse, 2 * f0_sparse, formant_hz], dim=2) / bin_hz).round().long()
        above_hp = math.ceil(HIGH_PASS_HZ / bin_hz)  # bins below the high-pass do not count
        near = (centres.transpose(1, 2).unsqueeze(2) + self.nine[:, None]).clamp(above_hp, power.shape[1] - 1)
        around = torch.gather(sparse, 1, near.flatten(1, 2)).unflatten(1, near.shape[1:3])  # (B, 5, 9, T)
        amplitude = 10 * torch.log10(torch.cat([around[:, :2, 3:6].amax(2), around[:, 2:].amax(2)], dim=1)
                                     + EPS).transpose(1, 2)
        # the frame's level (dB) over the in-band mel bands, a reference that a telephone line keeps
        level = 10 * torch.log10(bands[:, ::FORMANT_FRAME_STRIDE, 2:-1] @ self.inband.unsqueeze(1) + EPS)
        quality = torch.cat([amplitude[..., :1] - amplitude[..., 1:2], amplitude[..., :1] - amplitude[..., 4:],
                             formant_hz, bandwidth, amplitude[..., 2:] - level], dim=2)
        v_sparse = voiced[:, ::FORMANT_FRAME_STRIDE].unsqueeze(2)
        quality_mask = torch.cat([v_sparse, v_sparse * found[..., 2:], (v_sparse * found).repeat(1, 1, 3)], dim=2)

        # spectral balance, MFCC, flux, loudness (relative to the clip's mean)
        lo_bin, below_2k, below_top = (int(f / bin_hz) + 1 for f in (BAND_LO, 2000, BAND_HI))
        ratios = 10 * torch.log10(torch.stack([bands[..., 0], power[:, lo_bin:below_2k].amax(1)], dim=2) + EPS) - \
            10 * torch.log10(torch.stack([bands[..., 1], power[:, below_2k:below_top].amax(1)], dim=2) + EPS)
        bands = bands[..., :-1]
        mel_db = 10 * torch.log10(bands[..., 2:] + EPS)
        slopes = mel_db @ self.slopes
        mfcc = mel_db @ self.dct
        inb = bands[..., 2:] * self.inband
        shape = inb / (inb.sum(2, keepdim=True) + EPS)  # mel-band energy shares
        flux = F.pad((shape[:, 1:] - shape[:, :-1]).abs().sum(2), (1, 0)).unsqueeze(2)
        loudness = ((bands[..., 2:] + EPS).pow(LOUDNESS_POWER) * self.inband).sum(2) * valid
        loudness = (loudness / (loudness.sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp_min(1.0) + EPS))

        # functionals over frames: one masked pass for every mean and std
        v, u = voiced.unsqueeze(2), unvoiced.unsqueeze(2)
        v_flux = v * F.pad(valid[:, :-1], (1, 0)).unsqueeze(2)  # the first frame has no flux
        u_flux = u * F.pad(valid[:, :-1], (1, 0)).unsqueeze(2)
        spectral = torch.cat([ratios, slopes, mfcc, flux], dim=2)
        n_spectral = spectral.shape[2]
        lld = torch.cat([semitones.unsqueeze(2), loudness.unsqueeze(2), hnr.unsqueeze(2), spectral,
                         loudness.unsqueeze(2).expand(-1, -1, 2), spectral], dim=2)
        masks = torch.cat([v, valid.unsqueeze(2), v, v.expand(-1, -1, n_spectral - 1), v_flux, v, u,
                           u.expand(-1, -1, n_spectral - 1), u_flux], dim=2)
        mean, std = _masked_stats(lld, masks)
        m_pitch, m_loud, m_hnr, m_spec, m_loud_vu, m_spec_u = mean.split([1, 1, 1, n_spectral, 2, n_spectral], dim=1)
        s_pitch, s_loud, s_hnr, s_spec = std[:, : 3 + n_spectral].split([1, 1, 1, n_spectral], dim=1)
        p_mean, p_std = _masked_stats(torch.stack([jitter, shimmer], dim=2),
                                      (voiced[:, ::PULSE_FRAME_STRIDE] * pulses_ok).unsqueeze(2))
        q_mean, q_std = _masked_stats(quality, quality_mask)
        m_voiced, s_voiced = torch.cat([p_mean, m_hnr, q_mean], dim=1), torch.cat([p_std, s_hnr, q_std], dim=1)
        contours = torch.stack([semitones, loudness], dim=1)
        contour_masks = torch.stack([voiced, valid], dim=1)
        q = masked_quantiles(contours, contour_masks, self.quantiles)
        slope = _slopes(contours, contour_masks)
        seconds = (valid.sum(1, keepdim=True) * (HOP / SAMPLE_RATE)).clamp_min(HOP / SAMPLE_RATE)  # the span
        smooth = F.avg_pool1d(loudness.unsqueeze(1), PEAK_SMOOTH, 1, PEAK_SMOOTH // 2).squeeze(1)
        padded = F.pad(smooth, (1, 1))
        peaks = (smooth > padded[:, :-2] + PEAK_MARGIN) & (smooth >= padded[:, 2:]) & (smooth > 0.5)
        onsets = voiced * (1 - F.pad(voiced[:, :-1], (1, 0)))
        return torch.cat([
            m_pitch, s_pitch / (m_pitch + EPS), q[:, 0], q[:, 0, 2:] - q[:, 0, :1], slope[:, 0],
            s_loud / (m_loud + EPS), q[:, 1], q[:, 1, 2:] - q[:, 1, :1], slope[:, 1],
            (peaks.to(dtype) * valid).sum(1, keepdim=True) / seconds, m_loud_vu,
            torch.stack([m_voiced, s_voiced], dim=2).flatten(1),
            torch.stack([m_spec, s_spec, m_spec_u], dim=2).flatten(1),
            voiced.sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp_min(1.0),
            onsets.sum(1, keepdim=True) / seconds,
            _runs(voiced, unvoiced)], dim=1)

    def _perturbation(self, x: Tensor, f0_hz: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Local jitter and shimmer from :data:`PULSES` successive pulses starting at the centre
        of every :data:`PULSE_FRAME_STRIDE`-th frame (``f0_hz`` holds those frames' F0), and
        whether all pulses lie inside the clip: three ``(B, len(frames))``."""
        period = SAMPLE_RATE / f0_hz  # samples
        max_period = self.first_span.shape[0] - 1
        reach = int((1 + (PULSES - 1) * (1 + PULSE_SEARCH)) * max_period) + self.later_span.shape[0] + 3
        xp = F.pad(x, (1, reach))  # one zero before, so index i of x is i + 1 here
        start = torch.arange(f0_hz.shape[1], device=x.device) * (PULSE_FRAME_STRIDE * HOP) + 1
        start, span, last = start.expand_as(f0_hz), self.first_span, period.long()
        positions, amplitudes = [], []
        for k in range(PULSES):
            # the window's samples past its last one repeat it: argmax keeps the first
            idx = start.unsqueeze(2) + torch.minimum(span, last.unsqueeze(2))
            values = torch.gather(xp, 1, idx.flatten(1)).reshape(idx.shape)
            at = start + values.argmax(2)
            around = torch.gather(xp, 1, (at.unsqueeze(2) + self.three).flatten(1)).reshape(idx.shape[:2] + (3,))
            offset, height = _parabola(around)
            positions.append(at + offset)
            amplitudes.append(height - values.amin(2))  # peak to trough: a baseline offset does not count
            if k + 1 < PULSES:
                start = (positions[-1] + (1 - PULSE_SEARCH) * period).long()
                span, last = self.later_span, (2 * PULSE_SEARCH * period).long()
        p = torch.stack(positions, dim=2)
        a = torch.stack(amplitudes, dim=2).clamp_min(EPS)
        periods = p[..., 1:] - p[..., :-1]
        jitter = (periods[..., 1:] - periods[..., :-1]).abs().mean(2) / periods.mean(2).clamp_min(1.0)
        shimmer = (a[..., 1:] - a[..., :-1]).abs().mean(2) / a.mean(2)
        inside = (p[..., -1] + 1 < lengths[:, None]).to(x.dtype)
        return jitter, shimmer, inside

    def _formants(self, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """F1-F3 (Hz), their bandwidths (Hz) and whether each was found, from the 0-5.5 kHz
        band's autocorrelation ``r`` ``(B, T, order + 1)``: three ``(B, T, 3)``."""
        shifted = (r @ self.lpc_shift).unflatten(-1, (LPC_ORDER, LPC_ORDER + 1))
        a = F.pad(torch.ones_like(r[..., :1]), (0, LPC_ORDER))
        minus_err = -(r[..., 0] + EPS)  # Levinson-Durbin, with the error's sign flipped
        for i in range(LPC_ORDER):
            acc = (a * shifted[..., i, :]).sum(-1)
            k = acc / minus_err
            a = a + k.unsqueeze(-1) * (a @ self.lpc_flip[i])
            minus_err = minus_err - k * acc
        env = -10 * torch.log10((a @ self.env_basis).square().unflatten(-1, (2, -1)).sum(-2) + EPS)
        inner = env[..., 1:-1]
        is_peak = (inner > env[..., :-2]) & (inner >= env[..., 2:]) & self.formant_range
        # the n-th peak's index in `inner` is the count of points before it
        at = (torch.cumsum(is_peak.to(r.dtype), dim=-1).unsqueeze(-2) < self.peak_rank).to(r.dtype).sum(-1)
        found = (at < inner.shape[-1]).to(r.dtype)  # (B, T, 3)
        at = at.long().clamp(max=inner.shape[-1] - 1) + 1  # index into env
        y = torch.gather(env, -1, (at.unsqueeze(-1) + self.three).flatten(-2)).unflatten(-1, (3, 3))
        offset, _ = _parabola(y)
        step = LPC_BAND_HZ / (ENVELOPE_POINTS - 1)
        curvature = (y[..., 0] - 2 * y[..., 1] + y[..., 2]).clamp(max=-1e-6) / step**2  # dB / Hz^2
        bandwidth = (2 * torch.sqrt(20 / math.log(10) / -curvature)).clamp(max=MAX_BANDWIDTH_HZ) * found
        return (at + offset) * step * found, bandwidth, found

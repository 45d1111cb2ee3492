"""Inference speed on CPU: real-time factor of ``timeline`` on a one-hour recording, per backend.

Usage::

    python benchmarks/inference.py [--model RUN_DIR] [--minutes 60] [--data ../shared/data/emodb] [--hours 2]

First the time to score one 3 s clip with one thread (wall and CPU, median of 20). Then
builds a long recording (corpus utterances separated by 0.5-2 s pauses, written to a temp
FLAC, never to the repository), then times ``Predictor.timeline`` with the PyTorch and
the onnxruntime backend in the same process, and reports audio seconds per wall second
(real-time factor), the CPU time it took (all threads; audio seconds per CPU second is
steadier than wall time on a shared machine, and twice it is the most 2 idle cores could
give) and the process's peak memory after a file a sixth as long and after
the long one (equal peaks: memory does not grow with the length). With ``--hours``, also
``predict`` of one file that long (streamed: see :data:`emovox.predict.LONG_INPUT_S`), in
a fresh process: wall time and peak memory. ``--model`` defaults to the bundled model.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import tempfile
import time

import numpy as np
import soundfile as sf

from emovox import audio
from emovox.predict import Predictor


def make_recording(path: str, files: list[str], minutes: float, sr: int = 16000) -> float:
    rng = np.random.default_rng(0)
    total = 0
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="FLAC") as out:
        while total < minutes * 60 * sr:
            for f in files:
                y = audio.load(f, sr=sr)
                gap = np.zeros(int(rng.uniform(0.5, 2.0) * sr), np.float32)
                out.write(np.concatenate([y, gap]))
                total += len(y) + len(gap)
                if total >= minutes * 60 * sr:
                    break
    return total / sr


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn()`` after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def clip_latency(model: str | None, clip: np.ndarray, sr: int, repeats: int = 20) -> None:
    """Milliseconds (wall and CPU) to score one clip with one thread (torch's and the BLAS
    pools alike), median of ``repeats``: ``Predictor.predict`` per backend (with its quality
    block), and, for a model on the torch front end, its exported ONNX graph from waveform to
    probabilities in a bare onnxruntime session."""
    import onnxruntime as ort
    import torch
    from threadpoolctl import threadpool_limits

    from emovox import models
    from emovox.bundled import resolve_model
    from emovox.export import on_waveform, pipeline_onnx_bytes

    torch.set_num_threads(1)
    limits = threadpool_limits(1)
    print(f"\n| path | one {len(clip) / sr:.0f} s clip, 1 thread: wall (ms) | CPU (ms) |\n|---|---|---|")
    for backend in ("torch", "onnx"):
        p = Predictor.load(model, backend=backend, device="cpu")
        wall, cpu = _timed(lambda p=p: p.predict((clip, sr)), repeats)
        print(f"| Predictor, {backend} backend | {wall:.1f} | {cpu:.1f} |", flush=True)
    net, spec = models.load(resolve_model(model))
    if on_waveform(spec):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        session = ort.InferenceSession(pipeline_onnx_bytes(net, spec), opts, providers=["CPUExecutionProvider"])
        y = audio.resample(clip, sr, 16000)[None].astype(np.float32)
        feed = {"waveform": y, "lengths": np.array([y.shape[1]])}
        wall, cpu = _timed(lambda: session.run(None, feed), repeats)
        print(f"| exported ONNX graph (waveform -> probabilities), onnxruntime alone | {wall:.1f} | {cpu:.1f} |",
              flush=True)
    limits.restore_original_limits()
    torch.set_num_threads(os.cpu_count() or 1)


def front_end_parts(clip: np.ndarray, repeats: int = 15) -> None:
    """CPU milliseconds of each part of the torch front end on one 16 kHz clip, one thread:
    trimming, the ``voice`` descriptors, the d-vectors over 0.8 s and 1.6 s pieces, the
    quality block with either VAD, and the d-vectors' STFT in torch against onnxruntime's
    ``STFT`` op (what :meth:`emovox.ge2e.DVectors._power` avoids in exported graphs)."""
    import io
    import warnings

    import onnxruntime as ort
    import torch

    from emovox import ge2e, quality
    from emovox.encoder import Trim
    from emovox.segment import VadConfig
    from emovox.voice import VoiceFeatures

    torch.set_num_threads(1)
    wave, lengths = torch.from_numpy(clip)[None], torch.tensor([len(clip)])
    dvectors, voice, trim = ge2e.DVectors().eval(), VoiceFeatures().eval(), Trim(30.0)

    def pieces(frames: int):
        def run():
            ge2e.PIECE_FRAMES, before = frames, ge2e.PIECE_FRAMES
            try:
                dvectors(wave, lengths)
            finally:
                ge2e.PIECE_FRAMES = before
        return run

    stft = torch.nn.Module()
    stft.forward = lambda y: torch.stft(y, ge2e.N_FFT, ge2e.HOP, ge2e.N_FFT, window=dvectors.window, center=True,
                                        pad_mode="constant", return_complex=False)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(stft, (wave,), buf, input_names=["y"], dynamic_axes={"y": {1: "n"}}, opset_version=17,
                          dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    parts = {"trim": lambda: trim(wave, lengths), "voice descriptors": lambda: voice(wave, lengths),
             "d-vectors, 0.8 s pieces (shipped)": pieces(80), "d-vectors, 1.6 s pieces": pieces(160),
             "quality block, energy VAD (shipped)": lambda: quality.assess(clip, 16000, vad=VadConfig(method="energy")),
             "quality block, Silero VAD": lambda: quality.assess(clip, 16000),
             "d-vectors' STFT (n_fft 400), torch": lambda: stft(wave),
             "d-vectors' STFT (n_fft 400), onnxruntime STFT op": lambda: session.run(None, {"y": wave.numpy()})}
    print(f"\n| part of the front end, one {len(clip) / 16000:.0f} s clip, 1 thread | CPU (ms) |\n|---|---|")
    with torch.inference_mode():
        for name, fn in parts.items():
            print(f"| {name} | {_timed(fn, repeats)[1]:.1f} |", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)  # what follows runs on every core, as users' runs do


LONG_PREDICT = """
import resource, sys, time
from emovox.predict import Predictor
p = Predictor.load(sys.argv[2] or None, backend=sys.argv[3] if len(sys.argv) > 3 else "torch")
t0 = time.perf_counter()
r = p.predict(sys.argv[1])
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, r["summary"]["segments"],
      r["label"])
"""


def long_predict(model: str | None, files: list[str], hours: float, tmp: str) -> None:
    """``Predictor.predict`` of one ``hours``-long file in a fresh process: wall time and
    the process's peak memory (loading the model included)."""
    import subprocess
    import sys

    path = os.path.join(tmp, "hours.flac")
    seconds = make_recording(path, files, hours * 60)
    print(f"\n| backend | predict of one {seconds / 3600:.1f}-hour file: wall (s) | x real time | peak RSS (MB) | "
          "segments | label |\n|---|---|---|---|---|---|")
    for backend in ("torch", "onnx"):
        out = subprocess.run([sys.executable, "-c", LONG_PREDICT, path, model or "", backend], check=True,
                             capture_output=True, text=True).stdout.split()
        wall, rss = float(out[0]), float(out[1])
        print(f"| {backend} | {wall:.1f} | {seconds / wall:.0f} | {rss:.0f} | {out[2]} | {out[3]} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--data", default="../shared/data/emodb")
    ap.add_argument("--hours", type=float, default=0.0, help="also time predict of one file this long")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "**", "*.flac"), recursive=True))
    speech = np.concatenate([audio.load(f, sr=16000) for f in files[:3]])
    clip_latency(args.model, speech[: 3 * 16000], 16000)
    front_end_parts(speech[: 3 * 16000])
    with tempfile.TemporaryDirectory() as tmp:
        path, short = os.path.join(tmp, "long.flac"), os.path.join(tmp, "short.flac")
        seconds = make_recording(path, files, args.minutes)
        if args.hours:
            long_predict(args.model, files, args.hours, tmp)
        short_seconds = make_recording(short, files, args.minutes / 6)
        print(f"\nrecording: {seconds / 60:.1f} min, {os.path.getsize(path) / 1e6:.0f} MB FLAC; "
              f"{os.cpu_count()} cores; model {args.model or 'bundled'}\n")
        print("| backend | segments | wall (s) | x real time | CPU (s) | audio s per CPU s | peak RSS after a "
              f"{short_seconds / 60:.0f}-min file (MB) | peak RSS after the {seconds / 60:.0f}-min file (MB) |")
        print("|---|---|---|---|---|---|---|---|")
        for backend in ("torch", "onnx"):
            p = Predictor.load(args.model, backend=backend, device="cpu")  # a CPU benchmark, GPU or not
            p.timeline(short)  # warm up; memory after a file a sixth as long
            rss_short = peak_rss_mb()
            t0, c0 = time.perf_counter(), time.process_time()
            rows = p.timeline(path)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"| {backend} | {len(rows)} | {wall:.1f} | {seconds / wall:.0f} | {cpu:.1f} | {seconds / cpu:.0f} | "
                  f"{rss_short:.0f} | {peak_rss_mb():.0f} |", flush=True)
        adaptation_cost(args.model, path, seconds)


def adaptation_cost(model: str | None, path: str, seconds: float, turns: int = 3) -> None:
    """``timeline`` adapted to the recording's voices against ``adapt=False`` on the same
    file, in turns (torch backend): wall and CPU seconds, and the ratio of the medians."""
    p = Predictor.load(model, device="cpu")
    if not p.can_adapt:
        return
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(turns):
        for adapt in (False, True):
            t0, c0 = time.perf_counter(), time.process_time()
            rows = p.timeline(path, adapt=adapt)
            times[adapt].append((time.perf_counter() - t0, time.process_time() - c0))
    voices = len({r["speaker"] for r in rows})
    print(f"\n| timeline of the {seconds / 60:.0f}-min file, torch | wall (s, median of {turns}) | CPU (s) | "
          f"segments adapted | voices |\n|---|---|---|---|---|")
    for adapt in (False, True):
        wall, cpu = (float(np.median([t[i] for t in times[adapt]])) for i in (0, 1))
        done = sum(r["adapted"] for r in rows) if adapt else 0
        print(f"| {'adapted per voice' if adapt else 'adapt=False'} | {wall:.2f} | {cpu:.2f} | {done} | {voices} |")
    ratio = np.median([t[0] for t in times[True]]) / np.median([t[0] for t in times[False]])
    print(f"adapted / unadapted wall time: {ratio:.3f}", flush=True)


if __name__ == "__main__":
    main()

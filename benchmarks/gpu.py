"""GPU against CPU: cnn training throughput, frozen SSL features, one SSL fine-tuning epoch.

Usage::

    python benchmarks/gpu.py [--backbone DIR] [--threads N] [--quick]

Runs each workload on the CPU and, when torch sees one, on the GPU (``cuda``; in fp32 and
in the default precision, bf16 where the GPU has it), in the same process, and prints a
Markdown table with the GPU's name. Nothing is downloaded: the inputs are synthetic
(random log-mel matrices and noise), and without ``--backbone`` the encoder is a
randomly initialised wav2vec 2.0 *base* config (12 layers, 768 hidden, ~95M parameters;
a trained checkpoint of the same config costs the same). ``--quick`` shrinks everything
(tiny encoder, few samples) to check that the script runs.

1. **cnn training**: :func:`emovox.train.fit` of the ``cnn`` on ``--samples`` inputs of
   64 x 126 (3 s of log-mel) for two epochs after a warm-up run; samples per second.
2. **SSL frozen features**: :func:`emovox.ssl.hidden_states` on ``--seconds`` of audio;
   audio seconds per wall second (x real time).
3. **SSL fine-tuning**: one epoch of ``ssl_finetune`` (top 2 layers unfrozen) on
   ``--clips`` waveforms of 3 s; seconds per epoch.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import numpy as np
import torch

from emovox import device, ssl
from emovox.train import TrainConfig, fit

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
            conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def placements() -> list[tuple[str, str]]:
    """(device, precision) pairs to measure: the CPU, and the GPU in fp32 and in its default precision."""
    out = [("cpu", "fp32")]
    if torch.cuda.is_available():
        out.append(("cuda", "fp32"))
        default = device.resolve_precision("auto", device.resolve("cuda"))
        if default != "fp32":
            out.append(("cuda", default))
    return out


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _fit(feats, y, n_frames, cfg) -> float:
    """Wall seconds of one :func:`fit` (the last quarter of the samples validate)."""
    idx = np.arange(len(y))
    cut = len(y) * 3 // 4
    sync()
    t0 = time.perf_counter()
    fit(feats, y, idx[:cut], idx[cut:], n_classes=int(y.max()) + 1, n_frames=n_frames, cfg=cfg, progress=False)
    sync()
    return time.perf_counter() - t0


def cnn_training(n: int, dev: str, precision: str) -> tuple[float, str]:
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((64, 126)).astype(np.float32) for _ in range(n)]
    y = np.arange(n) % 4
    kw = dict(model="cnn", batch_size=32, device=dev, precision=precision, patience=10)
    _fit(feats[:64], y[:64], 126, TrainConfig(epochs=1, **kw))  # warm-up: kernels, allocator
    wall = _fit(feats, y, 126, TrainConfig(epochs=2, **kw))
    return wall, f"{2 * (n * 3 // 4) / wall:.0f} samples/s"


def ssl_features(backbone: str, seconds: float, dev: str) -> tuple[float, str]:
    y = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)
    ssl.hidden_states([y[:16000]], backbone, device=dev)  # warm-up
    sync()
    t0 = time.perf_counter()
    ssl.hidden_states([y], backbone, device=dev)
    sync()
    wall = time.perf_counter() - t0
    return wall, f"{seconds / wall:.1f} x real time"


def ssl_finetune_epoch(backbone: str, clips: int, clip_s: float, dev: str, precision: str) -> tuple[float, str]:
    rng = np.random.default_rng(0)
    samples = int(clip_s * 16000)
    feats = [(0.1 * rng.standard_normal((1, samples))).astype(np.float32) for _ in range(clips)]
    y = np.arange(clips) % 4
    kw = dict(model="ssl_finetune", model_kwargs={"backbone": backbone, "unfreeze": 2}, batch_size=8,
              spec_augment=False, device=dev, precision=precision)
    _fit(feats[:16], y[:16], samples, TrainConfig(epochs=1, **kw))  # warm-up
    wall = _fit(feats, y, samples, TrainConfig(epochs=1, **kw))
    return wall, f"{clips * 3 // 4 / wall:.1f} clips/s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", help="wav2vec2/HuBERT/WavLM directory (default: random base-size wav2vec2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads on the CPU")
    ap.add_argument("--samples", type=int, default=1024, help="cnn training inputs")
    ap.add_argument("--seconds", type=float, default=60.0, help="audio for the frozen SSL front end")
    ap.add_argument("--clips", type=int, default=64, help="3 s waveforms for the fine-tuning epoch")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.seconds, args.clips = 128, 5.0, 24
    logging.disable(logging.INFO)
    torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (torch sees no CUDA GPU)"
    print(f"\nCPU: {os.cpu_count()} cores, {args.threads} torch threads; GPU: {gpu}; torch {torch.__version__}\n")
    rows: list[tuple[str, str, str, float, str]] = []
    for dev, precision in placements():
        rows.append(("cnn training, 2 epochs", dev, precision, *cnn_training(args.samples, dev, precision)))
    with tempfile.TemporaryDirectory() as tmp:
        backbone = args.backbone
        if backbone is None:
            from transformers import Wav2Vec2Config, Wav2Vec2Model

            torch.manual_seed(0)
            Wav2Vec2Model(Wav2Vec2Config(**(TINY if args.quick else {}))).save_pretrained(tmp)
            backbone = tmp
        name = os.path.basename(os.path.normpath(args.backbone)) if args.backbone else \
            ("tiny" if args.quick else "wav2vec2-base (random init)")
        for dev in [d for d, p in placements() if p == "fp32"]:
            rows.append((f"SSL frozen features, {name}, {args.seconds:g} s", dev, "fp32",
                         *ssl_features(backbone, args.seconds, dev)))
        for dev, precision in placements():
            rows.append((f"SSL fine-tuning, {name}, {args.clips} x 3 s, 1 epoch", dev, precision,
                         *ssl_finetune_epoch(backbone, args.clips, 3.0, dev, precision)))
    cpu_wall = {r[0]: r[3] for r in rows if r[1] == "cpu"}
    print("| workload | device | precision | wall s | throughput | vs CPU |")
    print("|---|---|---|---|---|---|")
    for work, dev, precision, wall, rate in rows:
        print(f"| {work} | {dev} | {precision} | {wall:.2f} | {rate} | {cpu_wall[work] / wall:.1f}x |")


if __name__ == "__main__":
    main()

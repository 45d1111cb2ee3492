"""Cost of the frozen self-supervised front end on CPU, per hour of audio.

Usage::

    python benchmarks/ssl_cost.py [--seconds 60] [--threads 2]

Builds randomly initialised *base-size* encoders (wav2vec 2.0, HuBERT, WavLM: 12 layers,
768 hidden, ~95M parameters; a trained checkpoint of the same config costs the same),
runs :func:`emovox.ssl.hidden_states` on ``--seconds`` of audio in 20 s chunks, and
extrapolates to one hour. Also reports the cache size per hour (float32 hidden states).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from emovox import ssl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

    y = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * 16000))).astype(np.float32)
    print(f"\n{args.seconds:g} s of audio, {args.threads} torch threads, extrapolated to 1 h (estimate)\n")
    print("| encoder (base config, random init) | parameters | s per hour of audio | x real time | cache GB per hour |")
    print("|---|---|---|---|---|")
    for name, cfg_cls, model_cls in (("wav2vec2-base", Wav2Vec2Config, Wav2Vec2Model),
                                     ("hubert-base", HubertConfig, HubertModel),
                                     ("wavlm-base", WavLMConfig, WavLMModel)):
        with tempfile.TemporaryDirectory() as tmp:
            model_cls(cfg_cls()).save_pretrained(tmp)
            ssl.load_encoder.cache_clear()
            params = sum(p.numel() for p in ssl.load_encoder(tmp).parameters())
            ssl.hidden_states([y[:16000]], tmp)  # warm up
            t0 = time.perf_counter()
            feats = ssl.hidden_states([y], tmp)[0]
            wall = time.perf_counter() - t0
        per_hour = wall * 3600 / args.seconds
        gb = feats.nbytes * 3600 / args.seconds / 1e9
        print(f"| {name} | {params / 1e6:.0f}M | {per_hour:.0f} | {args.seconds / wall:.1f} | {gb:.1f} |", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Regenerates examples/hello.flac: a short synthetic English sentence (espeak-ng, Debian
# package `espeak-ng`), so the project ships an example clip without any corpus audio.
set -euo pipefail
cd "$(dirname "$0")"
espeak-ng -v en-us -s 150 -w /tmp/emovox-hello.wav "Hello! This is emovox. I am really glad to meet you today."
python3 - <<'PY'
import soundfile as sf, soxr
y, sr = sf.read("/tmp/emovox-hello.wav", dtype="float32")
sf.write("hello.flac", soxr.resample(y, sr, 16000), 16000)
PY

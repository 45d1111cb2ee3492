#!/usr/bin/env bash
# Install the lowest versions pyproject.toml admits of the libraries whose API emovox relies on
# (numpy, scipy, librosa, soundfile, soxr, scikit-learn, fastapi; httpx for the test client) into a
# throwaway venv, with no C compiler, and run the tests that exercise them.
#
# Usage: scripts/check_floors.sh [VENV_DIR]     (default /tmp/emovox-floors; about 5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-/tmp/emovox-floors}
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT

python3 - "$constraints" <<'EOF'
import re, sys, tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
wanted = {"numpy", "scipy", "librosa", "soundfile", "soxr", "scikit-learn", "fastapi", "httpx"}
pins = []
for spec in project["dependencies"] + extras["serve"] + extras["dev"]:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", spec.strip())
    if m and m.group(1).lower() in wanted:
        pins.append(f"{m.group(1)}=={m.group(2)}")
assert len(pins) == len(wanted), pins
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
print("floors:", " ".join(pins))
EOF

rm -rf "$venv" && python3 -m venv "$venv"
CC=/bin/false CXX=/bin/false "$venv/bin/pip" install -q torch==2.13.0 -c "$constraints" -e ".[serve,dev]"
HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -k "not onnx" \
  tests/test_audio.py tests/test_features.py tests/test_splits.py tests/test_evaluate.py tests/test_predict.py \
  tests/test_bundled.py tests/test_serve.py tests/test_cli.py tests/test_utterance.py tests/test_normalize.py \
  tests/test_cache.py

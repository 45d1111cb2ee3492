"""torch.distributed on CPU (gloo, 2 ranks): spawn and torchrun give one run dir and equal weights."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
CONFIG = "features: {n_mels: 32, clip_s: 1.0}\ntrain: {batch_size: 8, lr: 0.003, patience: 50}\n"


def _args(data, out, tmp, epochs=6):
    (tmp / "t.yaml").write_text(CONFIG)
    return ["train", "--data", str(data), "--out", str(out), "--model", "cnn", "--epochs", str(epochs),
            "--cache-dir", str(tmp / "cache"), "--config", str(tmp / "t.yaml"), "--quiet"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _ranks(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["ranks"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from .conftest import make_ravdess

    return make_ravdess(tmp_path_factory.mktemp("ddp") / "ravdess")


def test_spawned_two_ranks_one_run_dir_equal_weights(corpus, tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "emovox", *_args(corpus, out, tmp_path), "--nproc", "2"],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ranks = _ranks(out)
    assert ranks["world_size"] == 2 and len(set(ranks["weights_sha256"])) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["ua"] >= 0.75  # learns the pitch classes
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.json", "model.pt", "train.log"]


def test_torchrun_matches_spawn(corpus, tmp_path):
    a, b = tmp_path / "spawn", tmp_path / "torchrun"
    subprocess.run([sys.executable, "-m", "emovox", *_args(corpus, a, tmp_path), "--nproc", "2"],
                   env=_env(), check=True, capture_output=True, timeout=300)
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "emovox", *_args(corpus, b, tmp_path)],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _ranks(a)["weights_sha256"] == _ranks(b)["weights_sha256"]

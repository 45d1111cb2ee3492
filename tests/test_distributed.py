"""torch.distributed on CPU (gloo, 2 ranks): spawn and torchrun give one run dir and equal weights."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
CONFIG = "features: {n_mels: 32, clip_s: 1.0}\ntrain: {batch_size: 8, lr: 0.003, patience: 50}\n"


def _args(data, out, tmp, epochs=12):
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


@pytest.fixture(scope="module")
def spawned(corpus, tmp_path_factory):
    """An uninterrupted 2-rank run started with ``--nproc 2``: the reference weights."""
    tmp = tmp_path_factory.mktemp("spawned")
    r = subprocess.run([sys.executable, "-m", "emovox", *_args(corpus, tmp / "run", tmp), "--nproc", "2"],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / "run"


def test_spawned_two_ranks_one_run_dir_equal_weights(spawned):
    ranks = _ranks(spawned)
    assert ranks["world_size"] == 2 and len(set(ranks["weights_sha256"])) == 1
    metrics = json.loads((spawned / "metrics.json").read_text())
    assert metrics["validation"]["ua"] >= 0.75  # learns the pitch classes
    assert sorted(p.name for p in spawned.iterdir()) == ["config.json", "metrics.json", "model.pt", "train.log"]


def test_torchrun_matches_spawn(corpus, spawned, tmp_path):
    out = tmp_path / "torchrun"
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "emovox",
                        *_args(corpus, out, tmp_path)], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _ranks(out)["weights_sha256"] == _ranks(spawned)["weights_sha256"]


def test_torchrun_restarts_a_killed_rank_and_resumes(corpus, spawned, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([TORCHRUN, "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "-m", "emovox",
                             *_args(corpus, out, tmp_path)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, proc.communicate(timeout=60)[1][-3000:]
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "resumed" in (out / "train.log").read_text()
    assert _ranks(out)["weights_sha256"] == _ranks(spawned)["weights_sha256"]  # resumed exactly at the checkpoint

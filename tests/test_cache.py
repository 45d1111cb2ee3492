import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emovox import cache as cache_mod
from emovox.cache import FeatureCache, extract_files
from emovox.errors import AudioError
from emovox.features import FeatureConfig

from .conftest import same_features, tone, write

CFG = FeatureConfig(n_mels=32, clip_s=1.0)


def _paths(root):
    return sorted(str(p) for p in root.rglob("*.wav"))


def test_skips_corrupt_and_silent_files_and_counts_them(ravdess_dir, tmp_path):
    ext = extract_files(_paths(ravdess_dir), CFG, cache_dir=tmp_path / "c", progress=False)
    assert len(ext.skipped) == 2
    assert any("cannot decode" in r for r in ext.skipped.values())
    assert any("silent" in r for r in ext.skipped.values())
    assert len(ext.features) == len(_paths(ravdess_dir)) - 2
    with pytest.raises(AudioError):
        extract_files(_paths(ravdess_dir), CFG, cache_dir=tmp_path / "c", strict=True, progress=False)


def test_cache_hit_does_not_recompute(ravdess_dir, tmp_path, monkeypatch):
    paths = _paths(ravdess_dir)[:10]
    first = extract_files(paths, CFG, cache_dir=tmp_path / "c", progress=False)

    def boom(*a, **k):
        raise AssertionError("recomputed a cached entry")

    monkeypatch.setattr(cache_mod, "extract_batch", boom)
    second = extract_files(paths, CFG, cache_dir=tmp_path / "c", progress=False)
    for p in paths:
        np.testing.assert_array_equal(first.features[p], second.features[p])


def test_truncated_entry_is_recomputed(ravdess_dir, tmp_path):
    paths = _paths(ravdess_dir)[:3]
    clean = extract_files(paths, CFG, cache_dir=tmp_path / "c", progress=False)
    store = FeatureCache(tmp_path / "c", CFG)
    victim = store.path(cache_mod.content_hash(paths[0]))
    victim.write_bytes(victim.read_bytes()[:50])  # as if killed mid-write without the rename
    again = extract_files(paths, CFG, cache_dir=tmp_path / "c", progress=False)
    same_features(again.features[paths[0]], clean.features[paths[0]])
    assert not list(tmp_path.rglob("*.tmp"))


def test_config_change_makes_new_entries(ravdess_dir, tmp_path):
    paths = _paths(ravdess_dir)[:2]
    a = extract_files(paths, CFG, cache_dir=tmp_path / "c", progress=False)
    b = extract_files(paths, FeatureConfig(kind="mfcc", n_mels=32, n_mfcc=13), cache_dir=tmp_path / "c", progress=False)
    assert a.features[paths[0]].shape[0] == 32 and b.features[paths[0]].shape[0] == 13
    assert len([d for d in (tmp_path / "c").iterdir() if d.is_dir()]) == 2


def test_parallel_and_sharded_equal_serial(ravdess_dir, tmp_path):
    paths = _paths(ravdess_dir)
    serial = extract_files(paths, CFG, cache_dir=None, progress=False)
    parallel = extract_files(paths, CFG, cache_dir=tmp_path / "p", jobs=2, progress=False)
    for shard in range(2):
        extract_files(paths, CFG, cache_dir=tmp_path / "s", shard=(shard, 2), progress=False)
    sharded = extract_files(paths, CFG, cache_dir=tmp_path / "s", progress=False)
    assert serial.skipped.keys() == parallel.skipped.keys()
    for p in serial.features:
        same_features(serial.features[p], parallel.features[p])
        same_features(serial.features[p], sharded.features[p])


SLOW_EXTRACTION = """
import sys, time
from emovox import cache
from emovox.features import FeatureConfig
real = cache.extract_batch
cache.extract_batch = lambda signals, cfg, **kw: (time.sleep(0.3), real(signals, cfg, **kw))[1]
cache.extract_files(sys.argv[2:], FeatureConfig(n_mels=32, clip_s=1.0), cache_dir=sys.argv[1], progress=False)
"""


def test_sigkill_during_extraction_then_rerun_gives_the_clean_cache(tmp_path):
    paths = [str(write(tmp_path / "audio" / f"{i:03d}.wav", tone(120 + 5 * i, 1.0, 16000, seed=i), 16000))
             for i in range(64)]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXTRACTION, str(killed), *paths])
    deadline = time.time() + 60
    while not list(killed.rglob("*.npy")) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(list(killed.rglob("*.npy"))) < len(paths)  # killed part-way
    extract_files(paths, CFG, cache_dir=killed, progress=False)
    extract_files(paths, CFG, cache_dir=clean, progress=False)

    def entries(root):
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*.npy")}

    assert entries(killed) == entries(clean) and len(entries(clean)) == len(paths)

"""On-disk feature cache and the cached, parallel, resumable extraction of a manifest.

Entries are keyed by the audio file's content (SHA-1 of its bytes) and the feature
config, so renaming a file keeps its entry and changing any feature parameter makes a
new one. Each entry is written to a temporary name and renamed into place, so a reader
never sees a half-written entry; an entry that still fails to load is recomputed.

Layout: ``<root>/<config hash>/<ab>/<content hash>.npy`` plus ``config.json`` per config.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emovox import audio, encoder
from emovox.config import to_dict
from emovox.errors import AudioError, EmovoxError
from emovox.features import FeatureConfig
from emovox.files import atomic_write
from emovox.frontend import extract_batch
from emovox.progress import bar

CHUNK = 16  # utterances per extraction task: one batched STFT each


class CacheError(EmovoxError):
    """A cache entry that should exist but cannot be read."""


def content_hash(path: str | Path) -> str:
    """SHA-1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_hash(config: object) -> str:
    """Short stable hash of a config dataclass (or dict); a config that reads the torch front
    end's vectors also hashes :data:`emovox.encoder.VERSION`, so that cached vectors of an
    earlier front end are never read back."""
    text = json.dumps(config if isinstance(config, dict) else to_dict(config), sort_keys=True)
    if any(f'"{part}"' in text for part in encoder.PARTS):
        text += f"|frontend {encoder.VERSION}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Arrays stored by (content key, config): one directory per config under ``root``."""

    def __init__(self, root: str | Path, config: object):
        self.dir = Path(root) / config_hash(config)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "config.json"
        if not meta.exists():
            atomic_write(meta, lambda p: p.write_text(json.dumps(
                config if isinstance(config, dict) else to_dict(config), indent=2)))

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The stored array, or ``None`` when absent or unreadable (then it is removed)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)

        atomic_write(self.path(key), write)


@dataclass
class Extraction:
    """Result of :func:`extract_files`: features by path, and files skipped with reasons."""

    features: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _extract_chunk(paths: Sequence[str], keys: Sequence[str], cfg: FeatureConfig, cache: FeatureCache | None,
                   strict: bool, device: str = "auto") -> tuple[dict[str, np.ndarray] | None, dict[str, str]]:
    """Worker task: decode and featurise a chunk, store in the cache. Returns (features, skipped)."""
    signals, good, skipped = [], [], {}
    for path, key in zip(paths, keys, strict=True):
        try:
            signals.append(audio.load(path, sr=cfg.sample_rate))
            good.append((path, key))
        except AudioError as exc:
            if strict:
                raise
            skipped[path] = str(exc)
    feats = extract_batch(signals, cfg, device=device) if isinstance(cfg, FeatureConfig) else cfg.extract_batch(signals)
    if cache is None:
        return {p: f for (p, _), f in zip(good, feats, strict=True)}, skipped
    for (_, key), f in zip(good, feats, strict=True):
        cache.put(key, f)
    return None, skipped


def _init_worker(threads: int) -> None:
    from emovox.parallel import set_threads

    set_threads(threads)


def extract_files(paths: Iterable[str], cfg: FeatureConfig, *, cache_dir: str | Path | None = None,
                  jobs: int = 1, strict: bool = False, shard: tuple[int, int] = (0, 1),
                  progress: bool = True, device: str = "auto") -> Extraction:
    """Features for many files, cached on disk, in parallel, resumable.

    Parameters
    ----------
    paths : iterable of str
        Audio files.
    cfg : FeatureConfig or AugmentedFeatures
        What to compute: a :class:`FeatureConfig`, or any frozen dataclass with a
        ``sample_rate`` and an ``extract_batch(signals)`` method.
    cache_dir : path, optional
        Cache root; entries already there are read, not recomputed, so an interrupted run
        picks up where it stopped. ``None`` computes everything in memory.
    jobs : int
        Worker processes (each single-threaded).
    strict : bool
        Raise :class:`AudioError` on an undecodable or silent file instead of skipping it.
    shard : (index, count)
        Compute only every ``count``-th missing file starting at ``index`` (one shard per
        rank or machine sharing the cache); the result then holds only cached features.
    progress : bool
        Show a progress bar.
    device : str
        Where a :class:`FeatureConfig`'s ssl encoder runs (``auto``: CUDA when available).
    """
    paths = list(dict.fromkeys(str(p) for p in paths))
    cache = FeatureCache(cache_dir, cfg) if cache_dir is not None else None
    keys = {p: _key(p) for p in paths}
    result = Extraction()
    todo = []
    for p in paths:
        if keys[p] is None:
            if strict:
                raise AudioError("cannot read file", path=p)
            result.skipped[p] = f"{p}: cannot read file"
            continue
        cached = cache.get(keys[p]) if cache else None
        if cached is None:
            todo.append(p)
        else:
            result.features[p] = cached
    todo = _by_duration(todo)[shard[0]:: shard[1]]
    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    with bar(enabled=progress and bool(todo), transient=True) as pbar:
        task = pbar.add_task("features", total=len(todo), status="")
        results = _run_chunks(chunks, keys, cfg, cache, strict, jobs, device)
        for chunk, (feats, skipped) in zip(chunks, results, strict=True):
            result.skipped.update(skipped)
            for p in chunk:
                if p in skipped:
                    continue
                result.features[p] = feats[p] if feats is not None else cache.get(keys[p])
                if result.features[p] is None:
                    raise CacheError("a worker stored features that cannot be read back", path=cache.path(keys[p]))
            pbar.update(task, advance=len(chunk), status=f"{len(result.skipped)} skipped")
    return result


def _run_chunks(chunks, keys, cfg, cache, strict, jobs, device="auto"):
    args = [(list(c), [keys[p] for p in c]) for c in chunks]
    if jobs <= 1 or len(chunks) <= 1:
        return (_extract_chunk(p, k, cfg, cache, strict, device) for p, k in args)
    import multiprocessing as mp

    pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(1,))

    def run():
        with pool:
            futures = [pool.submit(_extract_chunk, p, k, cfg, cache, strict, device) for p, k in args]
            for f in futures:
                yield f.result()

    return run()


def _key(path: str) -> str | None:
    try:
        return content_hash(path)
    except OSError:
        return None


def _by_duration(paths: list[str]) -> list[str]:
    """Sort by duration so each batch pads little; unreadable headers go last."""
    def dur(p: str) -> float:
        try:
            return audio.duration(p)
        except AudioError:
            return float("inf")

    return sorted(paths, key=dur)

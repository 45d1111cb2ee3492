"""A corpus (or several) as features and integer labels, ready for training."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emovox import distributed, normalize
from emovox import labels as labelmod
from emovox.cache import extract_files
from emovox.corpora import Utterance, load_corpus
from emovox.errors import ConfigError, CorpusError
from emovox.features import FeatureConfig

log = logging.getLogger("emovox")
DEFAULT_CACHE = Path.home() / ".cache" / "emovox"


@dataclass
class Dataset:
    """A manifest with its features and integer labels; skipped files are listed."""

    utterances: list[Utterance]
    features: list[np.ndarray]
    y: np.ndarray
    labels: list[str]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def speakers(self) -> list[str | None]:
        return [u.speaker for u in self.utterances]

    @property
    def groups(self) -> np.ndarray | None:
        """Corpus index per utterance when several corpora are pooled, else ``None``."""
        names = sorted({u.corpus for u in self.utterances})
        return np.array([names.index(u.corpus) for u in self.utterances]) if len(names) > 1 else None


def load_dataset(data: str | Path | Sequence[tuple[str, str | Path]], *, corpus: str = "auto",
                 features: FeatureConfig | None = None, classes: tuple[str, ...] | None = None,
                 merge: dict | None = None, cache_dir: str | Path | None = DEFAULT_CACHE, jobs: int = 1,
                 strict: bool = False, progress: bool = True) -> Dataset:
    """Read one corpus (``data`` a path) or several (``[(corpus, path), ...]``), keep/merge
    classes, extract (cached) features, drop unreadable files."""
    fcfg = features or FeatureConfig()
    sources = [(corpus, data)] if isinstance(data, (str, Path)) else list(data)
    manifest = [u for name, path in sources for u in load_corpus(path, corpus=name)]
    mapped = labelmod.apply_label_map([u.label for u in manifest], keep=classes, merge=merge)
    manifest = [_relabel(u, lab) for u, lab in zip(manifest, mapped, strict=True) if lab is not None]
    if not manifest:
        raise CorpusError(f"no files left after keeping classes {classes}", path=data)
    paths = [u.path for u in manifest]
    if distributed.world() > 1:  # each rank fills its shard of the shared cache, then all read it
        if cache_dir is None:
            raise ConfigError("distributed training needs a feature cache", fix="pass --cache-dir on a shared disk")
        extract_files(paths, fcfg, cache_dir=cache_dir, jobs=jobs, strict=strict,
                      shard=(distributed.rank(), distributed.world()), progress=progress and distributed.is_main())
        distributed.barrier()
    ext = extract_files(paths, fcfg, cache_dir=cache_dir, jobs=jobs, strict=strict,
                        progress=progress and distributed.is_main())
    if ext.skipped:
        log.warning("skipped %d unreadable or silent file(s):\n  %s", len(ext.skipped),
                    "\n  ".join(ext.skipped.values()))
    kept = [u for u in manifest if u.path in ext.features]
    names = labelmod.ordered(u.label for u in kept)
    if len(names) < 2:
        raise CorpusError("need at least two classes with readable audio", path=data)
    y = np.array([names.index(u.label) for u in kept], dtype=np.int64)
    return Dataset(kept, [ext.features[u.path] for u in kept], y, names, ext.skipped)


def _relabel(u: Utterance, label: str) -> Utterance:
    return u if u.label == label else Utterance(u.path, label, u.speaker, u.corpus, u.meta)


def model_inputs(ds: Dataset, train) -> list[np.ndarray]:
    """The features the model sees: speaker-normalised when the run asks for it."""
    return normalize.by_speaker(ds.features, ds.speakers) if train.speaker_norm else ds.features

"""A corpus (or several) as features and integer labels, ready for training."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emovox import distributed, normalize
from emovox import labels as labelmod
from emovox.augment import AugmentedFeatures, parse_all
from emovox.cache import Extraction, extract_files
from emovox.corpora import Utterance, load_corpus
from emovox.errors import ConfigError, CorpusError
from emovox.features import FeatureConfig

log = logging.getLogger("emovox")
DEFAULT_CACHE = Path.home() / ".cache" / "emovox"
DataSource = str | Path | Sequence[tuple[str, str | Path]]  # one corpus folder, or (reader, folder) pairs


@dataclass
class Dataset:
    """A manifest with its features and integer labels; skipped files are listed.

    ``augmented`` holds, per waveform augmentation asked for, the features of every
    utterance's augmented audio (aligned with ``features``).
    """

    utterances: list[Utterance]
    features: list[np.ndarray]
    y: np.ndarray
    labels: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    augmented: list[list[np.ndarray]] = field(default_factory=list)

    @property
    def speakers(self) -> list[str | None]:
        return [u.speaker for u in self.utterances]

    @property
    def groups(self) -> np.ndarray | None:
        """Corpus index per utterance when several corpora are pooled, else ``None``."""
        names = sorted({u.corpus for u in self.utterances})
        return np.array([names.index(u.corpus) for u in self.utterances]) if len(names) > 1 else None


def load_dataset(data: DataSource, *, corpus: str = "auto",
                 features: FeatureConfig | None = None, classes: tuple[str, ...] | None = None,
                 merge: dict | None = None, augment: tuple[str, ...] = (),
                 cache_dir: str | Path | None = DEFAULT_CACHE, jobs: int = 1, strict: bool = False,
                 progress: bool = True, device: str = "auto") -> Dataset:
    """Read one corpus (``data`` a path) or several (``[(corpus, path), ...]``), keep/merge
    classes, extract (cached) features, drop unreadable files; with ``augment`` specs
    (see :mod:`emovox.augment`) also the features of each augmented copy. ``device`` is
    where an ssl encoder runs."""
    fcfg = features or FeatureConfig()
    sources = [(corpus, data)] if isinstance(data, (str, Path)) else list(data)
    manifest = [u for name, path in sources for u in load_corpus(path, corpus=name)]
    mapped = labelmod.apply_label_map([u.label for u in manifest], keep=classes, merge=merge)
    manifest = [_relabel(u, lab) for u, lab in zip(manifest, mapped, strict=True) if lab is not None]
    if not manifest:
        raise CorpusError(f"no files left after keeping classes {classes}", path=data)
    kw = dict(cache_dir=cache_dir, jobs=jobs, strict=strict, progress=progress)
    ext = _extract([u.path for u in manifest], fcfg, **kw, device=device)
    if ext.skipped:
        log.warning("skipped %d unreadable or silent file(s):\n  %s", len(ext.skipped),
                    "\n  ".join(ext.skipped.values()))
    kept = [u for u in manifest if u.path in ext.features]
    names = labelmod.ordered(u.label for u in kept)
    if len(names) < 2:
        raise CorpusError("need at least two classes with readable audio", path=data)
    y = np.array([names.index(u.label) for u in kept], dtype=np.int64)
    augmented = []
    for aug in parse_all(augment):
        feats = _extract([u.path for u in kept], AugmentedFeatures(fcfg, aug), **kw).features
        augmented.append([feats[u.path] for u in kept])
    return Dataset(kept, [ext.features[u.path] for u in kept], y, names, ext.skipped, augmented)


def _extract(paths: list[str], extractor, *, cache_dir, jobs, strict, progress, device="auto") -> Extraction:
    """Cached extraction; under torch.distributed each rank first fills its shard of the
    shared cache, then all read it."""
    if distributed.world() > 1:
        if cache_dir is None:
            raise ConfigError("distributed training needs a feature cache", fix="pass --cache-dir on a shared disk")
        extract_files(paths, extractor, cache_dir=cache_dir, jobs=jobs, strict=strict,
                      shard=(distributed.rank(), distributed.world()), progress=progress and distributed.is_main(),
                      device=device)
        distributed.barrier()
    return extract_files(paths, extractor, cache_dir=cache_dir, jobs=jobs, strict=strict,
                         progress=progress and distributed.is_main(), device=device)


def _relabel(u: Utterance, label: str) -> Utterance:
    return u if u.label == label else Utterance(u.path, label, u.speaker, u.corpus, u.meta)


def model_inputs(ds: Dataset, *, speaker_norm: bool, spread: np.ndarray | None = None
                 ) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """The features the model sees, and those of the augmented copies: with ``speaker_norm``
    (:attr:`emovox.settings.Settings.speaker_norm`), z-scored per speaker (each copy with its
    own statistics, as a new speaker would be), or with ``spread`` centred per speaker and
    divided by it (an adaptive model's second head, :func:`emovox.normalize.by_speaker`)."""
    if not speaker_norm:
        return ds.features, ds.augmented
    return (normalize.by_speaker(ds.features, ds.speakers, spread=spread),
            [normalize.by_speaker(feats, ds.speakers, spread=spread) for feats in ds.augmented])

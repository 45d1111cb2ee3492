"""Settings of a run: feature, training and data configuration, from a YAML/JSON file plus flags."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from itertools import pairwise
from pathlib import Path

from emovox import labels as labelmod
from emovox.config import from_dict, load_file, to_dict
from emovox.errors import ConfigError
from emovox.features import FeatureConfig, vector_slices
from emovox.train import TrainConfig

# The default recipe, chosen by leave-one-corpus-out accuracy (docs/benchmarks.md): a kernel
# machine over level-free eGeMAPS-style descriptors, the GE2E embedding and the GE2E layer means,
# spreads and peaks, with one kernel per view.
DEFAULT_MODEL = "kernel"
KERNEL_VECTORS = ("voice", "dvector", "dvector_layers", "dvector_spread", "dvector_peak")  # emovox.encoder's
# one RBF kernel per view: descriptors with the speaker embedding, the encoder's layer means, its
# layer spreads, its layer peaks, the descriptors alone (so the 768-value vectors cannot drown the
# rest); the same for openSMILE's vectors
KERNEL_VIEWS = (["voice", "dvector"], ["dvector_layers"], ["dvector_spread"], ["dvector_peak"], ["voice"],
                ["egemaps_rel", "ge2e"], ["ge2e_layers"], ["egemaps_rel"])
# a linear layer over fixed kernel features: fit it harder than a deep net, without masks; one
# copy of each clip moved onto another speaker's voice (emovox.augment.speaker_swaps)
KERNEL_TRAINING = {"lr": 0.005, "weight_decay": 0.0, "spec_augment": False, "val_fraction": 0.1,
                   "speaker_swap": 1}


@dataclass(frozen=True)
class Overrides:
    """Command-line overrides of a config file (``None`` keeps the file's value); the CLI's
    ``train`` and ``evaluate`` take each one as the option of the same name.

    Attributes
    ----------
    model, epochs, seed, device, precision
        The ``train:`` keys of the same names.
    speaker_norm : bool
        ``data: speaker_norm``.
    classes : str
        Comma-separated classes to keep (``data: classes``).
    merge : str
        Class merges, e.g. ``calm=neutral,boredom=neutral`` (``data: merge``).
    backbone : str
        A wav2vec2/HuBERT/WavLM directory: a self-supervised encoder as the front end.
    ssl_mode : {"frozen", "finetune"}
        ``frozen`` caches the encoder's hidden states as features (``features.kind = "ssl"``)
        for the ``ssl`` head; ``finetune`` trains ``ssl_finetune`` on waveforms with the top
        layers unfrozen.
    augment : str
        Comma-separated waveform augmentations (``train: augment``).
    """

    model: str | None = None
    epochs: int | None = None
    seed: int | None = None
    speaker_norm: bool | None = None
    classes: str | None = None
    merge: str | None = None
    backbone: str | None = None
    ssl_mode: str = "frozen"
    augment: str | None = None
    device: str | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.ssl_mode not in ("frozen", "finetune"):
            raise ConfigError(f"unknown ssl mode {self.ssl_mode!r}", fix="use frozen or finetune")

    @classmethod
    def pick(cls, values: dict) -> dict:
        """The entries of ``values`` (e.g. a command's arguments) that are overrides.

        Examples
        --------
        >>> Overrides.pick({"epochs": 3, "out": "runs/x"})
        {'epochs': 3}
        """
        return {f.name: values[f.name] for f in fields(cls) if f.name in values}


TRAIN_OVERRIDES = ("model", "epochs", "seed", "device", "precision")  # straight onto train: keys


@dataclass(frozen=True)
class Settings:
    """Everything a run is configured by: features, training, which classes to use and
    whether features are z-scored per speaker (``data: speaker_norm``, read by the dataset,
    the baseline and the run's name; :mod:`emovox.normalize`)."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    classes: tuple[str, ...] | None = None
    merge: dict | None = None
    sources: tuple[tuple[str, str], ...] | None = None
    speaker_norm: bool = False

    @classmethod
    def build(cls, config: str | Path | None = None, **overrides) -> Settings:
        """Settings from a YAML/JSON file (sections ``features``, ``train``, ``data``) plus
        command-line :class:`Overrides` (``model=``, ``epochs=``, ...)."""
        doc = load_file(config) if config else {}
        return cls.from_doc(doc, source=str(config or "config"), **overrides)

    @classmethod
    def from_doc(cls, doc: dict, *, source: str = "config", **overrides) -> Settings:
        """Settings from a parsed config document plus command-line :class:`Overrides`.

        ``speaker_norm`` is read under ``data:``, and under ``train:`` too, where configs
        and run dirs written before it moved have it.
        """
        src = source
        o = Overrides(**overrides)
        features_doc = dict(doc.get("features") or {})
        train_doc = dict(doc.get("train") or {})
        if o.backbone is not None and o.ssl_mode == "finetune":
            features_doc.update(kind="waveform")
            o = replace(o, model=o.model or "ssl_finetune")
            train_doc["model_kwargs"] = {"backbone": str(o.backbone), **(train_doc.get("model_kwargs") or {})}
        elif o.backbone is not None:
            features_doc.update(kind="ssl", backbone=str(o.backbone))
            o = replace(o, model=o.model or "ssl")
        unknown = sorted(set(doc) - {"features", "train", "data"})
        if unknown:
            raise ConfigError(f"unknown section(s) {unknown}", path=src, fix="use features:, train:, data:")
        for key in TRAIN_OVERRIDES:
            if getattr(o, key) is not None:
                train_doc[key] = getattr(o, key)
        if "model" not in train_doc:  # the recipe that transfers best, unless the features say otherwise
            train_doc["model"] = DEFAULT_MODEL if features_doc.get("kind", "utterance") == "utterance" else "cnn"
        if train_doc["model"] in ("mlp", "kernel"):  # unless told otherwise, these read utterance vectors
            features_doc.setdefault("kind", "utterance")
        if train_doc["model"] == "kernel" and features_doc.get("kind") == "utterance":
            features_doc.setdefault("utterance", list(KERNEL_VECTORS))
            for key, value in KERNEL_TRAINING.items():
                train_doc.setdefault(key, value)
        if o.augment is not None:
            train_doc["augment"] = _items(o.augment)
        data = dict(doc.get("data") or {})
        speaker_norm = _speaker_norm(data, train_doc, o.speaker_norm, source=src)
        if o.classes:
            data["classes"] = _items(o.classes)
        if o.merge:
            data["merge"] = dict(pair.split("=", 1) for pair in o.merge.split(","))
        keep = data.get("classes")
        unknown = sorted(set(data) - {"classes", "merge", "sources"})
        if unknown:
            raise ConfigError(f"unknown data key(s) {unknown}", path=src,
                              fix="use classes:, merge:, sources:, speaker_norm:")
        sources = data.get("sources")
        features = from_dict(FeatureConfig, features_doc, source=src)
        if train_doc.get("model") == "ssl" and features.kind != "ssl":
            raise ConfigError("the ssl model needs ssl features", path=src, fix="pass --backbone DIR")
        if train_doc["model"] == "kernel" and features.kind == "utterance":
            kwargs = dict(train_doc.get("model_kwargs") or {})
            kwargs["views"] = _view_slices(features.utterance, kwargs.get("views"), source=src)
            train_doc["model_kwargs"] = kwargs
        return cls(
            features=features,
            train=from_dict(TrainConfig, train_doc, source=src),
            classes=None if keep is None else tuple(labelmod.canonical(c) for c in keep),
            merge={labelmod.canonical(k): labelmod.canonical(v) for k, v in (data.get("merge") or {}).items()},
            sources=None if not sources else tuple((str(k), str(v)) for k, v in sources.items()),
            speaker_norm=speaker_norm,
        )

    def to_dict(self) -> dict:
        return {"features": to_dict(self.features), "train": to_dict(self.train),
                "data": {"classes": list(self.classes) if self.classes else None, "merge": self.merge,
                         "sources": dict(self.sources) if self.sources else None,
                         "speaker_norm": self.speaker_norm}}


def _speaker_norm(data: dict, train_doc: dict, override: bool | None, *, source: str) -> bool:
    """The speaker-normalisation flag, popped from ``data:`` or from its old place under
    ``train:`` (configs and run dirs written before it moved); ``override`` wins."""
    if "speaker_norm" in data and "speaker_norm" in train_doc:
        raise ConfigError("speaker_norm is set under both data: and train:", path=source,
                          fix="keep it under data: only")
    old_place = train_doc.pop("speaker_norm", False)
    value = data.pop("speaker_norm", old_place)
    return value if override is None else override


def _view_slices(parts: tuple[str, ...], views: list | None, *, source: str) -> list[list[int]]:
    """The kernel machine's views as ``[start, stop]`` slices of the stacked utterance vector.

    A view is a list of adjacent vector names (``["egemaps_rel", "ge2e"]``) or already a
    slice; by default, each of :data:`KERNEL_VIEWS` whose vectors are all present (else
    the whole vector).
    """
    bounds = {part: (span.start, span.stop) for part, span in vector_slices(parts).items()}
    if views is None:
        views = [v for v in KERNEL_VIEWS if set(v) <= set(parts)] or [list(parts)]
    out = []
    for view in views:
        if all(isinstance(v, int) for v in view) and len(view) == 2:
            out.append(list(view))
            continue
        spans = sorted(bounds.get(v, (-1, -1)) for v in view)
        if min(spans)[0] < 0 or any(a[1] != b[0] for a, b in pairwise(spans)):
            raise ConfigError(f"kernel view {view} must name adjacent vectors of {list(parts)}", path=source)
        out.append([spans[0][0], spans[-1][1]])
    return out


def _items(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: a comma-separated command-line list."""
    return [item.strip() for item in text.split(",") if item.strip()]

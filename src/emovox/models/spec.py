"""The checkpoint spec: everything needed to rebuild and use a trained model, typed and versioned.

A :class:`ModelSpec` travels with the weights in ``model.pt`` and, as JSON, in an
exported ONNX model's metadata (``emovox_spec``), so either file describes itself: the
model family and its constructor arguments, the labels, the feature config, whether the
features are z-scored per speaker, and a record of how it was trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from emovox.config import from_dict as config_from_dict
from emovox.config import to_dict as config_to_dict
from emovox.errors import CheckpointError
from emovox.features import FeatureConfig

FORMAT = "emovox-model/1"  # the layout of the dict written by ModelSpec.to_dict
SHAPE_KEYS = ("n_features", "n_frames", "n_classes")


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint says about its model.

    Attributes
    ----------
    model : str
        Model family (a key of :data:`emovox.models.MODELS`).
    model_kwargs : dict
        Constructor arguments: ``n_features``, ``n_frames``, ``n_classes`` and the
        family's own (for a family with pretrained parts, enough to rebuild them from
        config alone).
    labels : tuple of str
        Class names in output order (empty only for a bare network saved by a test).
    features : FeatureConfig
        How audio becomes the model's input (stored as ``feature_config``).
    speaker_norm : bool
        The model reads features z-scored per speaker (see :mod:`emovox.normalize`).
    train_config : dict or None
        The training hyper-parameters, as a record (inference does not read them).
    corpora : tuple of str
        The corpora it was trained on.
    emovox_version : str or None
        The emovox that wrote it.

    Examples
    --------
    >>> spec = ModelSpec("cnn", {"n_features": 64, "n_frames": 126, "n_classes": 2}, labels=("sad", "angry"))
    >>> ModelSpec.from_dict(spec.to_dict()) == spec
    True
    """

    model: str
    model_kwargs: dict[str, Any]
    labels: tuple[str, ...] = ()
    features: FeatureConfig = field(default_factory=FeatureConfig)
    speaker_norm: bool = False
    train_config: dict[str, Any] | None = None
    corpora: tuple[str, ...] = ()
    emovox_version: str | None = None

    def __post_init__(self) -> None:
        missing = [k for k in SHAPE_KEYS if k not in self.model_kwargs]
        if missing:
            raise CheckpointError(f"model spec lacks {', '.join(missing)} in model_kwargs")
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "corpora", tuple(self.corpora))
        if self.labels and len(self.labels) != self.model_kwargs["n_classes"]:
            raise CheckpointError(f"{len(self.labels)} labels for {self.model_kwargs['n_classes']} classes")

    @property
    def n_features(self) -> int:
        return int(self.model_kwargs["n_features"])

    @property
    def n_frames(self) -> int:
        """The model's fixed input length in feature frames."""
        return int(self.model_kwargs["n_frames"])

    @property
    def n_classes(self) -> int:
        return int(self.model_kwargs["n_classes"])

    def to_dict(self) -> dict[str, Any]:
        """Plain values (as in ``model.pt`` and the ONNX metadata), with the ``format`` version."""
        return {"format": FORMAT, "emovox_version": self.emovox_version, "model": self.model,
                "model_kwargs": dict(self.model_kwargs), "labels": list(self.labels),
                "speaker_norm": self.speaker_norm, "feature_config": config_to_dict(self.features),
                "train_config": self.train_config, "corpora": list(self.corpora)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "checkpoint") -> ModelSpec:
        """Read :meth:`to_dict`'s output, or that of any earlier emovox (missing fields take
        their defaults; a newer format is refused with a clear error)."""
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise CheckpointError(f"unknown model format {fmt!r} (this emovox reads {FORMAT})", path=source,
                                  fix="upgrade emovox to read it, or re-train with this one")
        if "model" not in data or "model_kwargs" not in data:
            raise CheckpointError("model spec without model and model_kwargs", path=source)
        known = {f.name for f in dataclasses.fields(cls)} - {"features"}
        kwargs = {k: v for k, v in data.items() if k in known}
        features = config_from_dict(FeatureConfig, data.get("feature_config"), source=source)
        return cls(**kwargs, features=features)

"""Run directories: the folder of one training or evaluation run, its log file and its JSON records.

A run dir holds ``config.json`` (what was asked, read back by ``resume``), ``train.log``,
``metrics.json`` and, for a trained model, ``model.pt`` (self-describing; all the
:class:`~emovox.predict.Predictor` needs); for cross-validation also ``report.md``,
``confusion_matrix.png`` and each finished fold under ``folds/``. Every file is written
atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from emovox import distributed
from emovox.config import to_dict
from emovox.errors import ConfigError
from emovox.features import FeatureConfig
from emovox.files import write_json

__all__ = ["open_run", "run_name", "source_record", "write_config", "write_json"]
RECIPE_SECTIONS = ("features", "train", "data", "folds")  # what a run's finished work depends on


def run_name(train, features: FeatureConfig, ds, *, speaker_norm: bool = False) -> str:
    """E.g. ``cnn + speaker norm on emodb (7 classes)``; inputs other than log-mel are named
    (except the encoder inputs that the ssl models imply)."""
    corpora = "+".join(sorted({u.corpus for u in ds.utterances}))
    shown = " + ".join(features.utterance) if features.kind == "utterance" else features.kind
    inputs = "" if features.kind in ("logmel", "ssl", "waveform") else f" [{shown}]"
    norm = " + speaker norm" if speaker_norm else ""
    augment = [*train.augment, *([f"speaker swap x{train.speaker_swap}"] if train.speaker_swap else [])]
    aug = f" + {', '.join(augment)}" if augment else ""
    return f"{train.model}{inputs}{norm}{aug} on {corpora} ({len(ds.labels)} classes)"


def open_run(out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not distributed.is_main():
        return out
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("emovox")
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            h.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return out


def write_config(out: str | Path, **sections) -> None:
    """Save the run's configuration (dataclasses or plain values) as ``config.json``.

    A run dir that already holds a run with other features, training, data or folds is
    refused: its finished folds and checkpoints would be read back as if they were this
    run's.
    """
    data = json.loads(json.dumps({k: (to_dict(v) if hasattr(v, "__dataclass_fields__") else v)
                                  for k, v in sections.items()}))
    path = Path(out) / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in RECIPE_SECTIONS if k in old and k in data and old[k] != data[k]]
        if changed:
            raise ConfigError(f"this run dir holds a run with another {', '.join(changed)}", path=out,
                              fix="pass a new --out, or `emovox resume` to finish the run that is there")
    if distributed.is_main():
        write_json(path, data)

def source_record(data, corpus: str, cache_dir) -> dict:
    """Where a run's data came from (read back by :func:`resume`)."""
    if data is not None and not isinstance(data, (str, Path)):  # several corpora: [(reader, folder), ...]
        data = [[str(name), str(path)] for name, path in data]
    return {"data": str(data) if isinstance(data, (str, Path)) else data, "corpus": corpus,
            "cache_dir": str(cache_dir) if cache_dir else None}

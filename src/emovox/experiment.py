"""Entry points: a corpus -> features -> training (single, or cross-validated) -> run dir.

:func:`train`, :func:`evaluate` and :func:`resume` are what the CLI calls: they read the
data, write the run's ``config.json`` and hand over to :func:`train_run` (one model on
all speakers, saved with its :class:`~emovox.models.ModelSpec`) or to
:func:`emovox.crossval.cross_validate`. Run directories are :mod:`emovox.rundir`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from emovox import distributed, models
from emovox.calibrate import calibrate_and_measure
from emovox.conditions import CLEAN, parse_conditions
from emovox.config import load_file, to_dict
from emovox.crossval import ADAPT_CORPUS, cross_validate, run_baseline, write_results
from emovox.dataset import DEFAULT_CACHE, Dataset, DataSource, load_dataset, model_inputs
from emovox.errors import ConfigError
from emovox.evaluate import scores
from emovox.features import FeatureConfig
from emovox.frontend import clip_frames, n_features
from emovox.models import ModelSpec
from emovox.normalize import Prior
from emovox.predict import score_features
from emovox.rundir import open_run, run_name, source_record, write_config, write_json
from emovox.settings import Settings
from emovox.splits import validation_split
from emovox.train import TrainConfig, fit, for_features, for_inputs

__all__ = ["cross_validate", "evaluate", "model_spec", "resume", "run_baseline", "train", "train_run"]
log = logging.getLogger("emovox")


def train_run(ds: Dataset, out: str | Path, *, features: FeatureConfig, train: TrainConfig,
              speaker_norm: bool = False, progress: bool = True) -> dict:
    """Train one model on all speakers (some held out for early stopping); write a run dir.
    With ``speaker_norm`` the features are z-scored per speaker, and the model says so; with
    ``train.adapt_prior`` two heads are trained, one on each, and saved as one
    :class:`~emovox.models.Adaptive` model."""
    out = open_run(out)
    train = for_features(train, features)
    idx = np.arange(len(ds.y))
    fit_idx, val_idx = validation_split(idx, ds.speakers, fraction=train.val_fraction, seed=train.seed)
    adaptive = train.adapt_prior is not None
    if adaptive and speaker_norm:
        raise ConfigError("adapt_prior trains a speaker-normalised head beside the single-clip one itself",
                          fix="turn speaker_norm off")
    heads = {"single": False, "adapted": True} if adaptive else {"model": speaker_norm}
    # the adapted head reads features centred per speaker and divided by the training speakers' spread
    prior = (Prior.of([ds.features[i] for i in fit_idx], [ds.speakers[i] for i in fit_idx], frames=train.adapt_prior)
             if adaptive else None)
    trained, figures = {}, {}
    for head, normed in heads.items():
        feats, augmented = model_inputs(ds, speaker_norm=normed, spread=prior.std if adaptive else None)
        result = fit(feats, ds.y, fit_idx, val_idx, n_classes=len(ds.labels), n_frames=clip_frames(features),
                     cfg=for_inputs(train, speaker_normed=normed), groups=ds.groups, augmented=augmented,
                     speakers=ds.speakers, progress=progress, description=head,
                     checkpoint_dir=out / head if adaptive else out)
        calibration = calibrate_and_measure(result.model, feats, ds.y, val_idx, val_idx, clip_frames(features))
        probs = score_features(result.model, [feats[i] for i in val_idx], clip_frames(features))
        trained[head] = result.model
        figures[head] = {"validation": scores(ds.y[val_idx], probs.argmax(1), len(ds.labels)).to_dict(),
                         "calibration": calibration, "best_epoch": result.best_epoch, "history": result.history}
    # on top, the figures of the model, or of the single-clip head (what a clip of an unknown speaker gets)
    metrics = {"name": run_name(train, features, ds, speaker_norm=speaker_norm), **next(iter(figures.values())),
               "validation_speakers": sorted({ds.speakers[i] for i in val_idx}), "n_train": len(fit_idx),
               "skipped": ds.skipped, **(figures if adaptive else {})}
    model = _adaptive(ds, trained, prior, features, train) if adaptive else trained["model"]
    metrics["ranks"] = {"world_size": distributed.world(), "weights_sha256": distributed.gather(_weights_digest(model))}
    if distributed.is_main():
        spec = model_spec(ds, features, train, model, speaker_norm=speaker_norm)
        models.save(out / "model.pt", model, spec=spec)
        write_json(out / "metrics.json", metrics)
        for path in [out / head / "checkpoint.pt" for head in heads] if adaptive else [out / "checkpoint.pt"]:
            path.unlink(missing_ok=True)
    distributed.barrier()
    return metrics


def _adaptive(ds: Dataset, heads: dict, prior: Prior, features: FeatureConfig,
              train: TrainConfig) -> models.Adaptive:
    """The two trained heads as one :class:`~emovox.models.Adaptive` model, its prior the
    statistics of the training speakers (validation speakers left out)."""
    head = {"model": train.model, "kwargs": dict(train.model_kwargs)}
    model = models.Adaptive(n_features(features), clip_frames(features), len(ds.labels), single=head, adapted=head,
                            prior_frames=train.adapt_prior)
    model.single.load_state_dict(heads["single"].state_dict())
    model.adapted.load_state_dict(heads["adapted"].state_dict())
    model.prior_mean.copy_(torch.from_numpy(prior.mean))
    model.prior_std.copy_(torch.from_numpy(prior.std))
    return model.eval()


def _weights_digest(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def model_spec(ds: Dataset, features: FeatureConfig, train: TrainConfig, model: models.Classifier, *,
               speaker_norm: bool = False) -> ModelSpec:
    """What a checkpoint needs to rebuild and use the model without the training code
    (a model family with pretrained parts says how to rebuild them from config alone; an
    adaptive model, its two heads and its prior's weight)."""
    kwargs = dict(train.model_kwargs)
    if isinstance(model, models.Adaptive):
        kwargs = {**model.head_kwargs, "prior_frames": model.prior_frames}
    elif hasattr(model.body, "spec_kwargs"):
        kwargs = {k: v for k, v in kwargs.items() if k != "backbone"} | model.body.spec_kwargs()
    return ModelSpec(
        model="adaptive" if isinstance(model, models.Adaptive) else train.model,
        model_kwargs={"n_features": n_features(features), "n_frames": clip_frames(features),
                      "n_classes": len(ds.labels), **kwargs},
        labels=tuple(ds.labels),
        features=features,
        speaker_norm=speaker_norm,
        train_config=to_dict(train),
        corpora=tuple(sorted({u.corpus for u in ds.utterances})),
    )


def _dataset(data, s: Settings, *, corpus, cache_dir, jobs, strict, progress) -> Dataset:
    if data is None:
        if not s.sources:
            raise ConfigError("no data given", fix="pass --data DIR, or list data: sources: in the --config file")
        data = s.sources
    return load_dataset(data, corpus=corpus, features=s.features, classes=s.classes, merge=s.merge,
                        augment=s.train.augment, cache_dir=DEFAULT_CACHE if cache_dir is None else cache_dir,
                        jobs=jobs, strict=strict, progress=progress, device=s.train.device)


def train(data: DataSource | None, out: str | Path, settings: Settings | None = None, *, corpus: str = "auto",
          cache_dir: str | Path | None = None, jobs: int = 1, strict: bool = False, progress: bool = True) -> dict:
    """Read a corpus (or the config's ``data: sources:``) and train one model into run dir ``out``.

    Examples
    --------
    >>> train("../shared/data/emodb", "runs/emodb-cnn")  # doctest: +SKIP
    """
    s = settings or Settings.build()
    ds = _dataset(data, s, corpus=corpus, cache_dir=cache_dir, jobs=jobs, strict=strict, progress=progress)
    write_config(open_run(out), **s.to_dict(), corpus=source_record(data, corpus, cache_dir))
    return train_run(ds, out, features=s.features, train=s.train, speaker_norm=s.speaker_norm, progress=progress)


def resume(run_dir: str | Path, *, cache_dir: str | Path | None = None, jobs: int = 1,
           progress: bool = True, device: str | None = None, precision: str | None = None) -> dict:
    """Continue an interrupted ``train`` or ``evaluate`` run from its last complete checkpoint.

    The run dir's ``config.json`` says what the run was; finished folds and epochs are kept.
    ``device`` and ``precision`` override the saved ones (a run started on a GPU can go on
    on a CPU, and the reverse: checkpoints are device-neutral).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise ConfigError("not a run dir (no config.json)", path=run_dir, fix="pass the --out of the interrupted run")
    doc = load_file(run_dir / "config.json")
    source = doc.pop("corpus")
    folds = doc.pop("folds", None)
    with_baseline = doc.pop("baseline", False)
    conditions = doc.pop("test_conditions", ())
    settings = Settings.from_doc(doc, source=str(run_dir / "config.json"), device=device, precision=precision)
    kw = dict(corpus=source["corpus"], cache_dir=cache_dir or source.get("cache_dir"), jobs=jobs, progress=progress)
    if folds is None:
        return train(source["data"], run_dir, settings, **kw)
    return evaluate(source["data"], run_dir, settings, folds=folds, with_baseline=with_baseline,
                    test_conditions=conditions, **kw)


def evaluate(data: DataSource | None, out: str | Path, settings: Settings | None = None, *, corpus: str = "auto",
             folds: int | str = 5, with_baseline: bool = False, cache_dir: str | Path | None = None,
             jobs: int = 1, threads: int | None = None, strict: bool = False, progress: bool = True,
             test_conditions: Sequence[str] = (), adapt: Sequence[str] = ()) -> dict:
    """Read a corpus and cross-validate one model by speaker (see :func:`cross_validate`);
    ``test_conditions`` (:mod:`emovox.conditions` names, e.g. ``["phone", "white:10"]``)
    also score each fold's test audio through those channels.

    ``adapt`` (``"speaker"``, ``"corpus"``) also trains, on the same folds, the head that
    reads speaker-normalised features (as an adaptive model's second head, under
    ``<out>/adapted``) and adds its rows to ``test_conditions``: ``adapted: speaker`` (each
    test speaker's clips z-scored with the statistics of all of them) and ``adapted:
    corpus`` (the test set's clips pooled as one speaker, no ids).

    Examples
    --------
    >>> evaluate([("ravdess", "../shared/data/ravdess"), ("emodb", "../shared/data/emodb")],
    ...          "runs/loco", folds="loco", test_conditions=["phone", "babble:10"])  # doctest: +SKIP
    """
    s = settings or Settings.build()
    conditions = parse_conditions(test_conditions)
    adapt = [a for a in adapt if a]
    unknown = set(adapt) - {"speaker", "corpus"}
    if unknown or (adapt and s.speaker_norm):
        raise ConfigError(f"cannot adapt by {sorted(unknown) or adapt}", fix="use --adapt speaker, corpus or "
                          "speaker,corpus on a model without --speaker-norm (the adapted head is trained beside it)")
    ds = _dataset(data, s, corpus=corpus, cache_dir=cache_dir, jobs=jobs, strict=strict, progress=progress)
    write_config(open_run(out), **s.to_dict(), corpus=source_record(data, corpus, cache_dir),
                 folds=folds, baseline=with_baseline, test_conditions=[c.name for c in conditions])
    kw = dict(features=s.features, train=s.train, folds=folds, cache_dir=DEFAULT_CACHE if cache_dir is None
              else cache_dir, jobs=jobs, threads=threads, progress=progress)
    metrics = cross_validate(ds, out, speaker_norm=s.speaker_norm, with_baseline=with_baseline,
                             conditions=conditions, **kw)
    if adapt:
        adapted = cross_validate(ds, Path(out) / "adapted", speaker_norm=True, adapt_corpus="corpus" in adapt, **kw)
        rows = metrics.setdefault("test_conditions", {CLEAN: _summary(metrics)})
        if "speaker" in adapt:
            rows["adapted: speaker"] = _summary(adapted)
        if "corpus" in adapt:
            rows[ADAPT_CORPUS] = adapted["test_conditions"][ADAPT_CORPUS]
        write_results(Path(out), metrics)
    return metrics


def _summary(metrics: dict) -> dict:
    """A cross-validation's scores in the shape of one ``test_conditions`` row."""
    return {k: metrics[k] for k in ("ua", "wa", "macro_f1", "mean", "folds")}

"""Experiments: a corpus -> features -> (cross-validated | single) training -> run dir.

A run dir holds ``config.json``, ``train.log``, ``metrics.json`` and, for a trained
model, ``model.pt`` (self-describing; all the :class:`~emovox.predict.Predictor` needs);
for cross-validation also ``report.md`` and ``confusion_matrix.png``. Cross-validation
stores each finished fold under ``folds/`` so an interrupted run resumes at the next fold.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from emovox import __version__, baseline, distributed, models, normalize
from emovox.cache import atomic_write, extract_files
from emovox.calibrate import ece, fit_temperature
from emovox.config import load_file, to_dict
from emovox.dataset import DEFAULT_CACHE, Dataset, DataSource, load_dataset, model_inputs
from emovox.errors import ConfigError
from emovox.evaluate import report_markdown, scores, summarise
from emovox.features import FeatureConfig
from emovox.frontend import clip_frames, n_features, ssl_layers
from emovox.models import ModelSpec
from emovox.plots import plot_confusion
from emovox.predict import score_features
from emovox.progress import bar
from emovox.settings import Settings
from emovox.splits import make_folds, validation_split
from emovox.train import TrainConfig, fit

log = logging.getLogger("emovox")


def train_run(ds: Dataset, out: str | Path, *, features: FeatureConfig, train: TrainConfig,
              progress: bool = True) -> dict:
    """Train one model on all speakers (some held out for early stopping); write a run dir."""
    out = _open_run(out)
    train = _fit_to_features(train, features)
    feats, augmented = model_inputs(ds, train)
    idx = np.arange(len(ds.y))
    fit_idx, val_idx = validation_split(idx, ds.speakers, fraction=train.val_fraction, seed=train.seed)
    result = fit(feats, ds.y, fit_idx, val_idx, n_classes=len(ds.labels), n_frames=clip_frames(features),
                 cfg=train, groups=ds.groups, augmented=augmented, checkpoint_dir=out, progress=progress)
    calibration = _calibrate(result.model, feats, ds.y, val_idx, val_idx, clip_frames(features))
    probs = score_features(result.model, [feats[i] for i in val_idx], clip_frames(features))
    val = scores(ds.y[val_idx], probs.argmax(1), len(ds.labels)).to_dict()
    metrics = {"name": _name(train, features, ds), "validation": val, "calibration": calibration,
               "best_epoch": result.best_epoch,
               "validation_speakers": sorted({ds.speakers[i] for i in val_idx}), "history": result.history,
               "n_train": len(fit_idx), "skipped": ds.skipped,
               "ranks": {"world_size": distributed.world(), "weights_sha256": distributed.gather(
                   _weights_digest(result.model))}}
    if distributed.is_main():
        models.save(out / "model.pt", result.model, spec=model_spec(ds, features, train, result.model))
        _write_json(out / "metrics.json", metrics)
        (out / "checkpoint.pt").unlink(missing_ok=True)
    distributed.barrier()
    return metrics


def _fit_to_features(train: TrainConfig, features: FeatureConfig) -> TrainConfig:
    """``train`` with what its model must know of the features that only the encoder can
    say: the ``ssl`` head's number of stacked hidden states (read here, not by the config)."""
    if train.model != "ssl" or "n_layers" in train.model_kwargs:
        return train
    return replace(train, model_kwargs={"n_layers": ssl_layers(features), **train.model_kwargs})


def _weights_digest(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def model_spec(ds: Dataset, features: FeatureConfig, train: TrainConfig, model: models.Classifier) -> ModelSpec:
    """What a checkpoint needs to rebuild and use the model without the training code
    (a model family with pretrained parts says how to rebuild them from config alone)."""
    kwargs = dict(train.model_kwargs)
    if hasattr(model.body, "spec_kwargs"):
        kwargs = {k: v for k, v in kwargs.items() if k != "backbone"} | model.body.spec_kwargs()
    return ModelSpec(
        model=train.model,
        model_kwargs={"n_features": n_features(features), "n_frames": clip_frames(features),
                      "n_classes": len(ds.labels), **kwargs},
        labels=tuple(ds.labels),
        features=features,
        speaker_norm=train.speaker_norm,
        train_config=to_dict(train),
        corpora=tuple(sorted({u.corpus for u in ds.utterances})),
    )


def cross_validate(ds: Dataset, out: str | Path, *, features: FeatureConfig, train: TrainConfig,
                   folds: int | str = 5, with_baseline: bool = False, cache_dir: str | Path | None = DEFAULT_CACHE,
                   jobs: int = 1, threads: int | None = None, progress: bool = True) -> dict:
    """Speaker-grouped cross-validation of one model (and optionally the eGeMAPS+SVM baseline).

    Writes ``metrics.json`` (``ua``, ``wa``, ``macro_f1``, ``folds``), ``report.md`` and
    ``confusion_matrix.png`` into ``out``; finished folds are reused on a rerun. ``jobs``
    folds run in parallel processes with ``threads`` torch threads each.
    """
    out = _open_run(out)
    train = _fit_to_features(train, features)
    splits = make_folds(ds.speakers, [str(v) for v in ds.y], folds, seed=train.seed,
                        corpora=[u.corpus for u in ds.utterances])
    independent = all(f.speaker_independent for f in splits)
    inputs = model_inputs(ds, train)
    y_pred = np.zeros_like(ds.y)
    fold_rows = []
    for fold, (row, pred) in zip(splits, _run_folds(ds, inputs, splits, out, features, train, independent,
                                                    jobs, threads, progress), strict=True):
        y_pred[fold.test] = pred
        fold_rows.append(row)
    name = _name(train, features, ds) + ("" if independent else " [random-utterance split]")
    metrics = summarise(ds.y, y_pred, fold_rows, ds.labels, name=name, speaker_independent=independent,
                        extra={"n_folds": len(splits), "skipped": ds.skipped, "emovox_version": __version__,
                               "calibration": {k: float(np.mean([r[k] for r in fold_rows]))
                                               for k in ("ece_before", "ece_after")}})
    if ds.groups is not None:
        metrics["per_corpus"] = _per_corpus(ds, y_pred)
    if with_baseline:
        metrics["baseline"] = run_baseline(ds, splits, cache_dir=cache_dir, jobs=jobs, progress=progress,
                                           seed=train.seed, independent=independent,
                                           speaker_norm=train.speaker_norm)
    _write_json(out / "metrics.json", metrics)
    plot_confusion(metrics["confusion_matrix"], ds.labels, out / "confusion_matrix.png", title=name)
    report = report_markdown(metrics, baseline=metrics.get("baseline"), image="confusion_matrix.png")
    atomic_write(out / "report.md", lambda p: p.write_text(report))
    return metrics


def _per_corpus(ds: Dataset, y_pred: np.ndarray) -> dict:
    """Scores and confusion matrix of the pooled test predictions, corpus by corpus."""
    from sklearn.metrics import confusion_matrix

    out = {}
    for name in sorted({u.corpus for u in ds.utterances}):
        mask = np.array([u.corpus == name for u in ds.utterances])
        out[name] = {**scores(ds.y[mask], y_pred[mask], len(ds.labels)).to_dict(),
                     "confusion_matrix": confusion_matrix(ds.y[mask], y_pred[mask],
                                                          labels=np.arange(len(ds.labels))).tolist()}
    return out


def _run_folds(ds, inputs, splits, out: Path, features, train, independent, jobs, threads, progress) -> list:
    """Each fold's (row, predictions), serially or in ``jobs`` worker processes.

    ``inputs`` is :func:`~emovox.dataset.model_inputs`: the features and augmented copies.

    Each fold trains with ``threads`` torch threads (default ``cores // jobs``) and is
    seeded the same way wherever it runs, so runs with the same threads per fold write
    the same numbers, serial or parallel. (Float sums depend on the thread count.)
    """
    from emovox.parallel import set_threads

    threads = threads or max(1, (os.cpu_count() or 1) // max(1, jobs))
    args = [(fold, out / "folds" / f"{fold.index}", features, train, independent) for fold in splits]
    if jobs <= 1:
        set_threads(threads)
        return [_run_fold(ds, inputs, *a, progress) for a in args]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    results = {}
    with bar(enabled=progress) as pbar, ProcessPoolExecutor(
            jobs, mp_context=mp.get_context("spawn"), initializer=_init_fold_worker,
            initargs=(ds, inputs, threads, out)) as pool:
        task = pbar.add_task(f"{len(splits)} folds, {jobs} at a time", total=len(splits), status="")
        futures = {pool.submit(_fold_in_worker, *a): a[0].index for a in args}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            pbar.update(task, advance=1, status=f"fold {index + 1} UA {results[index][0]['ua']:.3f}")
    return [results[fold.index] for fold in splits]


_WORKER: dict = {}


def _init_fold_worker(ds, inputs, threads: int, out: Path) -> None:
    from emovox.parallel import set_threads

    set_threads(threads)
    _open_run(out)  # this worker's log lines go to the run's train.log too
    _WORKER.update(ds=ds, inputs=inputs)


def _fold_in_worker(fold, fold_dir, features, train, independent):
    return _run_fold(_WORKER["ds"], _WORKER["inputs"], fold, fold_dir, features, train, independent, False)


def _run_fold(ds, inputs, fold, fold_dir: Path, features, train, independent, progress) -> tuple[dict, np.ndarray]:
    feats, augmented = inputs
    done = fold_dir / "result.json"
    if done.exists():
        saved = json.loads(done.read_text())
        return saved["row"], np.array(saved["pred"], dtype=np.int64)
    fit_idx, val_idx = validation_split(fold.train, ds.speakers, fraction=train.val_fraction, seed=train.seed,
                                        speaker_independent=independent)
    result = fit(feats, ds.y, fit_idx, val_idx, n_classes=len(ds.labels), n_frames=clip_frames(features),
                 cfg=train, groups=ds.groups, augmented=augmented, checkpoint_dir=fold_dir, progress=progress,
                 description=f"fold {fold.index + 1}")
    calibration = _calibrate(result.model, feats, ds.y, val_idx, fold.test, clip_frames(features))
    pred = score_features(result.model, [feats[i] for i in fold.test], clip_frames(features)).argmax(1)
    row = {**_fold_row(fold, ds, pred), "best_epoch": result.best_epoch, **calibration}
    log.info("fold %d (%s): UA %.3f WA %.3f", fold.index, fold.test_corpus or ", ".join(fold.test_speakers),
             row["ua"], row["wa"])
    _write_json(done, {"row": row, "pred": pred.tolist()})
    (fold_dir / "checkpoint.pt").unlink(missing_ok=True)
    return row, pred


def _fold_row(fold, ds: Dataset, pred: np.ndarray) -> dict:
    """One fold's scores; a held-out corpus also gets its confusion matrix."""
    row = {"fold": fold.index, "test_speakers": list(fold.test_speakers),
           **scores(ds.y[fold.test], pred, len(ds.labels)).to_dict()}
    if fold.test_corpus:
        from sklearn.metrics import confusion_matrix

        row.update(test_corpus=fold.test_corpus, confusion_matrix=confusion_matrix(
            ds.y[fold.test], pred, labels=np.arange(len(ds.labels))).tolist())
    return row


def _calibrate(model, feats, y, val_idx, test_idx, n_frames) -> dict:
    """Fit the temperature on ``val_idx`` (held-out speakers); ECE on ``test_idx`` before and after."""
    test_feats = [feats[i] for i in test_idx]
    before = ece(score_features(model, test_feats, n_frames), y[test_idx])
    t = fit_temperature(model, [feats[i] for i in val_idx], y[val_idx], n_frames)
    after = ece(score_features(model, test_feats, n_frames), y[test_idx])
    return {"temperature": round(t, 4), "ece_before": before, "ece_after": after}


def run_baseline(ds: Dataset, splits, *, cache_dir, jobs, progress, seed, independent,
                 speaker_norm: bool = False) -> dict:
    """eGeMAPSv02 functionals + SVM on exactly the given folds; with ``speaker_norm`` the
    functionals are z-scored per speaker first, as the model's features are."""
    ext = extract_files([u.path for u in ds.utterances], baseline.FEATURES, cache_dir=cache_dir,
                        jobs=jobs, progress=progress)
    columns = [ext.features[u.path] for u in ds.utterances]  # (88, 1): one "frame" per utterance
    if speaker_norm:
        columns = normalize.by_speaker(columns, ds.speakers)
    x = np.concatenate(columns, axis=1).T
    y_pred = np.zeros_like(ds.y)
    rows = []
    for fold in splits:
        pred = baseline.fit_predict(x, ds.y, fold.train, fold.test, seed=seed)
        y_pred[fold.test] = pred
        rows.append(_fold_row(fold, ds, pred))
    name = "eGeMAPSv02 + SVM" + (" + speaker norm" if speaker_norm else "")
    return summarise(ds.y, y_pred, rows, ds.labels, name=name, speaker_independent=independent)


def _name(train: TrainConfig, features: FeatureConfig, ds: Dataset) -> str:
    """E.g. ``cnn + speaker norm on emodb (7 classes)``; inputs other than log-mel are named
    (except the encoder inputs that the ssl models imply)."""
    corpora = "+".join(sorted({u.corpus for u in ds.utterances}))
    shown = " + ".join(features.utterance) if features.kind == "utterance" else features.kind
    inputs = "" if features.kind in ("logmel", "ssl", "waveform") else f" [{shown}]"
    norm = " + speaker norm" if train.speaker_norm else ""
    aug = f" + {', '.join(train.augment)}" if train.augment else ""
    return f"{train.model}{inputs}{norm}{aug} on {corpora} ({len(ds.labels)} classes)"


def _open_run(out: str | Path) -> Path:
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
    """Save the run's configuration (dataclasses or plain values) as ``config.json``."""
    data = {k: (to_dict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in sections.items()}
    if distributed.is_main():
        _write_json(Path(out) / "config.json", data)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2)))


def _dataset(data, s: Settings, *, corpus, cache_dir, jobs, strict, progress) -> Dataset:
    if data is None:
        if not s.sources:
            raise ConfigError("no data given", fix="pass --data DIR, or list data: sources: in the --config file")
        data = s.sources
    return load_dataset(data, corpus=corpus, features=s.features, classes=s.classes, merge=s.merge,
                        augment=s.train.augment, cache_dir=DEFAULT_CACHE if cache_dir is None else cache_dir,
                        jobs=jobs, strict=strict, progress=progress, device=s.train.device)


def _source(data, corpus: str, cache_dir) -> dict:
    """Where a run's data came from (read back by :func:`resume`)."""
    if data is not None and not isinstance(data, (str, Path)):  # several corpora: [(reader, folder), ...]
        data = [[str(name), str(path)] for name, path in data]
    return {"data": str(data) if isinstance(data, (str, Path)) else data, "corpus": corpus,
            "cache_dir": str(cache_dir) if cache_dir else None}


def train(data: DataSource | None, out: str | Path, settings: Settings | None = None, *, corpus: str = "auto",
          cache_dir: str | Path | None = None, jobs: int = 1, strict: bool = False, progress: bool = True) -> dict:
    """Read a corpus (or the config's ``data: sources:``) and train one model into run dir ``out``.

    Examples
    --------
    >>> train("../shared/data/emodb", "runs/emodb-cnn")  # doctest: +SKIP
    """
    s = settings or Settings.build()
    ds = _dataset(data, s, corpus=corpus, cache_dir=cache_dir, jobs=jobs, strict=strict, progress=progress)
    write_config(_open_run(out), **s.to_dict(), corpus=_source(data, corpus, cache_dir))
    return train_run(ds, out, features=s.features, train=s.train, progress=progress)


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
    settings = Settings.from_doc(doc, source=str(run_dir / "config.json"), device=device, precision=precision)
    kw = dict(corpus=source["corpus"], cache_dir=cache_dir or source.get("cache_dir"), jobs=jobs, progress=progress)
    if folds is None:
        return train(source["data"], run_dir, settings, **kw)
    return evaluate(source["data"], run_dir, settings, folds=folds, with_baseline=with_baseline, **kw)


def evaluate(data: DataSource | None, out: str | Path, settings: Settings | None = None, *, corpus: str = "auto",
             folds: int | str = 5, with_baseline: bool = False, cache_dir: str | Path | None = None,
             jobs: int = 1, threads: int | None = None, strict: bool = False, progress: bool = True) -> dict:
    """Read a corpus and cross-validate one model by speaker (see :func:`cross_validate`)."""
    s = settings or Settings.build()
    ds = _dataset(data, s, corpus=corpus, cache_dir=cache_dir, jobs=jobs, strict=strict, progress=progress)
    write_config(_open_run(out), **s.to_dict(), corpus=_source(data, corpus, cache_dir),
                 folds=folds, baseline=with_baseline)
    return cross_validate(ds, out, features=s.features, train=s.train, folds=folds, with_baseline=with_baseline,
                          cache_dir=DEFAULT_CACHE if cache_dir is None else cache_dir, jobs=jobs, threads=threads,
                          progress=progress)

"""Cross-validation: speaker-grouped folds, each trained (in worker processes if asked),
calibrated and scored, pooled into metrics and a report; the eGeMAPS + SVM baseline on
the very same folds.

Each finished fold is stored under ``<run dir>/folds/`` so an interrupted run resumes at
the next fold. With test conditions (:mod:`emovox.conditions`), each fold's model also
scores its test utterances through each channel, reported beside clean.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from emovox import __version__, baseline, normalize
from emovox.augment import AugmentedFeatures
from emovox.cache import extract_files
from emovox.calibrate import calibrate_and_measure
from emovox.conditions import CLEAN, Condition, babble_pool
from emovox.dataset import DEFAULT_CACHE, Dataset, model_inputs
from emovox.errors import ConfigError
from emovox.evaluate import confusion, report_markdown, scores, summarise
from emovox.features import FeatureConfig
from emovox.files import atomic_write
from emovox.frontend import clip_frames
from emovox.plots import plot_confusion
from emovox.predict import score_features
from emovox.progress import bar
from emovox.rundir import open_run, run_name, write_json
from emovox.splits import make_folds, validation_split
from emovox.train import TrainConfig, fit, for_features, for_inputs

log = logging.getLogger("emovox")
ADAPT_CORPUS = "adapted: corpus"  # the test set's statistics pooled (cross_validate(adapt_corpus=True))


def cross_validate(ds: Dataset, out: str | Path, *, features: FeatureConfig, train: TrainConfig,
                   speaker_norm: bool = False, folds: int | str = 5, with_baseline: bool = False,
                   cache_dir: str | Path | None = DEFAULT_CACHE, jobs: int = 1, threads: int | None = None,
                   progress: bool = True, conditions: Sequence[Condition] = (), adapt_corpus: bool = False) -> dict:
    """Speaker-grouped cross-validation of one model (and optionally the eGeMAPS+SVM baseline).

    Writes ``metrics.json`` (``ua``, ``wa``, ``macro_f1``, ``folds``), ``report.md`` and
    ``confusion_matrix.png`` into ``out``; finished folds are reused on a rerun. ``jobs``
    folds run in parallel processes with ``threads`` torch threads each. With
    ``speaker_norm`` the model's features and the baseline's are z-scored per speaker.
    With ``conditions``, each fold's model also scores its test utterances through each
    of them (features cached like augmented copies), and ``metrics.json`` gains
    ``test_conditions``: per condition, clean first, the scores of every fold (in
    leave-one-corpus-out, every held-out corpus), their mean and the pooled scores. With
    ``adapt_corpus`` (and ``speaker_norm``) a row :data:`ADAPT_CORPUS` joins them: each
    fold's test utterances z-scored with the statistics of all of them, as if the test set
    were one speaker (no speaker ids).
    """
    out = open_run(out)
    train = for_inputs(for_features(train, features), speaker_normed=speaker_norm)
    splits = make_folds(ds.speakers, [str(v) for v in ds.y], folds, seed=train.seed,
                        corpora=[u.corpus for u in ds.utterances])
    independent = all(f.speaker_independent for f in splits)
    inputs = model_inputs(ds, speaker_norm=speaker_norm)
    tested = _condition_inputs(ds, splits, conditions, features, speaker_norm=speaker_norm,
                               cache_dir=cache_dir, jobs=jobs, progress=progress)
    if adapt_corpus:
        for fold, by_name in zip(splits, tested, strict=True):
            by_name[ADAPT_CORPUS] = normalize.by_speaker([ds.features[i] for i in fold.test], [0] * len(fold.test))
    y_pred = np.zeros_like(ds.y)
    fold_rows, degraded = [], []
    for fold, (row, pred, scored) in zip(splits, _run_folds(ds, inputs, splits, out, features, train, independent,
                                                            jobs, threads, progress, tested), strict=True):
        y_pred[fold.test] = pred
        fold_rows.append(row)
        degraded.append(scored)
    name = run_name(train, features, ds, speaker_norm=speaker_norm)
    name += "" if independent else " [random-utterance split]"
    metrics = summarise(ds.y, y_pred, fold_rows, ds.labels, name=name, speaker_independent=independent,
                        extra={"n_folds": len(splits), "skipped": ds.skipped, "emovox_version": __version__,
                               "calibration": {k: float(np.mean([r[k] for r in fold_rows]))
                                               for k in ("ece_before", "ece_after")}})
    if ds.groups is not None:
        metrics["per_corpus"] = _per_corpus(ds, y_pred)
    if conditions or adapt_corpus:
        preds = {CLEAN: [y_pred[fold.test] for fold in splits]}
        names = [c.name for c in conditions] + ([ADAPT_CORPUS] if adapt_corpus else [])
        preds |= {name: [np.array(scored[name]) for scored in degraded] for name in names}
        metrics["test_conditions"] = {name: _condition_scores(ds, splits, p) for name, p in preds.items()}
    if with_baseline:
        metrics["baseline"] = run_baseline(ds, splits, cache_dir=cache_dir, jobs=jobs, progress=progress,
                                           seed=train.seed, independent=independent,
                                           speaker_norm=speaker_norm)
    write_results(out, metrics)
    return metrics


def write_results(out: Path, metrics: dict) -> None:
    """``metrics.json``, ``confusion_matrix.png`` and ``report.md`` of a cross-validation."""
    write_json(out / "metrics.json", metrics)
    plot_confusion(metrics["confusion_matrix"], metrics["labels"], out / "confusion_matrix.png", title=metrics["name"])
    report = report_markdown(metrics, baseline=metrics.get("baseline"), image="confusion_matrix.png")
    atomic_write(out / "report.md", lambda p: p.write_text(report))


def _per_corpus(ds: Dataset, y_pred: np.ndarray) -> dict:
    """Scores and confusion matrix of the pooled test predictions, corpus by corpus."""
    out = {}
    for name in sorted({u.corpus for u in ds.utterances}):
        mask = np.array([u.corpus == name for u in ds.utterances])
        out[name] = {**scores(ds.y[mask], y_pred[mask], len(ds.labels)).to_dict(),
                     "confusion_matrix": confusion(ds.y[mask], y_pred[mask], len(ds.labels))}
    return out


def _condition_inputs(ds: Dataset, splits, conditions: Sequence[Condition], features: FeatureConfig, *,
                      speaker_norm: bool, cache_dir, jobs: int, progress: bool) -> list[dict[str, list[np.ndarray]]]:
    """Per fold, the model's features of its test utterances under each condition.

    Babble is drawn from the fold's training utterances of speakers who are not tested
    (:func:`emovox.conditions.babble_pool`). With ``speaker_norm`` each condition's
    features are z-scored per speaker with their own statistics, as augmented copies are.
    """
    tested: list[dict[str, list[np.ndarray]]] = [{} for _ in splits]
    paths = [u.path for u in ds.utterances]
    for condition in conditions:
        for fold, inputs in zip(splits, tested, strict=True):
            applied = condition
            if condition.needs_babble:
                pool = babble_pool([paths[i] for i in fold.train], [ds.speakers[i] for i in fold.train],
                                   [ds.utterances[i].corpus for i in fold.train],
                                   test_speakers={ds.speakers[i] for i in fold.test}, test_corpus=fold.test_corpus)
                if not pool:
                    raise ConfigError(f"fold {fold.index + 1} has no known speaker outside its test set to make "
                                      f"{condition.name} from", fix="use white or pink noise, or speaker folds")
                applied = replace(condition, babble=pool)
            test = [paths[i] for i in fold.test]
            ext = extract_files(test, AugmentedFeatures(features, applied), cache_dir=cache_dir, jobs=jobs,
                                strict=True, progress=progress)
            feats = [ext.features[p] for p in test]
            if speaker_norm:
                feats = normalize.by_speaker(feats, [ds.speakers[i] for i in fold.test])
            inputs[condition.name] = feats
    return tested


def _condition_scores(ds: Dataset, splits, preds: list[np.ndarray]) -> dict:
    """One condition's scores: per fold (its held-out corpus), their mean, and pooled."""
    y_pred = np.zeros_like(ds.y)
    rows = []
    for fold, pred in zip(splits, preds, strict=True):
        y_pred[fold.test] = pred
        rows.append(_fold_row(fold, ds, pred))
    return {**scores(ds.y, y_pred, len(ds.labels)).to_dict(),
            "mean": {k: float(np.mean([r[k] for r in rows])) for k in ("ua", "wa", "macro_f1")}, "folds": rows}


def _run_folds(ds, inputs, splits, out: Path, features, train, independent, jobs, threads, progress,
               tested) -> list:
    """Each fold's (row, predictions, predictions by test condition), serially or in ``jobs``
    worker processes.

    ``inputs`` is :func:`~emovox.dataset.model_inputs`: the features and augmented copies;
    ``tested`` is :func:`_condition_inputs`, per fold.

    Each fold trains with ``threads`` torch threads (default ``cores // jobs``) and is
    seeded the same way wherever it runs, so runs with the same threads per fold write
    the same numbers, serial or parallel. (Float sums depend on the thread count.)
    """
    from emovox.parallel import set_threads

    threads = threads or max(1, (os.cpu_count() or 1) // max(1, jobs))
    args = [(fold, out / "folds" / f"{fold.index}", features, train, independent, conditions)
            for fold, conditions in zip(splits, tested, strict=True)]
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
    open_run(out)  # this worker's log lines go to the run's train.log too
    _WORKER.update(ds=ds, inputs=inputs)


def _fold_in_worker(fold, fold_dir, features, train, independent, conditions):
    return _run_fold(_WORKER["ds"], _WORKER["inputs"], fold, fold_dir, features, train, independent, conditions,
                     False)


def _run_fold(ds, inputs, fold, fold_dir: Path, features, train, independent, conditions: dict,
              progress) -> tuple[dict, np.ndarray, dict[str, list[int]]]:
    """Train and score one fold: its row, its test predictions and those under each test
    condition (``conditions``: name -> features of the test utterances). A finished fold is
    read back; one finished without some of the conditions is trained again (the model is
    not kept), with the same seed."""
    feats, augmented = inputs
    done = fold_dir / "result.json"
    saved = json.loads(done.read_text()) if done.exists() else {}
    if saved and set(conditions) <= set(saved.get("conditions", {})):
        return saved["row"], np.array(saved["pred"], dtype=np.int64), saved.get("conditions", {})
    if saved:
        log.info("fold %d: trained again to score %s", fold.index, ", ".join(sorted(set(conditions)
                                                                               - set(saved.get("conditions", {})))))
    fit_idx, val_idx = validation_split(fold.train, ds.speakers, fraction=train.val_fraction, seed=train.seed,
                                        speaker_independent=independent)
    result = fit(feats, ds.y, fit_idx, val_idx, n_classes=len(ds.labels), n_frames=clip_frames(features),
                 cfg=train, groups=ds.groups, augmented=augmented, speakers=ds.speakers, checkpoint_dir=fold_dir,
                 progress=progress, description=f"fold {fold.index + 1}")
    calibration = calibrate_and_measure(result.model, feats, ds.y, val_idx, fold.test, clip_frames(features))
    pred = score_features(result.model, [feats[i] for i in fold.test], clip_frames(features)).argmax(1)
    row = {**_fold_row(fold, ds, pred), "best_epoch": result.best_epoch, **calibration}
    log.info("fold %d (%s): UA %.3f WA %.3f", fold.index, fold.test_corpus or ", ".join(fold.test_speakers),
             row["ua"], row["wa"])
    scored = saved.get("conditions", {}) | {
        name: score_features(result.model, test, clip_frames(features)).argmax(1).tolist()
        for name, test in conditions.items()}
    for name in conditions:
        log.info("fold %d under %s: UA %.3f", fold.index, name,
                 scores(ds.y[fold.test], scored[name], len(ds.labels)).ua)
    write_json(done, {"row": row, "pred": pred.tolist(), "conditions": scored})
    (fold_dir / "checkpoint.pt").unlink(missing_ok=True)
    return row, pred, scored


def _fold_row(fold, ds: Dataset, pred: np.ndarray) -> dict:
    """One fold's scores; a held-out corpus also gets its confusion matrix."""
    row = {"fold": fold.index, "test_speakers": list(fold.test_speakers),
           **scores(ds.y[fold.test], pred, len(ds.labels)).to_dict()}
    if fold.test_corpus:
        row.update(test_corpus=fold.test_corpus, confusion_matrix=confusion(ds.y[fold.test], pred, len(ds.labels)))
    return row


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



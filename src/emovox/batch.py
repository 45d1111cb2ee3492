"""Archive jobs: score every file of a manifest into a resumable Parquet dataset, here or on Ray.

A job reads a manifest (a folder, or a CSV or Parquet file with a ``path`` column), scores
each file with a :class:`~emovox.predict.Predictor` (the only model code it calls), and
writes the rows into ``OUT/part-*.parquet``: one row per file (``predict``) or per speech
segment (``timeline``), with ``path``, ``duration_s`` (the file's, in seconds), ``start``
and ``end`` (segments, seconds), ``label``, one ``score_<label>`` column per class and
``error``. pandas, DuckDB, Spark and Ray read the folder as one table.

The parts are the job's only record. Each holds whole files and is written to a hidden
temporary name, then renamed into place, by this process alone (workers send results
back; they never write); a file whose path is in a committed part is never scored again.
So a kill at any moment (of the driver or of a worker) loses at most the rows not yet
in a part, and rerunning the same command scores exactly the files that have none. A
file that cannot be read gets a row with its error and the job goes on.

The ``local`` engine scores in this process; the ``ray`` engine (``pip install
'emovox[ray]'``) streams the paths through a Ray Data actor pool, one loaded
:class:`~emovox.predict.Predictor` per actor, on this machine or a cluster. Both build
their rows with :class:`Scorer`, so they write the same rows.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import soundfile as sf

from emovox import __version__, audio, labels
from emovox.bundled import resolve_model, sha256
from emovox.errors import ConfigError, EmovoxError
from emovox.files import atomic_write, write_json

MODES = ("predict", "timeline")
ENGINES = ("local", "ray")
BATCH_FILES = 16  # files per call of the model (features and forward pass are batched)
MAX_BLOCKS = 10_000  # Ray Data blocks of the input (a block holds one group of files or more)
PART_FILES = 500  # files per Parquet part ...
PART_SECONDS = 60.0  # ... or fewer, when this long has passed since the last part
CPUS_PER_WORKER = 0.5  # Ray CPUs an actor reserves: leaves room for Ray Data's own tasks on a small node
JOB_FILE = "_job.json"  # what the dataset holds (mode, model); readers skip names starting with _ or .
LOCK_FILE = "_job.lock"
PART_PREFIX = "part-"
READ_ERRORS = (EmovoxError, sf.LibsndfileError, OSError)  # a file that cannot be read becomes an error row
NO_SPEECH = "no speech found"  # the error of a timeline file without segments (not counted as an error)
FILE_COLUMNS = ("path", "duration_s", "error")  # one value per file; the others hold one value per row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchJob:
    """What every worker needs to score files alike.

    Attributes
    ----------
    mode : str
        ``predict`` (a row per file) or ``timeline`` (a row per speech segment).
    model : str or None
        A run dir or ``model.pt``; ``None`` for the bundled model.
    device : str
        Where the model runs (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    vad : str
        ``timeline``'s speech detector: ``silero`` or ``energy``.
    threshold_db : float
        The energy detector's level, in dBFS.
    classes : tuple of str
        Only these of the model's classes, their scores renormalised (empty: all;
        :meth:`emovox.predict.Predictor.only`).
    """

    mode: str = "predict"
    model: str | None = None
    device: str = "auto"
    vad: str = "silero"
    threshold_db: float = -45.0
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}", fix=f"use one of {', '.join(MODES)}")


@dataclass(frozen=True)
class BatchResult:
    """What a run did: files in the manifest, scored now, found already scored, error
    rows written now, audio scored now (seconds), wall time (seconds), parts written."""

    out: str
    files: int
    scored: int
    skipped: int
    errors: int
    audio_s: float
    seconds: float
    parts: int

    def to_dict(self) -> dict:
        return asdict(self)


class Scorer:
    """Scores groups of paths into one row per file (segments as lists); a Ray actor holds one.

    Parameters
    ----------
    job : BatchJob
        Mode, model and device.
    threads : int, optional
        Compute threads of this process (torch, BLAS); ``None`` leaves them as they are.
    """

    def __init__(self, job: BatchJob, threads: int | None = None):
        if threads is not None:
            from emovox.parallel import set_threads

            set_threads(threads)
        from emovox.predict import Predictor

        self.job = job
        self.predictor = Predictor.load(job.model, device=job.device).only(job.classes)
        if self.predictor.speaker_norm and self.predictor.features.kind == "utterance":
            raise ConfigError("this model z-scores utterance vectors over a speaker's recordings, so one file's "
                              "score would depend on the others scored with it", path=job.model,
                              fix="score an archive with a model trained without --speaker-norm")
        self.schema = file_schema(job.mode, self.predictor.labels)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Rows of the files of each group in ``batch["paths"]`` (one model call per group):
        one row per file, segments in list columns."""
        files: list[dict] = []
        for paths in batch.column("paths").to_pylist():
            files += self._predict(paths) if self.job.mode == "predict" else [self._timeline(p) for p in paths]
        return pa.Table.from_pylist(files, schema=self.schema)

    def _predict(self, paths: Sequence[str]) -> list[dict]:
        """Decode each file (errors become rows), then score the readable ones in one call."""
        sr = self.predictor.features.sample_rate
        signals, errors = {}, {}
        for p in paths:
            try:
                signals[p] = audio.load(p, sr=sr)
            except READ_ERRORS as exc:
                errors[p] = str(exc)
        results = {**errors, **dict(zip(signals, self._score(list(signals.values())), strict=True))}
        rows = []
        for p in paths:
            r = results[p]
            rows.append(self._file(p, None, [], r) if isinstance(r, str) else self._file(p, r["duration_s"], [r], None))
        return rows

    def _score(self, signals: list[np.ndarray]) -> list[dict | str]:
        """Results of the signals in one batch; when the batch is refused, one by one, so the
        signal at fault gets its error and the others their scores."""
        try:
            return self.predictor.predict_signals(signals) if signals else []
        except EmovoxError as exc:
            if len(signals) == 1:
                return [str(exc)]
        out: list[dict | str] = []
        for y in signals:
            try:
                out.append(self.predictor.predict_signals([y])[0])
            except EmovoxError as exc:
                out.append(str(exc))
        return out

    def _timeline(self, path: str) -> dict:
        from emovox.segment import VadConfig

        try:
            segments = self.predictor.timeline(path, vad=VadConfig(method=self.job.vad,
                                                                   threshold_db=self.job.threshold_db))
            seconds = round(audio.duration(path), 3)
        except READ_ERRORS as exc:
            return self._file(path, None, [], str(exc))
        return self._file(path, seconds, segments, None if segments else NO_SPEECH)

    def _file(self, path: str, seconds: float | None, results: list, error: str | None) -> dict:
        """One file's row: ``results`` are the Predictor's dicts, ``seconds`` its duration."""
        if seconds is None:
            seconds = _header_seconds(path)
        rows = results or [{}]  # a file without results keeps one row of nulls beside its error
        row = {"path": path, "duration_s": seconds, "error": error,
               "label": [r.get("label") for r in rows]}
        if self.job.mode == "timeline":
            row["start"] = [r.get("start") for r in rows]
            row["end"] = [r.get("end") for r in rows]
        for lab in self.predictor.labels:
            row[f"score_{lab}"] = [r["scores"][lab] if r else None for r in rows]
        return row


def _header_seconds(path: str) -> float | None:
    """A file's duration from its header, or ``None`` when even that cannot be read."""
    try:
        return round(audio.duration(path), 3)
    except READ_ERRORS:
        return None


def file_schema(mode: str, labels: Sequence[str]) -> pa.Schema:
    """Schema of :class:`Scorer`'s output: one row per file, per-row values as lists."""
    fields = [pa.field("path", pa.string()), pa.field("duration_s", pa.float64()),
              pa.field("error", pa.string()), pa.field("label", pa.list_(pa.string()))]
    if mode == "timeline":
        fields += [pa.field("start", pa.list_(pa.float64())), pa.field("end", pa.list_(pa.float64()))]
    fields += [pa.field(f"score_{lab}", pa.list_(pa.float64())) for lab in labels]
    return pa.schema(fields)


def explode(files: pa.Table) -> pa.Table:
    """The dataset's rows from :class:`Scorer`'s: one per list element, columns in dataset order
    (``path, duration_s, [start, end], label, score_*, error``)."""
    owner = pc.list_parent_indices(files["label"])
    lists = [c for c in files.column_names if c not in FILE_COLUMNS]
    order = ["path", "duration_s", *(c for c in ("start", "end") if c in lists), "label",
             *(c for c in lists if c.startswith("score_")), "error"]
    columns = {c: files[c].take(owner) if c in FILE_COLUMNS else pc.list_flatten(files[c]) for c in order}
    return pa.table(columns)


def manifest(source: str | Path) -> list[str]:
    """Absolute paths of the files to score, each once, in the manifest's order.

    Parameters
    ----------
    source : str or Path
        A folder (every audio file under it, sorted, as :func:`emovox.audio.audio_files`),
        or a ``.csv`` / ``.parquet`` file with a ``path`` column (relative paths are taken
        from the manifest's folder).

    Examples
    --------
    >>> manifest("recordings/")  # doctest: +SKIP
    ['/data/recordings/a.wav', '/data/recordings/day2/b.flac']
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() in (".csv", ".parquet"):
        if source.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            read = pcsv.read_csv
        else:
            read = pq.read_table
        try:
            table = read(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ConfigError(f"cannot read the manifest ({exc})", path=source,
                              fix="pass a CSV or Parquet file with a `path` column, or a folder") from None
        if "path" not in table.column_names:
            raise ConfigError(f"the manifest has no `path` column (it has {', '.join(table.column_names)})",
                              path=source, fix="name the column of audio paths `path`")
        paths = [source.parent / str(p) for p in table.column("path").to_pylist() if p]
        if not paths:
            raise ConfigError("the manifest lists no files", path=source, fix="add rows to its `path` column")
    else:
        paths = audio.audio_files(source)
    return list(dict.fromkeys(os.path.abspath(p) for p in paths))


def run(source: str | Path, out: str | Path, *, mode: str = "predict", model: str | Path | None = None,
        engine: str = "local", address: str | None = None, workers: int | None = None,
        gpus_per_worker: float = 0.0, cpus_per_worker: float = CPUS_PER_WORKER, batch_files: int = BATCH_FILES,
        part_files: int = PART_FILES, vad: str = "silero", threshold_db: float = -45.0, device: str = "auto",
        classes: Sequence[str] = (), progress: bool = True) -> BatchResult:
    """Score every file of ``source`` that has no row in ``out`` yet; write its rows to ``out``.

    Parameters
    ----------
    source : str or Path
        A folder, or a CSV or Parquet manifest with a ``path`` column (:func:`manifest`).
    out : str or Path
        The dataset folder: created, or resumed when it holds parts of the same job.
    mode : str
        ``predict`` (a row per file) or ``timeline`` (a row per speech segment).
    model : str or Path, optional
        A run dir; ``None`` for the bundled model.
    engine : str
        ``local`` (this process) or ``ray`` (a Ray Data actor pool).
    address : str, optional
        Ray cluster to join (``auto``, ``ray://host:10001``); by default one is started here.
    workers : int, optional
        Files scored side by side: threads of this process (``local``, default: its CPUs), or
        Ray actors each holding a loaded model (default: the cluster's CPUs, or its GPUs /
        ``gpus_per_worker``). Each computes on one thread.
    gpus_per_worker, cpus_per_worker : float
        Ray resources each actor reserves; with GPUs the model runs on CUDA. An actor
        computes with ``max(1, floor(cpus_per_worker))`` threads.
    batch_files : int
        Files per model call.
    part_files : int
        Files per Parquet part (a part is also written after :data:`PART_SECONDS`).
    vad : str
        ``timeline``'s speech detector, ``silero`` or ``energy``.
    threshold_db : float
        The energy detector's level, in dBFS.
    device : str
        The ``local`` engine's device (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    classes : sequence of str
        Only these of the model's classes, their scores renormalised (default: all); part of
        the job, so a resumed run must ask for the same.
    progress : bool
        Show a progress bar (files, audio hours, rate, ETA, errors) on stderr.

    Returns
    -------
    BatchResult

    Examples
    --------
    >>> run("recordings/", "scores/", mode="timeline", engine="ray")  # doctest: +SKIP
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", fix=f"use one of {', '.join(ENGINES)}")
    if batch_files < 1 or part_files < 1:
        raise ConfigError("--batch-size and --part-files must be at least 1")
    job = BatchJob(mode=mode, model=None if model is None else os.path.abspath(model),
                   device=device if engine == "local" else ("cuda" if gpus_per_worker > 0 else "cpu"),
                   vad=vad, threshold_db=threshold_db, classes=tuple(c.strip() for c in classes if c.strip()))
    paths = manifest(source)
    out = Path(out)
    start = time.perf_counter()
    with _locked(out):
        _claim(out, job)
        writer = PartWriter(out, part_files=part_files)
        groups = _groups(paths, writer.done, batch_files)
        todo = sum(len(g) for g in groups)
        log.info("%d of %d files already scored in %s", len(paths) - todo, len(paths), out)
        if engine == "local":
            results = _local(job, groups, workers or len(os.sched_getaffinity(0)))
        else:
            results = _ray(job, groups, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                           cpus_per_worker=cpus_per_worker)
        with _Progress(todo, enabled=progress) as bar:
            for files in results:
                bar.update(writer.add(files))
            writer.flush()
    return BatchResult(out=str(out), files=len(paths), scored=bar.files, skipped=len(paths) - todo,
                       errors=bar.errors, audio_s=round(bar.audio_s, 3), seconds=round(time.perf_counter() - start, 3),
                       parts=writer.parts)


def _groups(paths: list[str], done: set[str], size: int) -> list[list[str]]:
    """The files still to score, in groups of ``size`` consecutive files of the manifest, each
    scored in one model call. A group's scores depend on its members in the last bit, so the
    groups are fixed by the manifest: after a kill (parts hold whole groups) the same command
    scores the same groups as a run that was never stopped, and writes the same numbers."""
    groups = ([p for p in paths[i : i + size] if p not in done] for i in range(0, len(paths), size))
    return [g for g in groups if g]


def _local(job: BatchJob, groups: list[list[str]], workers: int) -> Iterator[pa.Table]:
    """Scorer's tables, in order, ``workers`` groups side by side in threads of this process,
    each computing on one thread, as a Ray actor does (so both engines write the same numbers;
    on a busy machine this is also faster than one group on every thread). Torch's thread
    count is the process's: it is lowered for the job and restored after it."""
    if not groups:
        return
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(workers)
    try:
        with threadpool_limits(1):
            scorer = Scorer(job)
            pending: deque[Future] = deque()
            for group in groups:
                pending.append(pool.submit(scorer, pa.table({"paths": [group]})))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)
        torch.set_num_threads(threads)


def _ray(job: BatchJob, groups: list[list[str]], *, address: str | None, workers: int | None,
         gpus_per_worker: float, cpus_per_worker: float) -> Iterator[pa.Table]:
    """Scorer's tables from a Ray Data actor pool (joins ``address``, or the cluster already
    initialised in this process, or starts a local one and stops it afterwards)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray engine needs Ray", fix="pip install 'emovox[ray]', or use --engine local") from None
    if not groups:
        return
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # it warns that its bars are off
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts files and audio hours
        resources = ray.cluster_resources()
        if workers is None:
            workers = (int(resources.get("GPU", 0) // gpus_per_worker) if gpus_per_worker > 0
                       else int(resources.get("CPU", 1)))
        if workers < 1:
            raise ConfigError("the Ray cluster has no room for a worker",
                              fix="lower --gpus-per-worker, or add GPUs to the cluster")
        workers = min(workers, len(groups))  # an actor without a group would only load the model
        ds = ray.data.from_items([{"paths": g} for g in groups], override_num_blocks=min(len(groups), MAX_BLOCKS))
        ds = ds.map_batches(Scorer, fn_constructor_kwargs={"job": job, "threads": max(1, int(cpus_per_worker))},
                            batch_size=1, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None)
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        if started:
            ray.shutdown()


class PartWriter:
    """Collects scored files and writes them as Parquet parts, each atomically; skips files
    already written (in this run or a committed part), so every file lands in one part once.

    Parameters
    ----------
    out : Path
        The dataset folder.
    part_files : int
        Files per part (a part is also written after :data:`PART_SECONDS`).
    """

    def __init__(self, out: Path, *, part_files: int = PART_FILES):
        self.out = out
        self.part_files = part_files
        self.done: set[str] = set(committed_paths(out))
        self.parts = 0
        self._run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"  # unique: a part never replaces one
        self._pending: list[pa.Table] = []
        self._files = 0
        self._since = time.monotonic()

    def add(self, files: pa.Table) -> pa.Table:
        """Queue :class:`Scorer`'s rows; returns those of files not written before (the new ones)."""
        paths = files.column("path").to_pylist()
        keep = [p not in self.done for p in paths]
        self.done.update(paths)
        new = files.filter(pa.array(keep, pa.bool_())) if not all(keep) else files
        if new.num_rows:
            self._pending.append(new)
            self._files += new.num_rows
        if self._files >= self.part_files or time.monotonic() - self._since >= PART_SECONDS:
            self.flush()
        return new

    def flush(self) -> None:
        """Write the queued files as one part (temporary name, then renamed into place)."""
        self._since = time.monotonic()
        if not self._pending:
            return
        table = explode(pa.concat_tables(self._pending))
        path = self.out / f"{PART_PREFIX}{self._run}-{self.parts:05d}.parquet"
        atomic_write(path, lambda tmp: _write_part(table, tmp))
        self.parts += 1
        self._pending, self._files = [], 0


def _write_part(table: pa.Table, path: Path) -> None:
    """Write a part readable as the umask allows (a temporary file is private to its writer)."""
    pq.write_table(table, path)
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def parts(out: str | Path) -> list[Path]:
    """The committed parts of a dataset folder, sorted by name."""
    return sorted(Path(out).glob(f"{PART_PREFIX}*.parquet"))


def committed_paths(out: str | Path) -> list[str]:
    """Paths of the files that have rows in a committed part."""
    paths: list[str] = []
    for part in parts(out):
        try:
            paths += pq.read_table(part, columns=["path"]).column("path").unique().to_pylist()
        except (pa.ArrowInvalid, KeyError) as exc:
            raise ConfigError(f"is not a part of an emovox batch dataset ({exc})", path=part,
                              fix="move it out of the folder (emovox writes parts whole, under a temporary name)"
                              ) from None
    return paths


def read(out: str | Path) -> pa.Table:
    """The dataset as one table, sorted by path (and segment start): a stable order to compare runs."""
    found = parts(out)
    if not found:
        raise ConfigError("no scored files here", path=out, fix="run `emovox batch SOURCE --out` into it first")
    table = pa.concat_tables(pq.read_table(p) for p in found)
    keys = [("path", "ascending")] + ([("start", "ascending")] if "start" in table.column_names else [])
    return table.sort_by(keys)


class _Progress:
    """A rich bar over files, with audio hours, rate and errors (rich adds elapsed and ETA)."""

    def __init__(self, total: int, *, enabled: bool):
        from emovox.progress import bar

        self.files, self.errors, self.audio_s = 0, 0, 0.0
        self._bar = bar(enabled=enabled)
        self._task = self._bar.add_task("scoring", total=total, status="")
        self._start = time.perf_counter()

    def __enter__(self) -> _Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def update(self, files: pa.Table) -> None:
        self.files += files.num_rows
        self.errors += _errors(files["error"])
        self.audio_s += pc.sum(files["duration_s"]).as_py() or 0.0
        rate = self.files / max(time.perf_counter() - self._start, 1e-9)
        self._bar.update(self._task, advance=files.num_rows,
                         status=f"{self.audio_s / 3600:.2f} h audio · {rate:.1f} files/s · {self.errors} errors")


def _errors(error: pa.ChunkedArray) -> int:
    """Rows with an error (a timeline file without speech is not one)."""
    return pc.sum(pc.and_(pc.invert(pc.is_null(error)), pc.not_equal(error, NO_SPEECH))).as_py() or 0


def summary(out: str | Path) -> list[dict]:
    """Per label over the whole dataset: rows (files or segments), their share, and their audio
    in hours (a file's duration, or a segment's length); then the timeline files without
    speech, and the files with an error."""
    table = read(out)
    errors = _errors(table["error"])
    silent = pc.sum(pc.equal(table["error"], NO_SPEECH)).as_py() or 0
    scored = table.filter(pc.is_null(table["error"]))
    seconds = (pc.subtract(scored["end"], scored["start"]) if "start" in scored.column_names
               else scored["duration_s"])
    by = pa.table({"label": scored["label"], "s": seconds}).group_by("label").aggregate([("s", "count"), ("s", "sum")])
    rows = [{"label": lab, "rows": n, "share": n / max(1, table.num_rows), "audio_h": s / 3600}
            for lab, n, s in zip(*(by[c].to_pylist() for c in ("label", "s_count", "s_sum")), strict=True)]
    rows.sort(key=lambda r: -r["rows"])
    if "start" in table.column_names:
        rows.append({"label": "(no speech)", "rows": silent, "share": silent / max(1, table.num_rows), "audio_h": None})
    return rows + [{"label": "(error)", "rows": errors, "share": errors / max(1, table.num_rows), "audio_h": None}]


def _claim(out: Path, job: BatchJob) -> None:
    """Record the job in ``out`` (new dataset) or check that ``out`` holds the same job (resume);
    remove temporary parts a killed run left behind."""
    record = {"mode": job.mode, "model_sha256": sha256(resolve_model(job.model)),
              "model": job.model or "bundled", "emovox": __version__}
    if job.mode == "timeline":
        record.update(vad=job.vad, threshold_db=job.threshold_db)
    if job.classes:
        record.update(classes=sorted({labels.canonical(c) for c in job.classes}))
    path = out / JOB_FILE
    if path.exists():
        old = json.loads(path.read_text())
        differs = [f"{k} {old.get(k)} (now {record.get(k)})"
                   for k in ("mode", "model_sha256", "vad", "threshold_db", "classes") if old.get(k) != record.get(k)]
        if differs:
            raise ConfigError(f"holds the rows of another job: {', '.join(differs)}", path=out,
                              fix="rerun with the options of the first run, or pass a new --out")
    elif any(p.name != LOCK_FILE for p in out.iterdir()):
        raise ConfigError("is not empty and holds no emovox batch job", path=out, fix="pass a new or empty --out")
    else:
        write_json(path, record)
    for tmp in out.glob(f".{PART_PREFIX}*.tmp"):
        tmp.unlink()


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out/_job.lock`` for the job, so two runs never write one dataset at once (the
    lock goes with the process, however it ends)."""
    if out.exists() and not out.is_dir():
        raise ConfigError("is a file, not a folder", path=out, fix="pass a folder for --out")
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_FILE, os.O_CREAT | os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError("another emovox batch job is writing here", path=out,
                              fix="wait for it to finish, or pass another --out") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock

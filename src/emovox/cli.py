"""The ``emovox`` command: thin subcommands over the Python API."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.markup import escape

from emovox.errors import EmovoxError
from emovox.progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Speech emotion recognition.")

Data = Annotated[list[str] | None, typer.Option(
    "--data", help="Corpus folder or CSV; repeat for several corpora, as DIR or READER=DIR "
                   "(default: the config's sources).")]
Corpus = Annotated[str, typer.Option(
    "--corpus", help="Reader of a single --data: ravdess, cremad, tess, savee, emodb, nemo, ased, folder or auto.")]
ModelName = Annotated[str | None, typer.Option(
    "--model", help="Model family: kernel (the default recipe), cnn_small, cnn, bilstm, crnn, mlp, ssl or "
                    "ssl_finetune (default: the config's, else kernel).")]
Out = Annotated[Path | None, typer.Option("--out", help="Run dir to write.")]
Resume = Annotated[Path | None, typer.Option("--resume", help="Continue an interrupted run dir.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML/JSON with features:, train:, data: sections.")]
Classes = Annotated[str | None, typer.Option("--classes", help="Comma-separated classes to keep.")]
Merge = Annotated[str | None, typer.Option("--merge", help="Class merges, e.g. calm=neutral,boredom=neutral.")]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Override the number of epochs.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Override the random seed.")]
Backbone = Annotated[str | None, typer.Option(
    "--backbone", help="wav2vec2/HuBERT/WavLM directory: a self-supervised encoder as the front end.")]
SslMode = Annotated[str, typer.Option("--ssl-mode", help="frozen (cached hidden states) or finetune (top layers).")]
SpeakerNorm = Annotated[bool | None, typer.Option("--speaker-norm/--no-speaker-norm",
                                                  help="Z-score features per speaker (default: from config, off).")]
CacheDir = Annotated[Path | None, typer.Option("--cache-dir", help="Feature cache (default ~/.cache/emovox).")]
Jobs = Annotated[int, typer.Option("--jobs", help="Worker processes for feature extraction.")]
Strict = Annotated[bool, typer.Option("--strict", help="Fail on an unreadable or silent file instead of skipping.")]
Augment = Annotated[str | None, typer.Option(
    "--augment", help="Waveform augmentation for training, e.g. speed:0.9,speed:1.1,noise:20.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
TrainDevice = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda or cuda:N (default: the config's train.device, auto = CUDA when available).")]
Precision = Annotated[str | None, typer.Option(
    "--precision", help="CUDA autocast: bf16, fp16 or fp32 (default auto: bf16 where the GPU has it; CPU: fp32).")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")]


def friendly(fn):
    """Turn emovox errors into one red line and exit code 2; SIGINT/SIGTERM into a resume hint."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # torchrun stops and restarts its workers itself; a worker blocked in a collective
        # could not run a Python handler, so there the signals keep their default action.
        under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
        signals = () if under_torchrun else (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, _stop) for sig in signals}
        try:
            return fn(*args, **kwargs)
        except EmovoxError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            run = kwargs.get("resume") or kwargs.get("out")
            hint = f"resume with `emovox {fn.__name__} --resume {run}`" if run else "rerun the command"
            console.print(f"[yellow]interrupted:[/yellow] {escape(str(exc or 'stopped'))}; {escape(hint)}")
            raise typer.Exit(130) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


def _stop(signum, frame):
    """SIGINT/SIGTERM: a running training loop finishes its step and checkpoints; anything else stops now."""
    train = sys.modules.get("emovox.train")
    if train is None or not train.request_stop():
        raise KeyboardInterrupt


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every epoch to the terminal.")] = False
         ) -> None:
    """Terminal logging: warnings only unless --verbose (run dirs always get the full train.log)."""
    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s", handlers=[handler])


def _required(out: Path | None) -> Path:
    if out is None:
        raise EmovoxError("missing --out", fix="pass --out RUN_DIR (or --resume RUN_DIR)")
    return out


def _settings(config: Path | None, args: dict):
    """Settings from ``--config`` and the override options among a command's arguments
    ``args`` (:class:`~emovox.settings.Overrides` names them, once)."""
    from emovox.settings import Overrides, Settings

    return Settings.build(config, **Overrides.pick(args))


def _data(items: list[str] | None):
    """``--data`` values: one folder (read by ``--corpus``), or several as ``[(reader, folder), ...]``
    (a folder without ``READER=`` has its layout recognised)."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return Path(items[0])
    pairs = [item.split("=", 1) if "=" in item else ("auto", item) for item in items]
    return [(reader, Path(folder)) for reader, folder in pairs]


@app.command()
@friendly
def train(out: Out = None, data: Data = None, corpus: Corpus = "auto", model: ModelName = None,
          config: ConfigFile = None,
          classes: Classes = None, merge: Merge = None, epochs: Epochs = None, seed: Seed = None,
          speaker_norm: SpeakerNorm = None, backbone: Backbone = None, ssl_mode: SslMode = "frozen",
          augment: Augment = None, cache_dir: CacheDir = None, jobs: Jobs = 1,
          strict: Strict = False,
          quiet: Quiet = False, resume: Resume = None,
          nproc: Annotated[int, typer.Option(help="Train with N processes (torch.distributed, this machine).")] = 1,
          device: TrainDevice = None, precision: Precision = None) -> None:
    """Train one model on all speakers of a corpus and write a run dir.

    Also runs under ``torchrun -m emovox train ...`` (one model, DistributedDataParallel).
    """
    from emovox import distributed, experiment

    if resume is None:
        s = _settings(config, locals())
        job = (experiment.train, _data(data), _required(out), s)
        kw = dict(corpus=corpus, cache_dir=cache_dir, jobs=jobs, strict=strict, progress=not quiet)
    else:
        job, out = (experiment.resume, resume), resume
        kw = dict(cache_dir=cache_dir, jobs=jobs, progress=not quiet, device=device, precision=precision)
    metrics = distributed.run(*job, nproc=nproc, **kw) or json.loads((out / "metrics.json").read_text())
    v = metrics["validation"]
    console.print(f"[green]trained[/green] {escape(metrics['name'])}: validation UA {v['ua']:.3f} WA {v['wa']:.3f} "
                  f"(held-out speakers) -> {escape(str(out))}")
    if distributed.launched_by_torchrun():
        distributed.exit_torchrun_worker(0)


@app.command()
@friendly
def evaluate(out: Out = None, data: Data = None, corpus: Corpus = "auto", model: ModelName = None,
             config: ConfigFile = None,
             folds: Annotated[str, typer.Option(
                 "--folds", help="k (grouped by speaker), 'loso', 'loco' (leave one corpus out) or "
                                 "'random-utterance'.")] = "5",
             baseline: Annotated[bool, typer.Option(help="Also run eGeMAPS+SVM on the same folds.")] = False,
             classes: Classes = None, merge: Merge = None, epochs: Epochs = None, seed: Seed = None,
             speaker_norm: SpeakerNorm = None, backbone: Backbone = None, ssl_mode: SslMode = "frozen",
             augment: Augment = None, cache_dir: CacheDir = None,
             jobs: Annotated[int, typer.Option("--jobs", help="Folds (and extraction) in parallel processes.")] = 1,
             threads: Annotated[int | None, typer.Option(help="Torch threads per fold (default cores/jobs).")] = None,
             strict: Strict = False, quiet: Quiet = False, resume: Resume = None,
             device: TrainDevice = None, precision: Precision = None,
             test_conditions: Annotated[str | None, typer.Option(
                 "--test-conditions", help="Also score each fold's test audio through these channels, e.g. "
                                           "phone,white:10,babble:10,phone+white:15,reverb:0.6,mp3:0.9 "
                                           "(reported beside clean).")] = None,
             adapt: Annotated[str | None, typer.Option(
                 "--adapt", help="Also train the speaker-normalised head on the same folds and report it adapted "
                                 "to each test speaker (speaker) and/or to the whole test set (corpus), e.g. "
                                 "speaker,corpus.")] = None) -> None:
    """Speaker-grouped cross-validation: metrics.json, report.md, confusion_matrix.png."""
    from emovox import experiment

    if resume is not None:
        m = experiment.resume(resume, cache_dir=cache_dir, jobs=jobs, progress=not quiet, device=device,
                              precision=precision)
        out = resume
    else:
        s = _settings(config, locals())
        m = experiment.evaluate(_data(data), _required(out), s, corpus=corpus, folds=folds,
                                with_baseline=baseline, cache_dir=cache_dir, jobs=jobs, threads=threads,
                                strict=strict, progress=not quiet,
                                test_conditions=(test_conditions or "").split(","),
                                adapt=(adapt or "").split(","))
    line = f"[green]{escape(m['name'])}[/green]: UA {m['ua']:.3f} WA {m['wa']:.3f} macro-F1 {m['macro_f1']:.3f}"
    if "baseline" in m:
        line += f" | eGeMAPS+SVM UA {m['baseline']['ua']:.3f}"
    console.print(line + f" -> {escape(str(out / 'report.md'))}")
    if "test_conditions" in m:
        from emovox.evaluate import condition_table

        console.print(escape(condition_table(m)), highlight=False, soft_wrap=True)  # a table: never wrapped


Format = Annotated[str, typer.Option("--format", help="table, json or csv.")]
ModelDir = Annotated[Path | None, typer.Option("--model", help="Run dir (default: the bundled model).")]
Backend = Annotated[str, typer.Option("--backend", help="torch or onnx.")]
AdaptFrom = Annotated[list[Path] | None, typer.Option(
    "--adapt-from", help="Unlabelled audio of the speaker or setting, a file or a folder (repeatable): the model "
                         "adapts to its statistics.")]
Classes = Annotated[str | None, typer.Option(
    "--classes", help="Comma-separated classes of the model to report (e.g. angry,happy,neutral,sad when the "
                      "audio holds no other): their scores renormalised, the label the likeliest of them.")]


def _predictor(model: Path | None, backend: str = "torch", adapt_from: list[Path] | None = None,
               device: str = "auto", *, adapting: bool = False, classes: str | None = None):
    """The model, reporting ``--classes`` only, adapted to the ``--adapt-from`` audio if any;
    ``adapting``: some ``--adapt*`` option asks for adaptation, which a model that cannot
    adapt refuses (exit code 2)."""
    from emovox.predict import Predictor

    predictor = Predictor.load(model, backend=backend, device=device).only((classes or "").split(","))
    if (adapting or adapt_from) and not predictor.can_adapt:
        raise EmovoxError("this model cannot adapt to a speaker (it was trained without speaker normalisation)",
                          fix="drop the --adapt options, or use a model trained with --speaker-norm")
    return predictor.adapt([str(f) for _, f in _audio_files(adapt_from)]) if adapt_from else predictor


def _audio_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(argument, file) for every audio file the arguments name, folders expanded (sorted)."""
    from emovox.audio import audio_files

    return [(p, f) for p in paths for f in audio_files(p)]


@app.command()
@friendly
def predict(paths: Annotated[list[Path], typer.Argument(help="Audio files, or folders (searched recursively).")],
            model: ModelDir = None, fmt: Format = "table", backend: Backend = "torch",
            adapt: Annotated[bool, typer.Option(
                "--adapt", help="Take all the inputs for one speaker or setting and adapt to them.")] = False,
            adapt_by: Annotated[str | None, typer.Option(
                "--adapt-by", help="folder: adapt to each parent folder's files apart (one folder per speaker "
                                   "or session).")] = None,
            adapt_from: AdaptFrom = None, classes: Classes = None, device: Device = "auto") -> None:
    """Print the emotion and class probabilities of each file (a folder: of every audio file in it).

    Each row says how its file was adapted: none, inputs (--adapt), folder (--adapt-by folder)
    or from (--adapt-from).
    """
    if adapt_by not in (None, "folder"):
        raise EmovoxError(f"unknown --adapt-by {adapt_by!r}", fix="use --adapt-by folder")
    if sum((adapt, adapt_by is not None, bool(adapt_from))) > 1:
        raise EmovoxError("--adapt, --adapt-by and --adapt-from exclude each other", fix="pass one of them")
    files = [f for _, f in _audio_files(paths)]
    predictor = _predictor(model, backend, adapt_from, device, adapting=adapt or adapt_by is not None,
                           classes=classes)
    mode = "inputs" if adapt else "folder" if adapt_by else "from" if adapt_from else "none"
    results = predictor.predict(files, adapt=[f.parent for f in files] if adapt_by else "inputs" if adapt else None)
    rows = [{"file": str(f), **r, "adapted": mode} for f, r in zip(files, results, strict=True)]
    _emit(rows, predictor.labels, fmt, keys=("file", "adapted") if mode != "none" else ("file",))


@app.command()
@friendly
def timeline(paths: Annotated[list[Path], typer.Argument(
                 help="Recordings of any length, or folders of them (searched recursively).")],
             model: ModelDir = None, fmt: Format = "table",
             plot: Annotated[Path | None, typer.Option(
                 "--plot", help="Write a PNG (for several recordings: a folder of them).")] = None,
             vad: Annotated[str, typer.Option(
                 "--vad", help="Speech detector: silero (learned; holds up in noise) or energy (a level gate).")
             ] = "silero",
             threshold_db: Annotated[float, typer.Option(help="Energy VAD level in dBFS.")] = -45.0,
             backend: Backend = "torch",
             no_adapt: Annotated[bool, typer.Option(
                 "--no-adapt", help="Score each segment as a single clip, without adapting to the recording.")] = False,
             adapt_from: AdaptFrom = None, classes: Classes = None, device: Device = "auto") -> None:
    """Emotion per speech segment of long recordings (streamed; memory stays flat).

    One recording prints start, end, voice (S1, S2, ...: the segments grouped by voice),
    emotion and whether it was adapted per segment; several (or a folder) add a file column.
    A model that can adapt does so to each voice of the recording unless --no-adapt.
    """
    from emovox.segment import VadConfig

    files = _audio_files(paths)
    several = len(files) > 1 or paths[0].is_dir()
    predictor = _predictor(model, backend, adapt_from, device, classes=classes)
    rows = []
    for arg, file in files:
        segments = predictor.timeline(file, vad=VadConfig(method=vad, threshold_db=threshold_db),
                                       adapt=not no_adapt)
        rows += [{"file": str(file), **r} for r in segments] if several else segments
        if plot is not None:
            from emovox.plots import plot_timeline

            png = plot / (file.relative_to(arg) if arg.is_dir() else Path(file.name)).with_suffix(".png")
            plot_timeline(segments, predictor.labels, png if several else plot, title=file.name)
    keys = ("start", "end", "speaker", "adapted")
    _emit(rows, predictor.labels, fmt, keys=("file", *keys) if several else keys)


@app.command()
@friendly
def batch(source: Annotated[Path, typer.Argument(help="A folder, or a CSV or Parquet file with a `path` column.")],
          out: Annotated[Path, typer.Option("--out", help="Parquet dataset folder (rerun to resume).")],
          mode: Annotated[str, typer.Option(help="predict (a row per file) or timeline (per segment).")] = "predict",
          model: ModelDir = None,
          engine: Annotated[str, typer.Option(help="local (this process) or ray (pip install 'emovox\\[ray]').")]
          = "local",
          address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: start one here).")] = None,
          workers: Annotated[int | None, typer.Option(help="Threads (local) or Ray actors (default: CPUs).")] = None,
          gpus_per_worker: Annotated[float, typer.Option(help="GPUs per Ray actor.")] = 0.0,
          cpus_per_worker: Annotated[float, typer.Option(help="CPUs per Ray actor.")] = 0.5,
          batch_size: Annotated[int, typer.Option(help="Files per model call.")] = 16,
          part_files: Annotated[int, typer.Option(help="Files per Parquet part.")] = 500,
          vad: Annotated[str, typer.Option(help="timeline's speech detector: silero or energy.")] = "silero",
          threshold_db: Annotated[float, typer.Option(help="The energy detector's level in dBFS.")] = -45.0,
          classes: Classes = None, device: Device = "auto", quiet: Quiet = False) -> None:
    """Score an archive into a Parquet dataset, here or on Ray; a rerun scores only files without rows."""
    from rich.table import Table

    from emovox import batch as archive

    r = archive.run(source, out, mode=mode, model=model, engine=engine, address=address, workers=workers,
                    gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, batch_files=batch_size,
                    part_files=part_files, vad=vad, threshold_db=threshold_db,
                    device=device, classes=(classes or "").split(","), progress=not quiet)
    table = Table("label", "files" if mode == "predict" else "segments", "share", "audio (h)")
    for row in archive.summary(out):
        hours = "" if row["audio_h"] is None else f"{row['audio_h']:.3f}"
        table.add_row(escape(str(row["label"])), str(row["rows"]), f"{row['share']:.1%}", hours)
    console.print(table)
    console.print(f"[green]scored[/green] {r.scored} files ({r.audio_s / 3600:.2f} h audio, {r.errors} errors) "
                  f"in {r.seconds:.1f} s; {r.skipped} already done -> {escape(str(out))}")


@app.command()
@friendly
def export(out: Annotated[Path, typer.Option("--out", help="ONNX file to write.")], model: ModelDir = None) -> None:
    """Export the network (with its input normalisation) to ONNX."""
    from emovox.export import export as export_onnx

    console.print(f"[green]wrote[/green] {export_onnx(model, out)}")


@app.command()
@friendly
def serve(model: ModelDir = None, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: Annotated[float, typer.Option(help="413 above this.")] = 25.0,
          max_duration_s: Annotated[float, typer.Option(help="413 above this many seconds.")] = 600.0,
          backend: Annotated[str, typer.Option(
              help="auto (onnx on the CPU when onnxruntime is installed, else torch), torch or onnx.")] = "auto",
          device: Device = "auto",
          max_batch: Annotated[int | None, typer.Option(
              help="Requests per forward pass (1: no batching; default 4 for encoder features, else 16).")] = None,
          max_wait_ms: Annotated[float | None, typer.Option(
              help="Longest wait (ms) for a batch to fill (default 10 for encoder features, else 2).")] = None,
          max_speakers: Annotated[int, typer.Option(
              help="Speaker ids whose running statistics are kept (the least recently heard is forgotten).")] = 1000,
          classes: Classes = None) -> None:
    """REST service with a web page (FastAPI + uvicorn); docs at /docs."""
    import uvicorn

    from emovox.predict import Predictor
    from emovox.serve import ServiceLimits, create_app, limit_threads, serving_backend

    limits = ServiceLimits(max_upload_mb=max_upload_mb, max_duration_s=max_duration_s, max_batch=max_batch,
                           max_wait_ms=max_wait_ms, max_speakers=max_speakers)
    limit_threads()  # before loading: an onnx session takes its thread count then
    spec = Predictor.load(model, device="cpu").spec  # what the model reads decides the backend
    predictor = Predictor.load(model, backend=serving_backend(backend, device, spec), device=device)
    app_ = create_app(predictor.only((classes or "").split(",")), limits)
    uvicorn.run(app_, host=host, port=port, log_level="info")


@app.command()
@friendly
def listen(model: ModelDir = None,
           file: Annotated[Path | None, typer.Option("--file", help="Play a file as if live (no microphone).")] = None,
           window_s: Annotated[float, typer.Option(help="Window length (s).")] = 2.0,
           hop_s: Annotated[float, typer.Option(help="Seconds between results.")] = 0.5,
           device: Annotated[str | None, typer.Option(help="Input device (sounddevice name or index).")] = None,
           realtime: Annotated[bool, typer.Option(help="Pace --file like a live stream.")] = True,
           fmt: Annotated[str, typer.Option("--format", help="live or jsonl.")] = "live",
           adapt_from: AdaptFrom = None, classes: Classes = None) -> None:
    """Classify microphone audio (or a file played live) in sliding windows."""
    from emovox import live

    predictor = _predictor(model, adapt_from=adapt_from, classes=classes)
    sr = predictor.features.sample_rate
    if file is not None:
        blocks = live.file_source(file, sr=sr, realtime=realtime)
    else:
        dev = int(device) if device and device.isdigit() else device
        blocks = live.microphone_source(sr=sr, device=dev)
    results = live.listen(predictor, blocks, window_s=window_s, hop_s=hop_s)
    if fmt == "jsonl":
        for r in results:
            sys.stdout.write(json.dumps(r.to_dict()) + "\n")
            sys.stdout.flush()
        return
    _live_view(results, predictor.labels)


def _live_view(results, labels: list[str]) -> None:
    from rich.live import Live
    from rich.table import Table

    latencies = []
    with Live(console=console, refresh_per_second=8) as view:
        for r in results:
            latencies.append(r.latency_s)
            table = Table(title=f"{r.start:.1f}–{r.end:.1f} s   [bold]{r.label}[/bold]   "
                                f"latency {1000 * r.latency_s:.0f} ms", show_header=False)
            for lab in labels:
                p = r.scores.get(lab, 0.0)
                table.add_row(lab, "█" * int(30 * p), f"{p:.2f}")
            view.update(table)
    if latencies:
        console.print(f"median latency {1000 * sorted(latencies)[len(latencies) // 2]:.0f} ms "
                      f"over {len(latencies)} windows")


def _emit(rows: list[dict], labels: list[str], fmt: str, *, keys: tuple[str, ...] = ("file",)) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow([*keys, "label", *labels])
        for r in rows:
            writer.writerow([*(r[k] for k in keys), r["label"], *(f"{r['scores'][lab]:.4f}" for lab in labels)])
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table

        table = Table(*keys, "emotion", *labels)
        for r in rows:
            table.add_row(*("" if r[k] is None else escape(str(r[k])) for k in keys), f"[bold]{r['label']}[/bold]",
                          *(f"{r['scores'][lab]:.2f}" for lab in labels))
        Console().print(table)
    else:
        raise EmovoxError(f"unknown format {fmt!r}", fix="use table, json or csv")


if __name__ == "__main__":
    app()

"""The ``emovox`` command: thin subcommands over the Python API."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from emovox.errors import EmovoxError
from emovox.progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Speech emotion recognition.")

Data = Annotated[Path, typer.Option("--data", help="Corpus folder (or CSV with path,label[,speaker]).")]
Corpus = Annotated[str, typer.Option("--corpus", help="ravdess, cremad, tess, savee, emodb, folder or auto.")]
ModelName = Annotated[str, typer.Option("--model", help="cnn_small, cnn, bilstm or crnn.")]
Out = Annotated[Path, typer.Option("--out", help="Run dir to write.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML/JSON with features:, train:, data: sections.")]
Classes = Annotated[str | None, typer.Option("--classes", help="Comma-separated classes to keep.")]
Merge = Annotated[str | None, typer.Option("--merge", help="Class merges, e.g. calm=neutral,boredom=neutral.")]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Override the number of epochs.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Override the random seed.")]
CacheDir = Annotated[Path | None, typer.Option("--cache-dir", help="Feature cache (default ~/.cache/emovox).")]
Jobs = Annotated[int, typer.Option("--jobs", help="Worker processes for feature extraction.")]
Strict = Annotated[bool, typer.Option("--strict", help="Fail on an unreadable or silent file instead of skipping.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]


def friendly(fn):
    """Turn emovox errors into one red line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EmovoxError as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted:[/yellow] rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])


def _settings(config: Path | None, model: str | None, epochs: int | None, seed: int | None,
              classes: str | None, merge: str | None):
    from emovox.experiment import Settings

    return Settings.build(config, model=model, epochs=epochs, seed=seed, classes=classes, merge=merge)


@app.command()
@friendly
def train(data: Data, out: Out, corpus: Corpus = "auto", model: ModelName = None, config: ConfigFile = None,
          classes: Classes = None, merge: Merge = None, epochs: Epochs = None, seed: Seed = None,
          cache_dir: CacheDir = None, jobs: Jobs = 1, strict: Strict = False, quiet: Quiet = False) -> None:
    """Train one model on all speakers of a corpus and write a run dir."""
    from emovox import experiment

    s = _settings(config, model, epochs, seed, classes, merge)
    metrics = experiment.train(data, out, s, corpus=corpus, cache_dir=cache_dir, jobs=jobs, strict=strict,
                               progress=not quiet)
    v = metrics["validation"]
    console.print(f"[green]trained[/green] {metrics['name']}: validation UA {v['ua']:.3f} WA {v['wa']:.3f} "
                  f"(held-out speakers) -> {out}")


@app.command()
@friendly
def evaluate(data: Data, out: Out, corpus: Corpus = "auto", model: ModelName = None, config: ConfigFile = None,
             folds: Annotated[str, typer.Option("--folds", help="k, 'loso' or 'random-utterance'.")] = "5",
             baseline: Annotated[bool, typer.Option(help="Also run eGeMAPS+SVM on the same folds.")] = False,
             classes: Classes = None, merge: Merge = None, epochs: Epochs = None, seed: Seed = None,
             cache_dir: CacheDir = None, jobs: Jobs = 1, strict: Strict = False, quiet: Quiet = False) -> None:
    """Speaker-grouped cross-validation: metrics.json, report.md, confusion_matrix.png."""
    from emovox import experiment

    s = _settings(config, model, epochs, seed, classes, merge)
    m = experiment.evaluate(data, out, s, corpus=corpus, folds=folds, with_baseline=baseline,
                            cache_dir=cache_dir, jobs=jobs, strict=strict, progress=not quiet)
    line = f"[green]{m['name']}[/green]: UA {m['ua']:.3f} WA {m['wa']:.3f} macro-F1 {m['macro_f1']:.3f}"
    if "baseline" in m:
        line += f" | eGeMAPS+SVM UA {m['baseline']['ua']:.3f}"
    console.print(line + f" -> {out / 'report.md'}")


Format = Annotated[str, typer.Option("--format", help="table, json or csv.")]


@app.command()
@friendly
def predict(files: Annotated[list[Path], typer.Argument(help="Audio files.")],
            model: Annotated[Path | None, typer.Option("--model", help="Run dir (default: bundled model).")] = None,
            fmt: Format = "table") -> None:
    """Print the emotion and class probabilities of each file."""
    from emovox.predict import Predictor

    predictor = Predictor.load(model)
    rows = [{"file": str(f), **r} for f, r in zip(files, predictor.predict([str(f) for f in files]), strict=True)]
    _emit(rows, predictor.labels, fmt)


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
            table.add_row(*(str(r[k]) for k in keys), f"[bold]{r['label']}[/bold]",
                          *(f"{r['scores'][lab]:.2f}" for lab in labels))
        Console().print(table)
    else:
        raise EmovoxError(f"unknown format {fmt!r}", fix="use table, json or csv")


if __name__ == "__main__":
    app()

"""The ``emovox`` command end to end on a synthetic RAVDESS-shaped corpus."""

import dataclasses
import json
import os
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from emovox.cli import app

from .conftest import PITCH, make_nemo, tone, write

FAST = ["--epochs", "3", "--quiet"]


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("features:\n  n_mels: 32\n  clip_s: 1.0\ntrain:\n  batch_size: 8\n  lr: 0.003\n")
    return path


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def test_train_then_predict(ravdess_dir, tmp_path, config_file):
    out = tmp_path / "run"
    r = run("train", "--data", ravdess_dir, "--corpus", "ravdess", "--model", "cnn", "--out", out,
            "--config", config_file, "--cache-dir", tmp_path / "cache", "--augment", "speed:1.1,noise:20", *FAST)
    assert r.exit_code == 0, r.output
    assert {"model.pt", "config.json", "metrics.json", "train.log"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoint.pt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["skipped"]) == 2  # the corrupt and the silent file
    assert "speed:1.1, noise:20" in metrics["name"]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["augment"] == ["speed:1.1", "noise:20"]
    assert config["corpus"]["cache_dir"] == str(tmp_path / "cache")  # --resume finds the same cache
    files = sorted(ravdess_dir.glob("Actor_01/*-01-01.wav"))[:2]
    r = run("predict", "--model", out, "--format", "json", *files)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["file"] for row in rows] == [str(f) for f in files]
    assert all(abs(sum(row["scores"].values()) - 1) < 1e-4 for row in rows)
    assert set(rows[0]["scores"]) == {"neutral", "happy", "sad", "angry"}
    r = run("predict", "--model", out, "--format", "csv", files[0])
    assert r.stdout.splitlines()[0] == "file,label,neutral,happy,sad,angry"
    r = run("predict", "--model", out, files[0])
    assert r.exit_code == 0 and "emotion" in r.stdout


def test_evaluate_writes_metrics_report_and_plot(ravdess_dir, tmp_path, config_file):
    out = tmp_path / "cv"
    r = run("evaluate", "--data", ravdess_dir, "--model", "cnn_small", "--folds", "2", "--out", out,
            "--config", config_file, "--cache-dir", tmp_path / "cache", "--baseline", *FAST)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert {"ua", "wa", "macro_f1", "folds", "baseline"} <= set(m)
    assert len(m["folds"]) == 2 and m["speaker_independent"]
    speakers = [s for f in m["folds"] for s in f["test_speakers"]]
    assert sorted(speakers) == ["ravdess:01", "ravdess:02", "ravdess:03", "ravdess:04"]
    assert len(m["baseline"]["folds"]) == 2
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "eGeMAPSv02 + SVM" in (out / "report.md").read_text()
    # a rerun reuses the finished folds and gives the same numbers
    r = run("evaluate", "--data", ravdess_dir, "--model", "cnn_small", "--folds", "2", "--out", out,
            "--config", config_file, "--cache-dir", tmp_path / "cache", *FAST)
    assert json.loads((out / "metrics.json").read_text())["ua"] == m["ua"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "{empty}", "--out", "{tmp}/r"], "no known corpus layout"),
        (["train", "--data", "{ravdess}", "--out", "{tmp}/r", "--model", "transformer9"], "unknown model"),
        (["train", "--data", "{ravdess}", "--out", "{tmp}/r", "--strict", "--cache-dir", "{tmp}/c"],
         r"\.wav: (cannot decode|audio is silent)"),
        (["evaluate", "--data", "{ravdess}", "--out", "{tmp}/r", "--folds", "9", "--cache-dir", "{tmp}/c"], "folds"),
        (["predict", "--model", "{tmp}", "{ravdess}"], "no model.pt"),
        (["predict", "{tmp}/missing.wav"], "missing.wav: no such file"),
        (["predict", "{empty}"], "empty: folder has no audio files"),
        (["timeline", "{tmp}/missing.wav"], "missing.wav: no such file or folder"),
        (["train", "--data", "{ravdess}", "--out", "{tmp}/r", "--classes", "happy,grumpy"], "unknown emotion"),
        (["train", "--data", "{ravdess}", "--out", "{tmp}/r", "--augment", "speed:9"], "bad augmentation"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(ravdess_dir, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    subs = {"{empty}": str(tmp_path / "empty"), "{ravdess}": str(ravdess_dir), "{tmp}": str(tmp_path)}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    r = run(*argv, "--quiet") if argv[0] not in ("predict", "timeline") else run(*argv)
    assert r.exit_code == 2, r.output
    assert re.search(message, r.output) and "error:" in r.output
    assert "Traceback" not in r.output


def test_predict_and_timeline_take_folders(tiny_run, tmp_path):
    silence = np.zeros(8000, np.float32)
    for name, emo in [("b.wav", "sad"), ("sub/a.flac", "happy"), ("A.wav", "angry")]:
        write(tmp_path / "rec" / name, np.concatenate([silence, tone(PITCH[emo], 1.5, 16000), silence]), 16000)
    (tmp_path / "rec" / "notes.txt").write_text("not audio")
    single = write(tmp_path / "one.wav", tone(PITCH["neutral"], 1.5, 16000), 16000)
    rec = tmp_path / "rec"
    expected = [str(rec / "A.wav"), str(rec / "b.wav"), str(rec / "sub" / "a.flac"), str(single)]
    r = run("predict", "--model", tiny_run, "--format", "json", rec, single)
    assert r.exit_code == 0, r.output
    assert [row["file"] for row in json.loads(r.stdout)] == expected
    r = run("timeline", "--model", tiny_run, "--format", "csv", "--vad", "energy", rec, "--plot", tmp_path / "plots")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "file,start,end,speaker,adapted,label,neutral,happy,sad,angry"
    assert [line.split(",")[0] for line in lines[1:]] == expected[:3]  # one speech segment per recording
    pngs = sorted(p.relative_to(tmp_path / "plots").as_posix() for p in (tmp_path / "plots").rglob("*.png"))
    assert pngs == ["A.png", "b.png", "sub/a.png"]


def test_classes_option_reports_only_those_classes(tiny_run, tmp_path):
    clip = write(tmp_path / "one.wav", tone(PITCH["happy"], 1.5, 16000), 16000)
    r = run("predict", "--model", tiny_run, "--format", "json", "--classes", "happy,neutral", clip)
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert list(row["scores"]) == ["neutral", "happy"] and abs(sum(row["scores"].values()) - 1) < 1e-4
    r = run("timeline", "--model", tiny_run, "--format", "csv", "--vad", "energy", "--classes", "sad", clip)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "start,end,speaker,adapted,label,sad"
    r = run("predict", "--model", tiny_run, "--classes", "happy,fearful", clip)
    assert r.exit_code == 2 and "no class fearful" in r.output


def test_a_path_that_is_neither_file_nor_folder_says_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for command in ("predict", "timeline"):
        r = run(command, tmp_path / "pipe")
        assert r.exit_code == 2, r.output
        assert "pipe: is a named pipe, neither a file nor a folder" in r.output and "Traceback" not in r.output


def test_leave_one_corpus_out_over_two_corpora(ravdess_dir, tmp_path):
    """Two corpora from repeated --data (one named, one recognised), the default recipe,
    --folds loco: one fold per held-out corpus, each with its confusion matrix."""
    nemo = make_nemo(tmp_path / "nemo")
    out = tmp_path / "loco"
    r = run("evaluate", "--data", f"ravdess={ravdess_dir}", "--data", nemo, "--folds", "loco", "--out", out,
            "--cache-dir", tmp_path / "cache", *FAST)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert [f["test_corpus"] for f in m["folds"]] == ["nemo", "ravdess"]
    assert all(np.array(f["confusion_matrix"]).sum() == f["n"] for f in m["folds"])
    assert m["name"].startswith("kernel")
    assert "held-out corpus" in (out / "report.md").read_text()
    r = run("evaluate", "--data", ravdess_dir, "--folds", "loco", "--out", tmp_path / "one",
            "--cache-dir", tmp_path / "cache", *FAST)
    assert r.exit_code == 2 and "at least two corpora" in r.output


def test_leave_one_corpus_out_adapted_beside_one_clip(ravdess_dir, tmp_path):
    """--adapt speaker,corpus: the speaker-normalised head on the same folds, its rows beside
    the single-clip one; a bad mode is refused before any work."""
    nemo = make_nemo(tmp_path / "nemo")
    out = tmp_path / "loco"
    r = run("evaluate", "--data", f"ravdess={ravdess_dir}", "--data", nemo, "--folds", "loco", "--out", out,
            "--cache-dir", tmp_path / "cache", "--adapt", "speaker,corpus", *FAST)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    rows = m["test_conditions"]
    assert list(rows) == ["clean", "adapted: speaker", "adapted: corpus"]
    assert rows["clean"]["ua"] == m["ua"]
    adapted = json.loads((out / "adapted" / "metrics.json").read_text())
    assert rows["adapted: speaker"]["ua"] == adapted["ua"] and "speaker norm" in adapted["name"]
    assert [f["test_corpus"] for f in rows["adapted: corpus"]["folds"]] == ["nemo", "ravdess"]
    assert "adapted: corpus" in (out / "report.md").read_text() and "adapted: speaker" in r.output
    r = run("evaluate", "--data", f"ravdess={ravdess_dir}", "--data", nemo, "--folds", "loco", "--out",
            tmp_path / "bad", "--adapt", "session", *FAST)
    assert r.exit_code == 2 and "cannot adapt" in r.output


def test_train_and_evaluate_take_every_settings_override():
    import inspect

    from emovox import cli
    from emovox.settings import Overrides

    names = {f.name for f in dataclasses.fields(Overrides)}
    for command in (cli.train, cli.evaluate):
        assert names <= set(inspect.signature(command).parameters), command.__name__


def test_override_options_reach_the_settings(tmp_path, monkeypatch):
    from emovox import experiment

    seen = {}

    def fake(name):
        def entry(data, out, settings, **kw):
            seen[name] = settings
            return {"name": name, "validation": {"ua": 1.0, "wa": 1.0}, "ua": 1.0, "wa": 1.0, "macro_f1": 1.0}
        return entry

    monkeypatch.setattr(experiment, "train", fake("train"))
    monkeypatch.setattr(experiment, "evaluate", fake("evaluate"))
    options = ["--model", "mlp", "--epochs", "2", "--seed", "3", "--speaker-norm", "--classes", "angry,sad",
               "--merge", "calm=neutral", "--augment", "speed:1.1", "--device", "cpu", "--precision", "fp32"]
    for command in ("train", "evaluate"):
        r = run(command, "--data", tmp_path, "--out", tmp_path / command, *options)
        assert r.exit_code == 0, r.output
        s = seen[command]
        assert s.speaker_norm and s.classes == ("angry", "sad") and s.merge == {"calm": "neutral"}
        assert (s.train.model, s.train.epochs, s.train.seed) == ("mlp", 2, 3)
        assert (s.train.augment, s.train.device, s.train.precision) == (("speed:1.1",), "cpu", "fp32")
        assert not run(command, "--data", tmp_path, "--out", tmp_path / command, "--no-speaker-norm").exit_code
        assert not seen[command].speaker_norm
        r = run(command, "--data", tmp_path, "--out", tmp_path / command, "--ssl-mode", "thawed")
        assert r.exit_code == 2 and "unknown ssl mode" in r.output


def _speaker_folders(root):
    """Two 'speakers' (folders) of three clips each, one voice an octave above the other."""
    files = []
    for k, (folder, shift) in enumerate((("low", 0.8), ("high", 1.6))):
        for i, emo in enumerate(("neutral", "sad", "angry")):
            files.append(write(root / folder / f"{emo}.wav", tone(PITCH[emo] * shift, 1.2, 16000, seed=10 * k + i),
                               16000))
    return files


def _api(run_dir, files, stats_of=None):
    """Results through the Python API: adapted to the statistics of ``stats_of`` (files), or not."""
    from emovox.audio import load
    from emovox.predict import Predictor

    p = Predictor.load(run_dir)
    stats = None if stats_of is None else p.stats_of([str(f) for f in stats_of])
    return p.predict_signals([load(f, sr=p.features.sample_rate) for f in files], stats=stats)


def _close(rows, expected):
    return all(r["label"] == e["label"] and np.allclose(list(r["scores"].values()), list(e["scores"].values()),
                                                        atol=1e-5) for r, e in zip(rows, expected, strict=True))


def test_predict_adapts_to_its_inputs_to_each_folder_or_to_separate_audio(normed_run, tmp_path):
    files = sorted(_speaker_folders(tmp_path / "rec"))  # high/..., then low/...
    low, high = [f for f in files if f.parent.name == "low"], [f for f in files if f.parent.name == "high"]

    def rows(*args):
        r = run("predict", "--model", normed_run, "--format", "json", *args)
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    plain = rows(tmp_path / "rec")
    assert [r["file"] for r in plain] == [str(f) for f in files] and {r["adapted"] for r in plain} == {"none"}
    assert _close(plain, _api(normed_run, files))
    pooled = rows(tmp_path / "rec", "--adapt")
    assert {r["adapted"] for r in pooled} == {"inputs"} and _close(pooled, _api(normed_run, files, files))
    by_folder = rows(tmp_path / "rec", "--adapt-by", "folder")
    assert {r["adapted"] for r in by_folder} == {"folder"}
    assert _close(by_folder[:3], _api(normed_run, high, high)) and _close(by_folder[3:], _api(normed_run, low, low))
    assert not _close(by_folder, pooled) and not _close(pooled, plain)  # the statistics differ, and matter
    learnt = rows(*high, "--adapt-from", tmp_path / "rec" / "low")  # a folder; files are taken too
    assert {r["adapted"] for r in learnt} == {"from"} and _close(learnt, _api(normed_run, high, low))
    assert _close(rows(*high, "--adapt-from", low[0], "--adapt-from", low[1]), _api(normed_run, high, low[:2]))
    r = run("predict", "--model", normed_run, "--format", "csv", "--adapt", *high)
    assert r.stdout.splitlines()[0] == "file,adapted,label,neutral,happy,sad,angry"
    assert r.stdout.splitlines()[1].startswith(f"{high[0]},inputs,")


@pytest.mark.parametrize(("args", "message"), [
    (["--adapt"], "this model cannot adapt"),
    (["--adapt-by", "folder"], "this model cannot adapt"),
    (["--adapt-from", "{clip}"], "this model cannot adapt"),
])
def test_a_model_that_cannot_adapt_refuses_the_adapt_options(tiny_run, tmp_path, args, message):
    clip = write(tmp_path / "a.wav", tone(PITCH["sad"], 1.2, 16000), 16000)
    for command in ("predict", "timeline") if args[0] == "--adapt-from" else ("predict",):
        r = run(command, "--model", tiny_run, clip, *(a.replace("{clip}", str(clip)) for a in args))
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) <= 2  # one line (wrapped at most once)


@pytest.mark.parametrize(("args", "message"), [
    (["--adapt", "--adapt-by", "folder"], "exclude each other"),
    (["--adapt", "--adapt-from", "{clip}"], "exclude each other"),
    (["--adapt-by", "speaker"], "unknown --adapt-by 'speaker'"),
    (["--adapt-from", "{tmp}/nothing"], "nothing: no such file"),
])
def test_bad_adapt_options_give_one_line_and_exit_2(normed_run, tmp_path, args, message):
    clip = write(tmp_path / "a.wav", tone(PITCH["sad"], 1.2, 16000), 16000)
    argv = [a.replace("{clip}", str(clip)).replace("{tmp}", str(tmp_path)) for a in args]
    r = run("predict", "--model", normed_run, clip, *argv)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_train_and_evaluate_help_list_every_model():
    from emovox.models import MODELS

    for command in ("train", "evaluate"):
        text = " ".join(run(command, "--help").output.split())
        listed = re.search(r"--model\s.*?\(default", text, re.S).group(0)
        assert all(re.search(rf"\b{name}\b", listed) for name in MODELS), (command, listed)


def test_timeline_says_each_segments_voice_and_whether_it_was_adapted(voiced_run, tmp_path):
    import soundfile as sf

    from emovox.predict import Predictor

    from .test_segment import HELLO

    sentence, sr = sf.read(HELLO, dtype="float32")
    rec = write(tmp_path / "rec.wav", np.concatenate([np.zeros(sr, np.float32), sentence] * 2), sr)
    predictor = Predictor.load(voiced_run)
    r = run("timeline", "--model", voiced_run, "--format", "json", rec, "--plot", tmp_path / "rec.png")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows == predictor.timeline(rec) and len(rows) >= 2
    assert all(re.fullmatch(r"S\d+", row["speaker"]) for row in rows) and any(row["adapted"] for row in rows)
    assert (tmp_path / "rec.png").read_bytes()[:4] == b"\x89PNG"
    r = run("timeline", "--model", voiced_run, "--format", "csv", "--no-adapt", rec)
    lines = r.stdout.splitlines()
    assert lines[0] == "start,end,speaker,adapted,label,neutral,happy,sad,angry"
    plain = predictor.timeline(rec, adapt=False)
    assert [line.split(",")[2:4] for line in lines[1:]] == [[row["speaker"], "False"] for row in plain]

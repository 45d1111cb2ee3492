"""Archive jobs: rows, errors, manifests, resume exactly once, and the Ray engine with a worker killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from emovox import batch
from emovox.cli import app
from emovox.errors import AudioError, ConfigError
from emovox.predict import Predictor
from emovox.segment import VadConfig

from .conftest import PITCH, tone, write

SR = 16000


def make_archive(root: Path, n: int = 12, seconds: float = 0.6) -> Path:
    """``n`` tone clips (pitches of the four synthetic emotions) in two sub-folders, and three
    files that cannot be scored: not audio, empty, silent."""
    pitches = list(PITCH.values())
    for i in range(n):
        write(root / f"day{i % 2}" / f"clip{i:03d}.wav", tone(pitches[i % 4], seconds, SR, seed=i), SR)
    (root / "day0" / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    (root / "day1" / "empty.flac").write_bytes(b"")
    write(root / "day1" / "silent.wav", np.zeros(SR, np.float32), SR)
    return root


def scores(table: pa.Table) -> np.ndarray:
    return np.array([table[c].to_numpy(zero_copy_only=False) for c in table.column_names if c.startswith("score_")],
                    dtype=float).T


def test_local_engine_writes_a_row_per_file_with_errors_for_unreadable_ones(tiny_run, tmp_path):
    src = make_archive(tmp_path / "archive")
    result = batch.run(src, tmp_path / "out", model=tiny_run, batch_files=4, part_files=4, workers=2, progress=False)
    assert (result.files, result.scored, result.skipped, result.errors) == (15, 15, 0, 3)
    assert result.parts == 4 and len(batch.parts(tmp_path / "out")) == 4  # whole groups of 4
    table = batch.read(tmp_path / "out")
    predictor = Predictor.load(tiny_run)
    assert table.column_names == ["path", "duration_s", "label", *(f"score_{lab}" for lab in predictor.labels),
                                  "error"]
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [str(p) for p in sorted(src.rglob("*.*"))]
    bad = {Path(r["path"]).name: r for r in rows if r["error"] is not None}
    assert set(bad) == {"broken.wav", "empty.flac", "silent.wav"}
    assert "silent" in bad["silent.wav"]["error"] and bad["silent.wav"]["duration_s"] == 1.0
    assert all(r["label"] is None and r["score_angry"] is None for r in bad.values())
    good = table.filter(pa.compute.is_null(table["error"]))
    expected = predictor.predict([p for p in good["path"].to_pylist()])
    assert good["label"].to_pylist() == [e["label"] for e in expected]
    assert good["duration_s"].to_pylist() == [e["duration_s"] for e in expected] == [0.6] * 12
    # scored 4 files per call here, one call for all there: equal to the 6th decimal (rounding of the last bit)
    want = np.array([[e["scores"][lab] for lab in predictor.labels] for e in expected])
    assert np.abs(np.round(scores(good) * 1e6) - np.round(want * 1e6)).max() <= 1
    np.testing.assert_allclose(scores(good).sum(axis=1), 1.0, atol=1e-5)
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "out")) == 15  # the folder is one table to readers (no temp files)


def test_a_file_the_model_refuses_gets_its_error_and_the_rest_of_its_group_their_scores(tiny_run, tmp_path,
                                                                                       monkeypatch):
    src = make_archive(tmp_path / "archive", n=5)
    write(src / "day0" / "clip002.wav", tone(PITCH["sad"], 0.3, SR), SR)  # the one the model refuses below
    predict_signals = Predictor.predict_signals

    def refuses_short_ones(self, signals, **kw):
        if any(len(y) < 0.5 * SR for y in signals):
            raise AudioError("too short for this model")
        return predict_signals(self, signals, **kw)

    monkeypatch.setattr(Predictor, "predict_signals", refuses_short_ones)
    result = batch.run(src, tmp_path / "out", model=tiny_run, batch_files=8, progress=False)
    rows = {Path(r["path"]).name: r for r in batch.read(tmp_path / "out").to_pylist()}
    assert result.errors == 4 and rows["clip002.wav"]["error"] == "too short for this model"
    assert rows["clip002.wav"]["duration_s"] == 0.3 and rows["clip002.wav"]["label"] is None
    assert all(rows[f"clip{i:03d}.wav"]["label"] is not None for i in (0, 1, 3, 4))
    alone = batch.run(src, tmp_path / "alone", model=tiny_run, batch_files=1, progress=False)  # a group of one
    assert alone.errors == 4 and batch.read(tmp_path / "alone")["error"].equals(batch.read(tmp_path / "out")["error"])


def test_timeline_mode_writes_a_row_per_segment(tiny_run, tmp_path):
    rec = write(tmp_path / "a" / "talk.wav", np.concatenate([tone(PITCH["sad"], 1.5, SR), np.zeros(SR, np.float32),
                                                            tone(PITCH["happy"], 1.2, SR, seed=2)]), SR)
    write(tmp_path / "a" / "quiet.wav", 0.001 * tone(200, 1.0, SR), SR)
    batch.run(tmp_path / "a", tmp_path / "out", mode="timeline", vad="energy", model=tiny_run, progress=False)
    table = batch.read(tmp_path / "out")
    assert table.column_names[:5] == ["path", "duration_s", "start", "end", "label"]
    segments = Predictor.load(tiny_run).timeline(rec, vad=VadConfig(method="energy"))
    talk = table.filter(pa.compute.equal(table["path"], str(rec))).to_pylist()
    assert len(talk) == len(segments) == 2
    for row, seg in zip(talk, segments, strict=True):
        assert (row["start"], row["end"], row["label"], row["error"]) == (seg["start"], seg["end"], seg["label"], None)
        assert row["duration_s"] == 3.7 and [row[f"score_{k}"] for k in seg["scores"]] == list(seg["scores"].values())
    quiet = table.filter(pa.compute.equal(table["path"], str(tmp_path / "a" / "quiet.wav"))).to_pylist()
    assert [(r["start"], r["label"], r["error"]) for r in quiet] == [(None, None, batch.NO_SPEECH)]
    summary = {r["label"]: r["rows"] for r in batch.summary(tmp_path / "out")}
    assert summary["(no speech)"] == 1 and summary["(error)"] == 0 and sum(summary.values()) == 3


def test_a_rerun_after_a_kill_scores_each_file_exactly_once_and_writes_the_same_dataset(tiny_run, tmp_path,
                                                                                        monkeypatch):
    src = make_archive(tmp_path / "archive", n=20)
    whole = batch.run(src, tmp_path / "whole", model=tiny_run, batch_files=3, progress=False)
    calls = {"n": 0}
    score = batch.Scorer.__call__

    def dies_on_the_fifth_call(self, files):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as a kill would, between parts
        return score(self, files)

    monkeypatch.setattr(batch.Scorer, "__call__", dies_on_the_fifth_call)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        batch.run(src, out, model=tiny_run, batch_files=3, part_files=4, workers=1, progress=False)
    monkeypatch.undo()
    done = batch.committed_paths(out)
    assert 0 < len(done) < 23 and len(done) == len(set(done))
    (out / ".part-x.parquet.1234.tmp").write_bytes(b"half a part")  # a kill in the middle of a write
    again = batch.run(src, out, model=tiny_run, batch_files=3, part_files=4, progress=False)
    assert (again.skipped, again.scored) == (len(done), 23 - len(done))
    assert not list(out.glob(".*.tmp"))
    paths = batch.read(out)["path"].to_pylist()
    assert len(paths) == len(set(paths)) == whole.files == 23
    assert batch.read(out).equals(batch.read(tmp_path / "whole"))  # bit for bit: same groups, same numbers
    assert batch.run(src, out, model=tiny_run, progress=False).scored == 0


def test_manifests_csv_and_parquet_relative_and_repeated_paths(tiny_run, tmp_path):
    src = make_archive(tmp_path / "archive", n=4)
    files = sorted(str(p.relative_to(tmp_path)) for p in src.rglob("clip*.wav"))
    (tmp_path / "list.csv").write_text("path,speaker\n" + "".join(f"{f},s1\n" for f in [*files, files[0]]))
    assert batch.manifest(tmp_path / "list.csv") == [str(tmp_path / f) for f in files]
    pq.write_table(pa.table({"path": [str(tmp_path / f) for f in files[::-1]]}), tmp_path / "list.parquet")
    result = batch.run(tmp_path / "list.parquet", tmp_path / "out", model=tiny_run, progress=False)
    assert (result.files, result.errors) == (4, 0)
    (tmp_path / "bad.csv").write_text("file\na.wav\n")
    with pytest.raises(ConfigError, match="no `path` column"):
        batch.manifest(tmp_path / "bad.csv")
    with pytest.raises(AudioError, match="no such file"):
        batch.manifest(tmp_path / "missing")


def test_classes_keep_only_their_score_columns_renormalised(tiny_run, tmp_path):
    src = make_archive(tmp_path / "archive", n=4)
    batch.run(src, tmp_path / "out", model=tiny_run, classes=["angry", " sad", ""], progress=False)
    table = pq.read_table(tmp_path / "out")
    assert [c for c in table.column_names if c.startswith("score_")] == ["score_sad", "score_angry"]
    ok = table.filter(pc.is_null(table["error"]))
    assert ok.num_rows and np.allclose(np.asarray(ok["score_sad"]) + np.asarray(ok["score_angry"]), 1, atol=1e-5)
    assert set(ok["label"].to_pylist()) <= {"sad", "angry"}
    assert batch.run(src, tmp_path / "out", model=tiny_run, classes=["sad", "angry"], progress=False).scored == 0


def test_an_output_of_another_job_or_in_use_is_refused(tiny_run, tmp_path):
    src = make_archive(tmp_path / "archive", n=2)
    batch.run(src, tmp_path / "out", model=tiny_run, progress=False)
    with pytest.raises(ConfigError, match="mode predict \\(now timeline\\)"):
        batch.run(src, tmp_path / "out", mode="timeline", model=tiny_run, progress=False)
    with pytest.raises(ConfigError, match="holds no emovox batch job"):
        batch.run(src, src, model=tiny_run, progress=False)
    with batch._locked(tmp_path / "busy"), pytest.raises(ConfigError, match="another emovox batch job"):
        batch.run(src, tmp_path / "busy", model=tiny_run, progress=False)
    with pytest.raises(ConfigError, match="classes None \\(now \\['angry', 'sad'\\]\\)"):
        batch.run(src, tmp_path / "out", model=tiny_run, classes=["sad", "angry"], progress=False)
    (tmp_path / "out" / "part-stray.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="part-stray.parquet: is not a part"):
        batch.run(src, tmp_path / "out", model=tiny_run, progress=False)


def test_batch_command_prints_the_summary_and_exits_2_on_bad_input(tiny_run, tmp_path):
    src = make_archive(tmp_path / "archive", n=4)
    r = CliRunner().invoke(app, ["batch", str(src), "--out", str(tmp_path / "out"), "--model", str(tiny_run),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    assert "(error)" in r.output and "scored 7 files" in r.output and "3 errors" in r.output
    r = CliRunner().invoke(app, ["batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "no such file or folder" in r.output
    r = CliRunner().invoke(app, ["batch", str(src), "--out", str(tmp_path / "o3"), "--engine", "spark"])
    assert r.exit_code == 2 and "unknown engine" in r.output


def _map_workers() -> list[int]:
    """Pids of this process's Ray Data actors (descendants whose command line names the map worker)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    mine, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        mine |= new
        grew = bool(new)
    workers = []
    for pid in mine:
        try:
            if b"MapWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return workers


def test_ray_engine_survives_a_killed_worker_and_writes_the_local_rows_in_both_modes(tiny_run, tmp_path):
    ray = pytest.importorskip("ray")
    src = make_archive(tmp_path / "archive", n=150, seconds=0.3)
    local = batch.run(src, tmp_path / "local", model=tiny_run, batch_files=2, progress=False)
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        failure: list[BaseException] = []

        def job():
            try:
                batch.run(src, out, model=tiny_run, engine="ray", workers=2, batch_files=2, part_files=1,
                          progress=False)
            except Exception as exc:  # noqa: BLE001 - the test looks at it below
                failure.append(exc)

        thread = threading.Thread(target=job)
        thread.start()
        killed, deadline = None, time.monotonic() + 120
        while killed is None and thread.is_alive() and time.monotonic() < deadline:
            workers = _map_workers()
            if workers and batch.parts(out):
                done = len(batch.committed_paths(out))
                os.kill(workers[0], signal.SIGKILL)
                killed = workers[0]
            time.sleep(0.01)
        thread.join(timeout=180)
        assert killed is not None and done < local.files, "the job ended before a worker could be killed"
        assert not Path(f"/proc/{killed}").exists() or b"MapWorker" not in Path(f"/proc/{killed}/cmdline").read_bytes()
        again = batch.run(src, out, model=tiny_run, engine="ray", workers=2, batch_files=2, progress=False)
        talks = tmp_path / "talks"
        for i in range(3):
            write(talks / f"talk{i}.wav", np.concatenate([tone(PITCH["sad"], 1.5, SR, seed=i), np.zeros(SR, np.float32),
                                                         tone(PITCH["angry"], 1.0 + i, SR, seed=i)]), SR)
        for engine in ("local", "ray"):
            batch.run(talks, tmp_path / f"talks-{engine}", mode="timeline", vad="energy", model=tiny_run,
                      engine=engine, progress=False)
    finally:
        ray.shutdown()
    assert again.skipped + again.scored == local.files
    paths = batch.read(out)["path"].to_pylist()
    assert len(paths) == len(set(paths)) == local.files  # every file once, whether Ray retried or the rerun did
    assert batch.read(out).equals(batch.read(tmp_path / "local"))  # the same rows as the local engine, bit for bit
    segments = batch.read(tmp_path / "talks-ray")
    assert segments.num_rows == 6 and segments.equals(batch.read(tmp_path / "talks-local"))
    if failure:  # the job stopped with the worker: the rerun scored the rest
        assert again.scored > 0, failure
    else:  # Ray restarted the actor and retried its batch: the job finished, nothing was left
        assert again.scored == 0

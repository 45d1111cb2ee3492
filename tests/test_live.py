import json

import numpy as np
from typer.testing import CliRunner

from emovox.cli import app
from emovox.live import array_source, listen
from emovox.predict import Predictor

from .conftest import PITCH, tone, write


def test_listen_over_an_array_stream(tiny_run):
    predictor = Predictor.load(tiny_run)
    sr = 16000
    y = np.concatenate([tone(PITCH["angry"], 3.0, sr), np.zeros(sr * 2, np.float32)])
    results = list(listen(predictor, array_source(y, sr=sr, block_s=0.1), window_s=1.0, hop_s=0.5))
    assert [r.end for r in results] == [1.0 + 0.5 * i for i in range(len(results))]
    assert len(results) == 9
    assert all(r.label != "silence" for r in results[:4]) and results[-1].label == "silence"
    assert all(0 <= r.latency_s < 5 for r in results)
    whole = predictor.predict_signals([y[sr // 2 : sr // 2 + sr]])[0]
    assert results[1].scores == whole["scores"]  # the window [0.5, 1.5) is scored exactly as an array


def test_listen_cli_from_file(tiny_run, tmp_path):
    path = write(tmp_path / "a.wav", tone(PITCH["sad"], 2.5, 16000), 16000)
    r = CliRunner().invoke(app, ["listen", "--model", str(tiny_run), "--file", str(path), "--no-realtime",
                                 "--format", "jsonl", "--window-s", "1.0", "--hop-s", "0.5"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 4 and {"label", "scores", "latency_s", "start", "end"} <= set(rows[0])


def test_timeline_cli_with_plot(tiny_run, tmp_path):
    y = np.concatenate([np.zeros(16000, np.float32), tone(PITCH["happy"], 2.0, 16000), np.zeros(16000, np.float32)])
    path = write(tmp_path / "t.wav", y, 16000)
    r = CliRunner().invoke(app, ["timeline", str(path), "--model", str(tiny_run), "--format", "csv",
                                 "--plot", str(tmp_path / "t.png"), "--vad", "energy"])  # a tone is no speech to silero
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "start,end,speaker,adapted,label,neutral,happy,sad,angry"
    assert len(r.stdout.splitlines()) == 2
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"

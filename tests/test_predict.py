import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emovox.errors import AudioError, CheckpointError, ConfigError
from emovox.predict import Predictor
from emovox.segment import VadConfig

from .conftest import PITCH, tone, write

EXAMPLE = Path(__file__).parents[1] / "examples" / "hello.flac"

TONES = VadConfig(method="energy")  # synthetic tones are no speech to the default (Silero) VAD


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return Predictor.load(tiny_run)


def _check(result, labels, seconds):
    assert set(result) == {"label", "scores", "duration_s", "quality"}
    assert set(result["quality"]) >= {"snr_db", "clipping", "bandwidth_hz", "speech_s"}
    assert list(result["scores"]) == labels and result["label"] in labels
    assert abs(sum(result["scores"].values()) - 1) < 1e-4
    assert result["label"] == max(result["scores"], key=result["scores"].get)
    assert abs(result["duration_s"] - seconds) < 0.01
    json.dumps(result)


def test_path_array_tuple_and_list(predictor, tmp_path):
    y = tone(PITCH["angry"], 1.5, 16000)
    path = write(tmp_path / "a.wav", y, 16000)
    by_path = predictor.predict(path)
    _check(by_path, predictor.labels, 1.5)
    by_array = predictor.predict(y, sr=16000)
    by_tuple = predictor.predict((y, 16000))
    for r in (by_array, by_tuple):
        assert r["label"] == by_path["label"]
        np.testing.assert_allclose(list(r["scores"].values()), list(by_path["scores"].values()), atol=1e-4)
    batch = predictor.predict([path, (y, 16000), str(path)])
    assert isinstance(batch, list) and len(batch) == 3
    assert all(b["label"] == by_path["label"] for b in batch)


def test_only_some_classes_renormalises_their_scores_and_names_unknown_ones(tiny_run):
    p = Predictor.load(tiny_run)
    y = (tone(PITCH["sad"], 1.5, 16000), 16000)
    full = p.predict(y)["scores"]
    kept = p.only(["Angry", " sad", ""]).predict(y)
    _check(kept, ["sad", "angry"], 1.5)  # the model's order, whatever the order asked
    total = full["sad"] + full["angry"]
    assert kept["scores"] == pytest.approx({"sad": full["sad"] / total, "angry": full["angry"] / total}, abs=1e-5)
    assert p.labels == ["sad", "angry"]
    with pytest.raises(ConfigError, match="no class fearful.*choose among neutral, happy, sad, angry"):
        p.only(["sad", "fearful"])
    assert p.only([]).predict(y)["scores"] == full  # back to every class


def test_odd_rate_and_stereo_match_mono_16k(predictor, tmp_path):
    y44 = tone(PITCH["sad"], 2.0, 44100)
    stereo = np.stack([y44, y44], axis=1)
    a = predictor.predict((stereo, 44100))
    b = predictor.predict(write(tmp_path / "s.flac", stereo, 44100))
    c = predictor.predict(y44, sr=44100)
    _check(a, predictor.labels, 2.0)
    np.testing.assert_allclose(list(a["scores"].values()), list(c["scores"].values()), atol=1e-5)
    np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=2e-3)


def test_trained_model_separates_pitch_classes(predictor):
    results = predictor.predict([(tone(PITCH[e], 1.3, 16000, seed=99 + i), 16000) for i, e in enumerate(PITCH)])
    assert sum(r["label"] == e for r, e in zip(results, PITCH, strict=True)) >= 3


def test_onnx_backend_agrees_with_torch(tiny_run):
    signals = [(tone(p, 1.7, 16000, seed=5), 16000) for p in PITCH.values()]
    torch_out = Predictor.load(tiny_run).predict(signals)
    onnx_out = Predictor.load(tiny_run, backend="onnx").predict(signals)
    for a, b in zip(torch_out, onnx_out, strict=True):
        assert a["label"] == b["label"]
        assert max(abs(a["scores"][k] - b["scores"][k]) for k in a["scores"]) <= 1e-4


def test_bad_inputs(predictor, tmp_path):
    with pytest.raises(AudioError, match="sample rate"):
        predictor.predict(np.ones(16000, np.float32))
    with pytest.raises(AudioError, match="silent"):
        predictor.predict((np.zeros(16000, np.float32), 16000))
    with pytest.raises(CheckpointError, match="no model.pt"):
        Predictor.load(tmp_path)


def test_timeline_finds_speech_between_silences(predictor, tmp_path):
    sr = 22050
    parts, truth, t = [], [], 0.0
    for seconds, kind in [(1.0, None), (1.5, "angry"), (1.2, None), (2.0, "sad"), (0.8, None)]:
        parts.append(tone(PITCH[kind], seconds, sr) if kind else np.zeros(int(seconds * sr), np.float32))
        if kind:
            truth.append((t, t + seconds))
        t += seconds
    path = write(tmp_path / "long.wav", np.concatenate(parts), sr)
    rows = predictor.timeline(path, vad=TONES)
    assert len(rows) == 2
    for row, (start, end) in zip(rows, truth, strict=True):
        assert abs(row["start"] - start) < 0.2 and abs(row["end"] - end) < 0.2
        assert set(row["scores"]) == set(predictor.labels)


def test_predictor_is_at_the_top_of_the_package_and_import_stays_light():
    import emovox

    assert emovox.Predictor is Predictor and "Predictor" in dir(emovox) and "audio_files" in emovox.__all__
    code = ("import sys, emovox; assert 'torch' not in sys.modules, 'import emovox pulled in torch'; "
            "from emovox import Predictor, audio_files; assert 'torch' in sys.modules; print(Predictor.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Predictor"
    with pytest.raises(AttributeError, match="no attribute 'Predicter'"):
        emovox.Predicter  # noqa: B018


def test_a_folder_is_every_audio_file_under_it(predictor, tmp_path):
    from emovox import audio_files

    for i, name in enumerate(["b/2.flac", "a.wav", "b/1.wav"]):
        write(tmp_path / "rec" / name, tone(PITCH["sad"], 1.0 + 0.1 * i, 16000), 16000)
    files = audio_files(tmp_path / "rec")
    assert [f.relative_to(tmp_path / "rec").as_posix() for f in files] == ["a.wav", "b/1.wav", "b/2.flac"]
    rows = predictor.predict(files)
    assert [r["duration_s"] for r in rows] == [1.1, 1.2, 1.0]
    with pytest.raises(AudioError, match="is a folder, not a file"):
        predictor.predict(tmp_path / "rec")


def _recording(tmp_path, sr=16000):
    """Four tones between silences: four speech segments."""
    silence = np.zeros(int(0.8 * sr), np.float32)
    parts = [silence]
    for i, emo in enumerate(("angry", "sad", "happy", "neutral")):
        parts += [tone(PITCH[emo], 1.2, sr, seed=i), silence]
    return write(tmp_path / "rec.wav", np.concatenate(parts), sr)


def _counting(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_speaker_normalised_timeline_decodes_once_and_uses_the_recordings_statistics(predictor, tmp_path,
                                                                                    monkeypatch):
    import dataclasses

    from emovox import audio, frontend, predict
    from emovox.normalize import Stats
    from emovox.segment import speech_segments

    normed = Predictor(predictor.model, dataclasses.replace(predictor.spec, speaker_norm=True))
    path = _recording(tmp_path)
    segments = list(speech_segments(audio.stream(path, sr=16000), 16000))
    stats = Stats.of([frontend.extract(s.audio, normed.features) for s in segments])  # the old first pass
    expected = normed.predict_signals([s.audio for s in segments], stats=stats)
    streams = _counting(monkeypatch, audio, "stream")
    extracted = _counting(monkeypatch, predict, "extract_batch")
    rows = normed.timeline(path, batch=3)
    assert len(streams) == 1 and sum(len(args[0]) for args in extracted) == len(segments)  # once each
    assert [(r["start"], r["end"]) for r in rows] == [(round(s.start, 3), round(s.end, 3)) for s in segments]
    for row, want in zip(rows, expected, strict=True):
        assert row["label"] == want["label"]
        np.testing.assert_allclose(list(row["scores"].values()), list(want["scores"].values()), atol=1e-6)
    with open(path, "rb") as fh:  # an upload's file object (the service's /v1/timeline) likewise
        assert normed.timeline(fh, batch=3) == rows and len(streams) == 2


def test_timeline_of_a_plain_model_scores_segments_in_batches_as_it_streams(predictor, tmp_path, monkeypatch):
    from emovox import audio

    path = _recording(tmp_path)
    expected = predictor.timeline(path, vad=TONES)
    streams = _counting(monkeypatch, audio, "stream")
    scored = _counting(monkeypatch, predictor, "predict_signals")
    assert predictor.timeline(path, vad=TONES, batch=3) == expected
    assert len(streams) == 1 and [len(args[0]) for args in scored] == [3, 1]


def test_map_ordered_runs_items_side_by_side_on_one_thread_each_in_order():
    import threading

    import torch

    from emovox.predict import _map_ordered

    before = torch.get_num_threads()
    both_running = threading.Barrier(2, timeout=10)  # passes only if two items run at once

    def work(i):
        if i < 2:
            both_running.wait()
        return i * i, torch.get_num_threads()

    out = list(_map_ordered(work, iter(range(7)), 2))
    assert [item for item, _ in out] == list(range(7))
    assert [r for _, (r, _) in out] == [i * i for i in range(7)]
    assert {threads for _, (_, threads) in out} == {1}
    assert torch.get_num_threads() == before


def test_a_long_file_is_streamed_and_summarised_over_its_speech_segments(predictor, tmp_path, monkeypatch):
    from emovox import audio, predict

    hello = audio.load(EXAMPLE, sr=16000)
    pause = np.zeros(16000, np.float32)
    path = write(tmp_path / "long.wav", np.concatenate([hello, pause, 0.5 * hello, pause, hello]), 16000)
    monkeypatch.setattr(predict, "LONG_INPUT_S", 5.0)
    loaded = []
    monkeypatch.setattr(predict.audio, "load", lambda *a, **k: loaded.append(a) or audio.load(*a, **k))
    result = predictor.predict(path)
    assert not loaded  # never decoded whole
    rows = predictor.timeline(path)  # the same segments (default VAD), scored alone
    weights = np.array([r["end"] - r["start"] for r in rows])
    mean = weights @ np.array([list(r["scores"].values()) for r in rows]) / weights.sum()
    assert result["summary"]["segments"] == len(rows) >= 3
    np.testing.assert_allclose(list(result["scores"].values()), mean, atol=1e-4)
    assert result["label"] == predictor.labels[int(np.argmax(mean))] and abs(result["duration_s"] - 16.38) < 0.01

"""Utterance vectors: the GE2E speaker encoder, eGeMAPS + GE2E features, and the MLP that reads them."""

import json

import librosa
import numpy as np
import pytest
import torch

from emovox import baseline, encoder, experiment, ge2e, utterance
from emovox.bundled import sha256
from emovox.errors import ConfigError, EmovoxError
from emovox.features import FeatureConfig, mel_power_batch, trim, windows
from emovox.frontend import extract
from emovox.models.layers import FeatureNorm
from emovox.predict import Predictor
from emovox.settings import Settings
from emovox.train import TrainConfig, spec_augment

from .conftest import make_ravdess, tone


@pytest.fixture(scope="module")
def random_ge2e(tmp_path_factory) -> str:
    """A randomly initialised encoder saved in the layout of Resemblyzer's checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ge2e") / "ge2e.pt"
    torch.save({"step": 1, "model_state": ge2e.SpeakerEncoder().state_dict()}, path)
    return str(path)


def test_embedding_is_the_normalised_mean_of_its_pieces(random_ge2e):
    long, short = tone(220.0, 4.0, 16000, seed=3), tone(150.0, 1.0, 16000, seed=4)
    got = ge2e.embed_batch([long, short], random_ge2e)
    mel = librosa.feature.melspectrogram(y=long, sr=16000, n_fft=400, hop_length=160, n_mels=40)  # 401 frames
    starts = [0, 80, 160, 240, 241]  # 1.6 s pieces at half-piece hops; the last one ends with the signal
    pieces = torch.from_numpy(np.stack([mel[:, s : s + 160].T for s in starts]))
    with torch.no_grad():
        mean = ge2e.load_encoder(random_ge2e)(pieces).mean(dim=0).numpy()
    np.testing.assert_allclose(got[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert got[1].shape == (256,) and np.isclose(np.linalg.norm(got[1]), 1.0, atol=1e-5)
    np.testing.assert_allclose(ge2e.embed_batch([short], random_ge2e)[0], got[1], atol=1e-5)  # batch-independent


def test_quiet_audio_is_raised_to_the_training_level(random_ge2e):
    y = tone(180.0, 2.0, 16000)
    a, b = ge2e.embed_batch([0.001 * y, 0.01 * y], random_ge2e)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_speaker_encoder_weights_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    wrong = tmp_path / "wrong.pt"
    torch.save({"model_state": {"lstm.weight": torch.zeros(1)}}, wrong)
    for path, words in ((junk, "cannot read"), (wrong, "not a GE2E"), (tmp_path / "none.pt", "not found")):
        with pytest.raises(ConfigError, match=words) as info:
            ge2e.load_encoder(str(path))
        assert str(path) in str(info.value)


def test_shipped_weights_match_their_checksum_carry_their_licence_and_load():
    path = ge2e.default_weights()
    assert path.parent.name == "ge2e_weights"
    assert sha256(path) == (path.parent / "SHA256SUMS").read_text().split()[0]
    assert "Apache License" in (path.parent / "LICENSE").read_text()
    assert "Resemblyzer" in (path.parent / "NOTICE").read_text()
    e = ge2e.embed_batch([tone(180.0, 2.0, 16000)], str(path))[0]
    assert e.shape == (256,) and np.isclose(np.linalg.norm(e), 1.0, atol=1e-5)


def test_missing_default_weights_say_what_to_do(monkeypatch):
    monkeypatch.setattr(ge2e, "WEIGHTS_DIR", "no_such_folder")
    with pytest.raises(ConfigError, match="no GE2E speaker-encoder weights.*features.speaker_encoder"):
        ge2e.default_weights()


def test_utterance_features_stack_egemaps_then_ge2e(random_ge2e):
    cfg = FeatureConfig(kind="utterance", speaker_encoder=random_ge2e)
    y = np.concatenate([np.zeros(8000, np.float32), tone(200.0, 1.5, 16000)])  # leading silence: trimmed first
    f = extract(y, cfg)
    assert f.shape == (cfg.n_features, cfg.clip_frames) == (344, 1)
    trimmed = trim(y, cfg)
    np.testing.assert_allclose(f[:88], extract(trimmed, baseline.FEATURES), rtol=1e-6)
    np.testing.assert_allclose(f[88:, 0], ge2e.embed_batch([trimmed], random_ge2e)[0], atol=1e-6)
    only = FeatureConfig(kind="utterance", utterance=("ge2e",), speaker_encoder=random_ge2e)
    assert only.n_features == 256 and extract(y, only).shape == (256, 1)


@pytest.mark.parametrize("bad", [dict(utterance=("mfcc",)), dict(utterance=()), dict(sample_rate=8000)])
def test_bad_utterance_config(bad):
    with pytest.raises(ConfigError):
        FeatureConfig(kind="utterance", **bad)


def test_mlp_model_reads_utterance_vectors_unless_told_otherwise(tmp_path):
    assert Settings.build(model="mlp").features.kind == "utterance"
    config = tmp_path / "c.yaml"
    config.write_text("features: {kind: logmel}\n")
    assert Settings.build(config, model="mlp").features.kind == "logmel"
    assert Settings.build(model="cnn").features.kind == "logmel"


def test_feature_norm_keeps_std_one_for_rows_constant_in_training():
    norm = FeatureNorm(2)
    norm.fit([np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], np.float32)])
    out = norm(torch.tensor([[[0.5], [2.0]]]))
    np.testing.assert_allclose(out[0, :, 0].numpy(), [0.5, 0.0], atol=1e-6)  # not 0.5 / 1e-5


def test_spec_augment_never_masks_a_whole_utterance_vector():
    x = torch.randn(256, 344, 1)
    out = spec_augment(x, torch.Generator().manual_seed(0))
    changed = (out != x).squeeze(2)
    assert changed.any() and (changed.sum(dim=1) <= 2 * (344 // 8)).all()


def test_speaker_normalised_mlp_end_to_end(tmp_path, random_ge2e):
    """Train the MLP on eGeMAPS + GE2E of a synthetic corpus; predict needs a speaker's statistics."""
    corpus = make_ravdess(tmp_path / "ravdess")
    settings = Settings(features=FeatureConfig(kind="utterance", speaker_encoder=random_ge2e),
                        train=TrainConfig(model="mlp", epochs=30, batch_size=8), speaker_norm=True)
    metrics = experiment.train(corpus, tmp_path / "run", settings, cache_dir=tmp_path / "cache", progress=False)
    assert metrics["validation"]["ua"] >= 0.75
    assert metrics["name"] == "mlp [egemaps + ge2e] + speaker norm on ravdess (4 classes)"
    predictor = Predictor.load(tmp_path / "run")
    files = sorted((corpus / "Actor_04").glob("03-01-0[1345]-01-01-0[12]-04.wav"))
    rows = predictor.predict([str(f) for f in files])  # one speaker's files: they share statistics
    assert [r["label"] for r in rows] == [lab for lab in ("neutral", "happy", "sad", "angry") for _ in range(2)]
    with pytest.raises(EmovoxError, match="statistics"):
        predictor.predict(str(files[0]))
    assert predictor.adapt([str(f) for f in files]).predict(str(files[0]))["label"] == "neutral"
    with pytest.raises(EmovoxError, match="statistics"):
        predictor.adapt(str(files[1]))  # one reference utterance has no spread either
    from fastapi.testclient import TestClient

    from emovox.serve import create_app

    with TestClient(create_app(Predictor.load(tmp_path / "run"))) as client:
        r = client.post("/v1/predict", files={"file": ("a.wav", files[0].read_bytes())})
    assert r.status_code == 400 and "statistics" in r.json()["detail"]


def test_real_weights_tell_speakers_apart(real_data):
    """The shipped GE2E weights load and work: one speaker's utterances are closer than two speakers'."""
    from emovox.audio import load

    wav = real_data / "emodb" / "wav"
    names = ["03a01Nc", "03a04Nc", "03b01Nb", "08a01Na", "08a04Nc", "08b01Na"]  # speakers 03 and 08, neutral
    e = np.stack(ge2e.embed_batch([load(wav / f"{n}.flac", sr=16000) for n in names]))
    sim = e @ e.T
    same = [sim[i, j] for i in range(6) for j in range(i + 1, 6) if (i < 3) == (j < 3)]
    across = [sim[i, j] for i in range(3) for j in range(3, 6)]
    assert min(same) > max(across)


def test_cli_names_the_vectors_and_needs_statistics_for_one_file(ravdess_dir, tmp_path, random_ge2e):
    from typer.testing import CliRunner

    from emovox.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(f"features: {{speaker_encoder: {random_ge2e}}}\ntrain: {{batch_size: 8}}\n")
    common = ["--data", str(ravdess_dir), "--model", "mlp", "--speaker-norm", "--config", str(config),
              "--cache-dir", str(tmp_path / "cache"), "--epochs", "10", "--quiet"]
    cv = tmp_path / "cv[a]"
    r = CliRunner().invoke(app, ["evaluate", *common, "--folds", "2", "--out", str(cv)])
    assert r.exit_code == 0, r.output
    assert "mlp [egemaps + ge2e] + speaker norm on ravdess" in r.output and "cv[a]" in r.output
    run = tmp_path / "run"
    assert CliRunner().invoke(app, ["train", *common, "--out", str(run)]).exit_code == 0
    files = [str(f) for f in sorted((ravdess_dir / "Actor_02").glob("03-01-0*-01-01-0[12]-02.wav"))]
    r = CliRunner().invoke(app, ["predict", "--model", str(run), "--format", "json", files[0]])
    assert r.exit_code == 2 and "one input has no statistics" in r.output
    r = CliRunner().invoke(app, ["predict", "--model", str(run), "--format", "json", *files])
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == len(files) == 8
    adapt = [arg for f in files for arg in ("--adapt-from", f)]  # the speaker's statistics from other recordings
    r = CliRunner().invoke(app, ["predict", "--model", str(run), "--format", "json", *adapt, files[0]])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["label"] == "neutral"


def test_layer_means_come_from_the_encoders_own_layers(random_ge2e):
    y = tone(180.0, 2.5, 16000)
    embedding, means = (v[0] for v in ge2e.encode([y], random_ge2e))
    assert embedding.shape == (256,) and means.shape == (768,)
    np.testing.assert_allclose(embedding, ge2e.embed_batch([y], random_ge2e)[0], atol=1e-6)
    cfg = FeatureConfig(sample_rate=16000, n_fft=ge2e.N_FFT, hop_length=ge2e.HOP, n_mels=ge2e.N_MELS)
    mel = mel_power_batch([ge2e._raise_quiet(y)], cfg)[0]
    pieces = torch.from_numpy(windows(mel, ge2e.PARTIAL_FRAMES, pad_value=0.0).transpose(0, 2, 1).copy())
    with torch.inference_mode():
        top, _ = ge2e.load_encoder(random_ge2e).lstm(pieces)  # the 3-layer LSTM: its last layer's output
    np.testing.assert_allclose(means[512:], top.mean(dim=(0, 1)).numpy(), atol=1e-5)


def test_dvector_layer_means_spreads_and_peaks_are_each_layers_statistics_over_the_clips_frames(random_ge2e):
    dv = ge2e.DVectors(random_ge2e)
    clips = [tone(180.0, 2.0, 16000), tone(240.0, 1.1, 16000, seed=1)]
    wave, lengths = encoder.pad(clips)
    outputs = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out[0])) for layer in dv.lstm]
    with torch.inference_mode():
        _, means, spreads, peaks = dv(wave, lengths)
        for hook in hooks:
            hook.remove()
        _, alone_means, alone_spreads, alone_peaks = dv(wave[1:, : lengths[1]], lengths[1:])
    assert means.shape == spreads.shape == peaks.shape == (2, 768)
    frames = (lengths // ge2e.HOP + 1).tolist()
    first = -(-frames[0] // ge2e.PIECE_FRAMES)  # the pieces of clip 0 come first
    for k, h in enumerate(outputs):
        for b, rows in enumerate([h[:first], h[first:]]):
            valid = rows.reshape(-1, h.shape[2])[: frames[b]]  # back-to-back pieces: the clip's frames in order
            np.testing.assert_allclose(means[b, 256 * k : 256 * (k + 1)], valid.mean(0), atol=1e-5)
            np.testing.assert_allclose(spreads[b, 256 * k : 256 * (k + 1)], valid.std(0, unbiased=False), atol=1e-4)
            np.testing.assert_allclose(peaks[b, 256 * k : 256 * (k + 1)], valid.amax(0), atol=1e-6)
    assert (spreads > 0).any()
    for alone, together in [(alone_means, means), (alone_spreads, spreads), (alone_peaks, peaks)]:
        np.testing.assert_allclose(alone[0], together[1], atol=1e-4)  # padding and company change nothing


def test_egemaps_in_threads_equals_one_at_a_time():
    signals = [tone(120.0 + 40 * i, 1.0 + 0.2 * i, 16000) for i in range(4)]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        together = utterance.egemaps(signals)
    finally:
        torch.set_num_threads(before)
    for y, v in zip(signals, together, strict=True):
        np.testing.assert_array_equal(utterance.egemaps([y])[0], v)

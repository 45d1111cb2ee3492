"""Devices and precision: resolution, refusals on CPU, device-neutral checkpoints and run dirs.

Everything above the CUDA section runs on any machine (CUDA is hidden where a test needs
its absence); the CUDA tests are marked ``cuda`` and skip without a GPU.
"""

import contextlib

import numpy as np
import pytest
import torch

from emovox import device, distributed, models
from emovox.errors import CheckpointError, ConfigError
from emovox.features import FeatureConfig, extract_batch
from emovox.predict import Predictor, score_features
from emovox.settings import Settings
from emovox.train import CHECKPOINT, TrainConfig, fit

from .conftest import PITCH, tone

CFG = FeatureConfig(n_mels=32, clip_s=0.5)
HAS_CUDA = torch.cuda.is_available()


def cuda_test(fn):
    """Marked ``cuda``; skipped where torch sees no GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")(fn))


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without a GPU, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def tones():
    """4 pitch classes x 4 'speakers' x 3 takes; speaker 3 is held out."""
    signals, y, spk = [], [], []
    for s in range(4):
        for c, pitch in enumerate((110.0, 170.0, 260.0, 400.0)):
            for k in range(3):
                signals.append(tone(pitch * (1 + 0.03 * (s - 2)), 0.6 + 0.1 * k, 16000, seed=100 * s + 10 * c + k))
                y.append(c)
                spk.append(s)
    return extract_batch(signals, CFG), np.array(y), np.array(spk)


def _as_if_saved_on_gpu(monkeypatch, path):
    """Rewrite a torch file so that every tensor in it says it was saved from ``cuda:0``."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(payload, path)


# -- resolution ---------------------------------------------------------------------


def test_auto_without_cuda_is_the_cpu(no_cuda):
    assert device.resolve("auto") == torch.device("cpu")
    assert device.resolve(None) == torch.device("cpu")
    assert device.resolve("CPU") == torch.device("cpu")
    assert device.resolve(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_a_clear_error(no_cuda, spec):
    with pytest.raises(ConfigError, match="no CUDA GPU") as err:
        device.resolve(spec)
    assert "\n" not in str(err.value) and "--device cpu" in str(err.value)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cpu:0", "cuda:", "mps:0", "cuda 0"])
def test_malformed_device_names_are_refused(spec):
    with pytest.raises(ConfigError, match="unknown device"):
        device.resolve(spec)
    with pytest.raises(ConfigError, match="unknown device"):
        TrainConfig(device=spec)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_is_refused_on_cpu_in_one_line(precision):
    with pytest.raises(ConfigError, match=f"precision {precision} needs a CUDA device") as err:
        device.resolve_precision(precision, torch.device("cpu"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        TrainConfig(device="cpu", precision=precision)


def test_cpu_computes_in_fp32_and_unknown_precisions_fail():
    assert device.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert device.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ConfigError, match="unknown precision"):
        device.resolve_precision("fp8", torch.device("cpu"))
    assert isinstance(device.autocast(torch.device("cpu"), "fp32"), contextlib.nullcontext)


def test_train_config_checks_the_device_before_any_work(no_cuda):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        TrainConfig(device="cuda")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        TrainConfig(precision="bf16")  # auto -> cpu here
    assert TrainConfig().device == "auto" and TrainConfig(device="CPU").device == "cpu"


def test_yaml_and_flags_set_device_and_precision(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  device: cpu\n  precision: fp32\n")
    s = Settings.build(path)
    assert (s.train.device, s.train.precision) == ("cpu", "fp32")
    assert Settings.build(path, device="auto").train.device == "auto"
    assert Settings.to_dict(s)["train"]["device"] == "cpu"  # saved with the run, read back on resume


def test_a_run_configured_for_cuda_resumes_on_a_cpu_with_an_override(no_cuda):
    doc = {"train": {"device": "cuda", "precision": "bf16"}}  # a GPU run's config.json
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        Settings.from_doc(doc)
    s = Settings.from_doc(doc, device="cpu", precision="fp32")  # what `--resume R --device cpu --precision fp32` does
    assert (s.train.device, s.train.precision) == ("cpu", "fp32")


def test_cli_refuses_cuda_and_half_precision_without_a_gpu(ravdess_dir, tmp_path, no_cuda):
    from typer.testing import CliRunner

    from emovox.cli import app

    for extra, message in ((["--device", "cuda:1"], "no CUDA GPU"), (["--precision", "fp16"], "needs a CUDA"),
                           (["--device", "tpu"], "unknown device")):
        r = CliRunner().invoke(app, ["train", "--data", str(ravdess_dir), "--out", str(tmp_path / "r"), "--quiet",
                                     *extra])
        assert r.exit_code == 2, r.output
        assert "error:" in r.output and message in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["predict", "--device", "cuda", str(ravdess_dir / "Actor_01")])
    assert r.exit_code == 2 and "no CUDA GPU" in r.output


# -- helpers ------------------------------------------------------------------------


def test_to_device_on_cpu_shares_memory_and_to_cpu_keeps_state_dict_metadata():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = device.to_device(a, torch.device("cpu"))
    a[0, 0] = 42.0
    assert t[0, 0] == 42.0  # no copy on the CPU
    sd = models.build("cnn_small", n_features=8, n_frames=16, n_classes=3).state_dict()
    out = device.to_cpu({"model": sd, "list": [torch.ones(2)], "n": 3})
    assert out["model"]._metadata == sd._metadata and list(out["model"]) == list(sd) and out["n"] == 3
    assert device.of(models.build("cnn_small", n_features=8, n_frames=16, n_classes=3)) == torch.device("cpu")
    assert device.of(object()) == torch.device("cpu")


def test_distributed_backend_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.backend() == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    assert distributed.backend() == "cpu:gloo,cuda:nccl"  # nccl for GPU tensors, gloo for CPU ones
    assert distributed.device_for_rank(torch.device("cpu")) == torch.device("cpu")  # one process: as given


# -- device-neutral checkpoints and run dirs ------------------------------------------


def test_model_saved_on_a_gpu_loads_on_a_cpu_only_machine(tmp_path, monkeypatch, no_cuda):
    model = models.build("cnn_small", n_features=8, n_frames=16, n_classes=3).eval()
    spec = {"model": "cnn_small", "model_kwargs": {"n_features": 8, "n_frames": 16, "n_classes": 3}}
    models.save(tmp_path / "model.pt", model, spec=spec)
    _as_if_saved_on_gpu(monkeypatch, tmp_path / "model.pt")
    with pytest.raises(RuntimeError, match="CUDA"):  # what torch does without map_location
        torch.load(tmp_path / "model.pt", weights_only=True)
    loaded, _ = models.load(tmp_path / "model.pt", device="cpu")
    assert device.of(loaded) == torch.device("cpu")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        models.load(tmp_path / "model.pt", device="cuda")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        models.load(tmp_path / "bad.pt", device="cpu")


def test_training_checkpoint_from_a_gpu_resumes_on_the_cpu_identically(tones, tmp_path, monkeypatch, no_cuda):

    feats, y, spk = tones
    fit_idx, val_idx = np.where(spk < 3)[0], np.where(spk == 3)[0]
    cfg = TrainConfig(model="cnn_small", epochs=3, batch_size=8, patience=10, device="cpu")
    kw = dict(n_classes=4, n_frames=CFG.clip_frames, progress=False, cfg=cfg)
    full = fit(feats, y, fit_idx, val_idx, **kw)

    _interrupt_in_epoch_2(monkeypatch, feats, y, fit_idx, val_idx, checkpoint_dir=tmp_path, **kw)
    saved = torch.load(tmp_path / CHECKPOINT, map_location=None, weights_only=False)
    assert all(t.device.type == "cpu" for t in saved["model"].values())  # written from CPU tensors
    _as_if_saved_on_gpu(monkeypatch, tmp_path / CHECKPOINT)
    resumed = fit(feats, y, fit_idx, val_idx, checkpoint_dir=tmp_path, **kw)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_run_dir_loads_with_device_cpu_and_auto_alike(tiny_run, no_cuda):
    signals = [(tone(PITCH[e], 1.2, 16000, seed=i), 16000) for i, e in enumerate(("sad", "happy", "angry"))]
    on_cpu = Predictor.load(tiny_run, device="cpu")
    auto = Predictor.load(tiny_run)
    assert on_cpu.device == auto.device == "cpu"
    assert on_cpu.predict(signals) == auto.predict(signals)
    payload = torch.load(tiny_run / "model.pt", map_location=None, weights_only=True)
    assert all(t.device.type == "cpu" for t in payload["state_dict"].values())  # the run dir is device-neutral
    with pytest.raises(ConfigError, match="onnx backend runs on the CPU"):
        Predictor.load(tiny_run, backend="onnx", device="cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        Predictor.load(tiny_run, device="cuda")


# -- on a GPU -------------------------------------------------------------------------


@cuda_test
def test_cuda_resolution_and_default_precision():
    dev = device.resolve("auto")
    assert dev.type == "cuda" and device.resolve("cuda:0") == torch.device("cuda", 0)
    bf16 = torch.cuda.get_device_capability(dev)[0] >= 8
    assert device.resolve_precision("auto", dev) == ("bf16" if bf16 else "fp32")
    assert device.resolve_precision("fp16", dev) == "fp16"
    x = device.to_device(np.ones((2, 3), np.float32), dev)
    assert x.device == dev


@cuda_test
@pytest.mark.parametrize("precision", ["fp32", "fp16", "auto"])
def test_cnn_learns_on_cuda_and_its_files_load_on_the_cpu(tones, tmp_path, precision):
    feats, y, spk = tones
    fit_idx, val_idx = np.where(spk < 3)[0], np.where(spk == 3)[0]
    cfg = TrainConfig(model="cnn", epochs=12, batch_size=8, lr=3e-3, patience=12, device="cuda", precision=precision)
    result = fit(feats, y, fit_idx, val_idx, n_classes=4, n_frames=CFG.clip_frames, cfg=cfg, progress=False,
                 checkpoint_dir=tmp_path)
    assert device.of(result.model).type == "cuda"
    assert result.best_val_ua >= 0.9, result.history
    spec = {"model": "cnn", "model_kwargs": {"n_features": 32, "n_frames": CFG.clip_frames, "n_classes": 4}}
    models.save(tmp_path / "model.pt", result.model, spec=spec)
    payload = torch.load(tmp_path / "model.pt", map_location=None, weights_only=True)
    assert all(t.device.type == "cpu" for t in payload["state_dict"].values())
    ckpt = torch.load(tmp_path / CHECKPOINT, map_location=None, weights_only=False)
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    on_cpu, _ = models.load(tmp_path / "model.pt", device="cpu")
    held_out = [feats[i] for i in val_idx]
    p_gpu = score_features(result.model, held_out, CFG.clip_frames)
    p_cpu = score_features(on_cpu, held_out, CFG.clip_frames)
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-3)


@cuda_test
def test_resume_on_cuda_matches_an_uninterrupted_run(tones, tmp_path, monkeypatch):

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    feats, y, spk = tones
    fit_idx, val_idx = np.where(spk < 3)[0], np.where(spk == 3)[0]
    cfg = TrainConfig(model="cnn", epochs=3, batch_size=8, patience=10, device="cuda", precision="fp32")
    kw = dict(n_classes=4, n_frames=CFG.clip_frames, progress=False, cfg=cfg)
    full = fit(feats, y, fit_idx, val_idx, **kw)
    _interrupt_in_epoch_2(monkeypatch, feats, y, fit_idx, val_idx, checkpoint_dir=tmp_path, **kw)
    resumed = fit(feats, y, fit_idx, val_idx, checkpoint_dir=tmp_path, **kw)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=k)


@cuda_test
def test_predictor_on_cuda_agrees_with_the_cpu(tiny_run):
    signals = [(tone(PITCH[e], 1.2, 16000, seed=i), 16000) for i, e in enumerate(("sad", "happy", "angry"))]
    gpu = Predictor.load(tiny_run, device="cuda")
    cpu = Predictor.load(tiny_run, device="cpu")
    assert gpu.device.startswith("cuda")
    for a, b in zip(gpu.predict(signals), cpu.predict(signals), strict=True):
        assert a["label"] == b["label"]
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=1e-3)


@cuda_test
def test_ssl_hidden_states_on_cuda_match_the_cpu(tmp_path):
    transformers = pytest.importorskip("transformers")
    from emovox import ssl

    torch.manual_seed(0)
    config = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 4, 4),
                                       conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=2)
    transformers.HubertModel(config).save_pretrained(tmp_path)
    y = tone(200.0, 1.0, 16000)
    gpu = ssl.hidden_states([y], str(tmp_path), device="cuda")[0]
    cpu = ssl.hidden_states([y], str(tmp_path), device="cpu")[0]
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)


def _interrupt_in_epoch_2(monkeypatch, *args, **kw) -> None:
    """Run :func:`fit` until a KeyboardInterrupt in its second epoch (a checkpoint is left)."""
    from emovox import train as train_mod

    real_ua, calls = train_mod._ua, []

    def dies_in_epoch_2(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_ua(*a)

    monkeypatch.setattr(train_mod, "_ua", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(*args, **kw)
    monkeypatch.setattr(train_mod, "_ua", real_ua)

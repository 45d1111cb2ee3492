"""Test-time channel conditions: deterministic, their own draws, the asked band and SNR,
babble from speakers who are not tested, and leave-one-corpus-out scored through them."""

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from emovox.augment import WaveAugment
from emovox.cli import app
from emovox.conditions import Condition, babble_pool, parse_conditions
from emovox.errors import ConfigError

from .conftest import PITCH, make_nemo, tone, write

SR = 16000


def _snr_db(clean: np.ndarray, degraded: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    return float(10 * np.log10(np.mean(clean**2) / np.mean((degraded - clean) ** 2)))


def _band_power(y: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


@pytest.fixture
def voices(tmp_path):
    """Six babble voices: tones of other pitches than the test clip's, as files."""
    return tuple(str(write(tmp_path / f"v{i}.wav", tone(90 + 37 * i, 1.0 + 0.2 * i, SR, seed=50 + i), SR))
                 for i in range(6))


@pytest.mark.parametrize("name", ["white:10", "pink:10", "reverb:0.6", "phone+white:15", "babble:10", "mp3:0.9"])
def test_same_clip_and_condition_same_audio_another_condition_or_salt_other_audio(name, voices):
    y = tone(200, 1.5, SR, seed=1)
    condition = replace(Condition.parse(name), babble=voices)
    out = condition(y, SR)
    assert out.dtype == np.float32 and len(out) == len(y) and not np.array_equal(out, y)
    np.testing.assert_array_equal(out, replace(Condition.parse(name), babble=voices)(y.copy(), SR))
    other = {"white:10": "white:11", "pink:10": "white:10", "reverb:0.6": "reverb:0.5",
             "phone+white:15": "white:15+phone", "babble:10": "babble:11", "mp3:0.9": "mp3:0.5"}[name]
    assert not np.array_equal(out, replace(Condition.parse(other), babble=voices)(y, SR))
    if name != "mp3:0.9":  # a codec draws nothing: only the random conditions depend on the salt
        assert not np.array_equal(out, replace(condition, salt="another salt")(y, SR))
    if name != "mp3:0.9":  # another clip, other draws: not the same noise, room or voices again
        y2 = tone(200, 1.5, SR, seed=2)
        assert abs(np.corrcoef(condition(y2, SR) - y2, out - y)[0, 1]) < 0.5


def test_test_noise_is_not_the_training_copy_played_back():
    y = tone(200, 1.0, SR, seed=3)
    test, train = Condition.parse("white:10")(y, SR), WaveAugment.parse("noise:10")(y, SR)
    assert _snr_db(y, test) == pytest.approx(_snr_db(y, train), abs=0.5)  # the same kind of noise ...
    assert abs(np.corrcoef(test - y, train - y)[0, 1]) < 0.05  # ... from other draws
    test, train = Condition.parse("reverb:0.5")(y, SR), WaveAugment.parse("reverb:0.5")(y, SR)
    assert not np.array_equal(test, train)


@pytest.mark.parametrize("name", ["white:20", "white:10", "white:5", "pink:10", "babble:20", "babble:10", "babble:5"])
def test_noise_conditions_are_within_half_a_db_of_their_snr(name, voices):
    y = tone(240, 2.0, SR, seed=4)
    noisy = replace(Condition.parse(name), babble=voices)(y, SR)
    assert _snr_db(y, noisy) == pytest.approx(float(name.partition(":")[2]), abs=0.5)


def test_babble_is_made_of_the_pool_voices(tmp_path):
    """Babble of one low voice carries that voice's spectrum, nothing like flat noise."""
    voice = write(tmp_path / "low.wav", tone(PITCH["sad"], 0.7, SR, seed=6), SR)
    y = tone(300, 1.0, SR, seed=5)
    added = replace(Condition.parse("babble:0"), babble=(str(voice),))(y, SR) - y
    assert _band_power(added, 80, 700) > 100 * _band_power(added, 4000, 8000)
    assert Condition.parse("white:5+babble:10").needs_babble and not Condition.parse("phone+white:5").needs_babble
    with pytest.raises(ConfigError, match="babble needs other speakers"):
        Condition.parse("babble:10")(y, SR)


def test_phone_removes_the_energy_above_the_telephone_band():
    y = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1
    line = Condition.parse("phone")(y, SR)
    assert _band_power(line, 300, 3000) / _band_power(y, 300, 3000) > 0.5
    assert _band_power(line, 3400, 8000) / _band_power(y, 3400, 8000) < 0.02
    assert _band_power(line, 4000, 8000) / _band_power(y, 4000, 8000) < 1e-4
    noisy_line = Condition.parse("phone+white:15")(y, SR)  # left to right: noise after the line is wide-band
    assert _band_power(noisy_line, 4000, 8000) / _band_power(y, 4000, 8000) > 1e-3


def test_babble_pool_never_takes_the_held_out_corpus_or_a_test_speaker():
    paths = [f"{c}/{s}/{i}.wav" for c in ("a", "b", "c") for s in range(3) for i in range(4)]
    speakers = [p.rsplit("/", 1)[0] for p in paths]
    corpora = [p.split("/")[0] for p in paths]
    pool = babble_pool(paths, speakers, corpora, test_speakers={"b/0"}, test_corpus="a", size=7)
    assert len(pool) == 7 and len(set(pool)) == 7
    assert not any(p.startswith(("a/", "b/0/")) for p in pool)
    assert len({p.rsplit("/", 1)[0] for p in pool}) == 5  # every other speaker once before anyone twice
    assert pool == babble_pool(paths, speakers, corpora, test_speakers={"b/0"}, test_corpus="a", size=7)
    assert babble_pool(paths, [None] * len(paths), corpora, test_speakers=set()) == ()  # unknown speakers: none


@pytest.mark.parametrize("name", ["phone:8000", "white", "echo:3", "white:x", "reverb:9", "clean+phone", "mp3:2"])
def test_a_bad_condition_is_a_config_error_with_the_fix(name):
    with pytest.raises(ConfigError, match="white:SNR_DB"):
        Condition.parse(name)


def test_names_are_canonical_and_clean_is_implied():
    assert [c.name for c in parse_conditions(["clean", "white:10.0", " phone + white:15 ", "white:10", ""])] == \
        ["white:10", "phone+white:15"]


def test_leave_one_corpus_out_through_test_conditions(ravdess_dir, tmp_path):
    """--folds loco --test-conditions: each held-out corpus scored clean and through each
    channel, in metrics.json, report.md and the printed summary; babble of each fold from the
    other corpus only; a rerun reuses the folds, and a new condition trains them again."""
    nemo = make_nemo(tmp_path / "nemo")
    config = tmp_path / "tiny.yaml"
    config.write_text("features:\n  kind: logmel\n  n_mels: 32\n  clip_s: 1.0\ntrain:\n  batch_size: 8\n")
    out, cache = tmp_path / "loco", tmp_path / "cache"
    args = ["evaluate", "--data", f"ravdess={ravdess_dir}", "--data", f"nemo={nemo}", "--folds", "loco",
            "--model", "cnn_small", "--config", config, "--epochs", "2", "--out", out, "--cache-dir", cache, "--quiet"]
    r = CliRunner().invoke(app, [*map(str, args), "--test-conditions", "phone,white:10,babble:10"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    tested = m["test_conditions"]
    assert list(tested) == ["clean", "phone", "white:10", "babble:10"]
    clean = {f["test_corpus"]: f["ua"] for f in m["folds"]}
    assert {f["test_corpus"]: f["ua"] for f in tested["clean"]["folds"]} == clean
    for c in tested.values():
        assert [f["test_corpus"] for f in c["folds"]] == ["nemo", "ravdess"]
        assert c["mean"]["ua"] == pytest.approx(np.mean([f["ua"] for f in c["folds"]]))
        assert all(np.array(f["confusion_matrix"]).sum() == f["n"] for f in c["folds"])
    assert "| white:10 |" in r.output and "nemo UA" in r.output
    report = (out / "report.md").read_text()
    assert "## Test conditions" in report and "| babble:10 |" in report
    extractors = [json.loads(p.read_text()) for p in cache.glob("*/config.json")]
    pools = [e["augment"]["babble"] for e in extractors if e.get("augment", {}).get("babble")]
    assert len(pools) == 2  # one pool per held-out corpus, each from the other corpus only
    assert sorted({str(nemo) in p for p in pool} == {True} for pool in pools) == [False, True]
    assert all(len({str(ravdess_dir) in p for p in pool}) == 1 for pool in pools)
    first = (out / "folds" / "0" / "result.json").stat().st_mtime_ns
    r = CliRunner().invoke(app, [*map(str, args), "--test-conditions", "white:10,phone"])
    assert r.exit_code == 0 and (out / "folds" / "0" / "result.json").stat().st_mtime_ns == first  # reused
    r = CliRunner().invoke(app, [*map(str, args), "--test-conditions", "pink:10"])
    assert r.exit_code == 0, r.output
    again = json.loads((out / "metrics.json").read_text())
    assert list(again["test_conditions"]) == ["clean", "pink:10"]
    assert again["test_conditions"]["clean"]["folds"] == tested["clean"]["folds"]  # the same models, retrained
    r = CliRunner().invoke(app, ["evaluate", "--resume", str(out), "--quiet"])
    assert r.exit_code == 0 and "| pink:10 |" in r.output  # --resume keeps the run's conditions
    r = CliRunner().invoke(app, [*map(str, args), "--test-conditions", "phone,hum:50"])
    assert r.exit_code == 2 and "bad test condition 'hum:50'" in r.output

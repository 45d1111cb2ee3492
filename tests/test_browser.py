"""The web page in real headless Chromium: upload a file, see the emotion, bars and timeline."""

import re
import shutil
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

from emovox.predict import Predictor
from emovox.serve import create_app

from .conftest import PITCH, tone, write
from .test_segment import HELLO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (apt-get install chromium)"),
]


@contextmanager
def serving(run_dir):
    """The service on ``run_dir``'s model, on a free loopback port: its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(Predictor.load(run_dir)), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tiny_run):
    with serving(tiny_run) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser.new_page()
        browser.close()


def test_upload_shows_emotion_and_bars(page, server, tmp_path):
    clip = write(tmp_path / "angry.wav", tone(PITCH["angry"], 2.0, 16000), 16000)
    page.goto(server)
    page.set_input_files("#file", str(clip))
    page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=30000)
    emotion = page.text_content("#emotion")
    assert emotion in {"neutral", "happy", "sad", "angry"}
    assert page.locator("#bars .bar").count() == 4
    assert page.is_hidden("#timeline-section")
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)
    assert (tmp_path / "upload.png").stat().st_size > 1000


def test_long_upload_shows_timeline(page, server, tmp_path):
    sr = 16000
    sentence, _ = sf.read(HELLO, dtype="float32")  # speech, as the default (Silero) VAD wants
    clip = write(tmp_path / "long.wav", np.concatenate([np.zeros(sr * 2, np.float32), sentence] * 3), sr)
    page.goto(server)
    page.set_input_files("#file", str(clip))
    page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=30000)
    assert page.is_visible("#timeline-section")
    assert page.locator("#segments tbody tr").count() >= 3
    voices = page.locator("#segments tbody tr td:nth-child(3)").all_text_contents()
    assert all(re.fullmatch(r"S\d+|–", v) for v in voices), voices  # a log-mel model knows no voices
    page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)


def test_bad_upload_shows_error(page, server, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"not audio")
    page.goto(server)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error", timeout=30000)
    assert "cannot" in page.inner_text("#status")


def test_quality_block_shown_when_the_result_has_one(page, server, tmp_path):
    clip = write(tmp_path / "call.wav", tone(PITCH["sad"], 2.0, 16000), 16000)
    quality = {"snr_db": 6.4, "clipping": 0.012, "bandwidth_hz": 3400, "speech_s": 1.6,
               "issues": ["noisy (SNR 6 dB)", "narrow band (3.4 kHz, telephone-like)"]}
    result = {"label": "sad", "scores": {"neutral": 0.1, "happy": 0.1, "sad": 0.7, "angry": 0.1},
              "duration_s": 2.0, "quality": quality}
    page.goto(server)
    page.route("**/v1/predict", lambda route: route.fulfill(json=result))
    page.set_input_files("#file", str(clip))
    page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=30000)
    text = page.inner_text("#quality")
    for part in ("SNR 6 dB", "clipping 1.2%", "band 3.4 kHz", "speech 1.6 s", "noisy (SNR 6 dB)", "telephone-like"):
        assert part in text
    page.unroute("**/v1/predict")
    bare = {k: v for k, v in result.items() if k != "quality"}
    page.route("**/v1/predict", lambda route: route.fulfill(json=bare))
    page.evaluate("document.getElementById('status').textContent = ''")
    other = write(tmp_path / "other.wav", tone(PITCH["happy"], 2.0, 16000), 16000)
    page.set_input_files("#file", str(other))  # a result without the block hides it
    page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=30000)
    assert page.is_hidden("#quality")
    page.unroute("**/v1/predict")


def test_the_adapt_toggle_sends_the_pages_session_and_says_what_it_got(page, normed_run, server, tmp_path):
    clips = [write(tmp_path / f"{e}.wav", tone(PITCH[e], 2.0, 16000), 16000) for e in ("sad", "happy", "angry")]

    def upload(clip):
        page.set_input_files("#file", str(clip))
        page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=30000)
        page.evaluate("document.getElementById('status').textContent = ''")
        return page.text_content("#adapted")

    with serving(normed_run) as url:
        page.goto(url)
        assert upload(clips[0]) == ""  # off by default: each upload stands alone
        page.check("#adapt")
        assert [upload(c) for c in clips[1:]] == [f"adapted to {n} file(s) of this page" for n in (1, 2)]
        page.goto(url)  # a new page is a new session
        page.check("#adapt")
        assert upload(clips[0]) == "adapted to 1 file(s) of this page"
    page.goto(server)  # a model that cannot adapt says so
    page.check("#adapt")
    assert upload(clips[0]) == "(this model cannot adapt)"

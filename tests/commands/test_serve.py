"""`mome serve`: the page, driven in Debian's headless Chromium as a user would, transcribes a dropped clip
at every rate combination and shows what the Python API gives for the same clip; a screenshot is kept."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

import mome
from tiny import untrained_run

FAST = ["decode.num_beams=1", "decode.max_new_tokens=3", "data.num_workers=0"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def server(corpus: Path, tmp_path: Path):
    import uvicorn

    from mome.serve import app

    recognizer = mome.load(untrained_run(corpus, tmp_path / "run"), FAST)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app(recognizer), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield recognizer, f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")
def test_the_page_transcribes_a_dropped_clip_at_every_rate(server, corpus: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    recognizer, url = server
    clip = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        assert "a4_v2, a4_v5, a16_v2, a16_v5" in page.inner_text("body")
        page.set_input_files("#video", str(clip))
        page.set_input_files("#audio", str(clip.with_suffix(".wav")))
        page.click("#go")
        page.wait_for_selector("#results tr.row", timeout=60_000)
        rows = {r.get_attribute("data-rates"): r.query_selector(".text").inner_text()
                for r in page.query_selector_all("#results tr.row")}  # fmt: skip
        status = page.inner_text("#status")
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        page.set_input_files("#video", [])
        page.set_input_files("#audio", [])
        page.click("#go")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('error')")
        error = page.inner_text("#status")
        browser.close()
    assert list(rows) == ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]  # finest first
    api = recognizer.transcribe(video=clip, audio=clip.with_suffix(".wav"), rates=(16, 5)).text
    assert rows["a16_v5"].strip() == api.strip()
    assert status.startswith("used audio + video; clip ")
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    assert "give a video and/or an audio file" in error


def test_the_endpoint_answers_every_request_with_json(corpus: Path, tmp_path: Path) -> None:
    """Without a browser: a missing clip, a clip the model cannot use and a good clip each get a JSON answer
    the page can show (Starlette's test client)."""
    from starlette.testclient import TestClient

    from mome.serve import app

    recognizer = mome.load(untrained_run(corpus, tmp_path / "run"), FAST)
    client = TestClient(app(recognizer))
    assert "a16_v5" in client.get("/").text
    assert client.post("/transcribe").json() == {"error": "give a video and/or an audio file"}
    clip = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    no_audio = client.post("/transcribe", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")})
    assert no_audio.status_code == 422 and "audio: no audio track" in no_audio.json()["error"]
    ok = client.post("/transcribe", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4"),
                                           "audio": ("clip.wav", clip.with_suffix(".wav").read_bytes(), "audio/wav")})  # fmt: skip
    body = ok.json()
    assert ok.status_code == 200 and [r["rates"] for r in body["rows"]] == ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]
    assert body["modalities"] == ["audio", "video"] and body["cascade"] is None

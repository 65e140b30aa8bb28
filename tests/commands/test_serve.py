"""`mome serve`: the page, driven in Debian's headless Chromium as a user would, transcribes a dropped clip
at every rate combination and shows what the Python API gives for the same clip; a screenshot is kept."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import mome
from tiny import untrained_run

FAST = ["decode.num_beams=1", "decode.max_new_tokens=3", "data.num_workers=0"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def server(corpus: Path, tmp_path: Path):
    import uvicorn

    from mome.inference.serve import app

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
        rows = {
            r.get_attribute("data-rates"): r.query_selector(".text").inner_text()
            for r in page.query_selector_all("#results tr.row")
        }
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

    from mome.inference.serve import app

    recognizer = mome.load(untrained_run(corpus, tmp_path / "run"), FAST)
    client = TestClient(app(recognizer))
    assert "a16_v5" in client.get("/").text
    assert client.post("/transcribe").json() == {"error": "give a video and/or an audio file"}
    clip = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    no_audio = client.post("/transcribe", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")})
    assert no_audio.status_code == 422 and "audio: no audio track" in no_audio.json()["error"]
    ok = client.post(
        "/transcribe",
        files={
            "video": ("clip.mp4", clip.read_bytes(), "video/mp4"),
            "audio": ("clip.wav", clip.with_suffix(".wav").read_bytes(), "audio/wav"),
        },
    )
    body = ok.json()
    assert ok.status_code == 200 and [r["rates"] for r in body["rows"]] == ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]
    assert body["modalities"] == ["audio", "video"] and body["cascade"] is None


class FakeRecognizer:
    """What `mome.inference.serve.app` uses of a `Recognizer`, answering at once (or when `release` is set): the page's
    bounds are tested without a model."""

    def __init__(self, fail: Exception | None = None) -> None:
        compression = SimpleNamespace(task="avsr")
        self.cfg = SimpleNamespace(name="fake", model=SimpleNamespace(compression=compression))
        self.combinations = ["a4_v2"]
        self.tokens_per_second = {"a4_v2": 7.0}
        self.fail = fail
        self.seen: list[dict[str, tuple[str, bytes] | None]] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.release.set()

    def transcribe_each(self, video: Path | None, audio: Path | None):
        self.seen.append(
            {"video": video and (video.name, video.read_bytes()), "audio": audio and (audio.name, audio.read_bytes())}
        )
        self.started.set()
        assert self.release.wait(20)
        if self.fail is not None:
            raise self.fail
        row = SimpleNamespace(
            rates="a4_v2",
            tokens=3.0,
            seconds={"decode": 0.01},
            confidence=0.5,
            text="hi",
            modalities=("video",),
            problems={},
            duration=1.0,
        )
        return [row], None


def test_an_upload_over_the_limit_is_refused_with_json_and_a_smaller_one_is_copied_in_chunks(monkeypatch) -> None:
    """A body over `max_upload_mb` is 413 JSON, whether it states its length or is chunked (no Content-Length);
    one under it reaches the decoder byte for byte, read a chunk at a time (never whole into memory)."""
    from starlette.datastructures import UploadFile
    from starlette.testclient import TestClient

    from mome.inference.serve import CHUNK, app

    fake = FakeRecognizer()
    client = TestClient(app(fake, max_upload_mb=3))
    big = client.post("/transcribe", files={"video": ("clip.mp4", b"x" * 3_100_000, "video/mp4")})
    assert big.status_code == 413 and "upload too large: over 3 MB" in big.json()["error"]
    body = (
        b"--b\r\nContent-Disposition: form-data; name=video; filename=c.mp4\r\n\r\n"
        + b"x" * 3_100_000
        + b"\r\n--b--\r\n"
    )
    chunked = client.post(
        "/transcribe",
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413 and "upload too large" in chunked.json()["error"]
    assert fake.seen == []
    sizes: list[int] = []
    read = UploadFile.read

    async def spy(self, size: int = -1) -> bytes:
        sizes.append(size)
        return await read(self, size)

    monkeypatch.setattr(UploadFile, "read", spy)
    data = bytes(range(256)) * 10_000  # 2.56 MB: spooled to disk by the parser, copied in chunks
    ok = client.post("/transcribe", files={"video": ("clip.mp4", data, "video/mp4")})
    assert ok.status_code == 200 and ok.json()["rows"][0]["text"] == "hi"
    assert fake.seen == [{"video": ("video.mp4", data), "audio": None}]
    assert sizes and all(0 < size <= CHUNK for size in sizes)


def test_a_full_queue_answers_503_with_json() -> None:
    """With `queue=0`, a request that arrives while a clip decodes is turned away at once (503, Retry-After),
    instead of waiting behind it; the first one still answers."""
    from starlette.testclient import TestClient

    from mome.inference.serve import app

    fake = FakeRecognizer()
    fake.release.clear()
    clip = {"audio": ("clip.wav", b"RIFF", "audio/wav")}
    with TestClient(app(fake, queue=0)) as client:
        first: list = []
        thread = threading.Thread(target=lambda: first.append(client.post("/transcribe", files=clip)))
        thread.start()
        assert fake.started.wait(20)
        busy = client.post("/transcribe", files=clip)
        fake.release.set()
        thread.join(timeout=20)
    assert busy.status_code == 503 and busy.json()["error"].startswith("busy: 1 requests ahead")
    assert busy.headers["retry-after"] == "5"
    assert first[0].status_code == 200 and len(fake.seen) == 1


def test_every_error_is_json() -> None:
    """A 300-character extension (once a plain-text 500 `File name too long`) is saved as `.bin` and decoded;
    a multipart body without a boundary, an unknown path, a wrong method and a crash in the decoder are JSON."""
    from starlette.testclient import TestClient

    from mome.inference.serve import app

    fake = FakeRecognizer()
    client = TestClient(app(fake))
    long_name = client.post("/transcribe", files={"video": ("clip." + "x" * 300, b"data", "video/mp4")})
    assert long_name.status_code == 200 and fake.seen[0]["video"] == ("video.bin", b"data")
    no_boundary = client.post("/transcribe", content=b"data", headers={"Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and no_boundary.json() == {"error": "Missing boundary in multipart."}
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    assert client.get("/transcribe").json() == {"error": "Method Not Allowed"}
    crash = TestClient(app(FakeRecognizer(fail=RuntimeError("boom\nsecond line"))), raise_server_exceptions=False)
    broken = crash.post("/transcribe", files={"audio": ("clip.wav", b"RIFF", "audio/wav")})
    assert broken.status_code == 500 and broken.json() == {"error": "RuntimeError: boom"}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--port", "99999"], "argument --port: expected a port number 1-65535; got 99999"),
        (["--port", "http"], "argument --port: expected a port number 1-65535; got 'http'"),
        (["--max-upload-mb", "0"], "argument --max-upload-mb: expected a positive size in MB; got 0"),
        (["--queue", "-1"], "argument --queue: expected a whole number >= 0; got -1"),
    ],
)
def test_bad_options_are_refused_while_parsing(option: list[str], message: str, capsys) -> None:
    from mome.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "no-such-run", *option])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"mome serve: error: {message}"


def test_a_port_in_use_is_one_line_before_the_model_loads(capsys) -> None:
    """The port is taken before the (slow) model load, so a busy one is said at once (the run here does not
    even exist)."""
    from mome.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "no-such-run", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"mome: error: port {port} on 127.0.0.1 is already in use (another mome serve?); pick one with --port\n"
    )

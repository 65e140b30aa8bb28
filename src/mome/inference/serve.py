"""`mome serve RUN`: a local web page to try a trained model.

Drop a clip (a raw video of a face or a 96x96 mouth crop, with its own audio track or a separate wav), or
record one with the browser's camera and microphone, and see the transcript at every rate combination with
its cost in LLM input tokens and decode time, and the combination the calibrated cascade answers with. One
Starlette app on uvicorn, bound to 127.0.0.1 by default; the model is loaded once (`mome.inference.api`).

    GET  /             the page (plain HTML and JavaScript, no outside resources)
    POST /transcribe   multipart `video` and/or `audio` -> JSON {modalities, problems, duration, rows, cascade}

Bounded: a request body over `max_upload_mb` is refused (413), uploads go to disk in chunks, one clip decodes
at a time with at most `queue` requests waiting (more get 503), and every error is JSON `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mome.errors import UserError

if TYPE_CHECKING:  # importing torch is left to the command's run, so that `mome serve --help` stays fast
    from mome.inference.api import Recognizer

DEFAULT_MAX_UPLOAD_MB = 100.0  # a 30 s phone video at 1080p fits; a larger request is refused unread
DEFAULT_QUEUE = 4  # requests that may wait while one clip decodes (each holds up to two copies of its upload)
CHUNK = 1 << 20  # bytes copied at a time from an upload to its file

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mome: __NAME__</title>
<style>
 body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222 }
 table { border-collapse: collapse; margin-top: 1em } td, th { border: 1px solid #ccc; padding: .3em .6em }
 tr.chosen { background: #e6f3e6 } #status { color: #666 } video { max-width: 20em; display: none }
</style></head><body>
<h1>mome: __NAME__</h1>
<p>Task <b>__TASK__</b>, rate combinations __COMBOS__. Give a video of a face (or a 96x96 mouth crop) with
its own audio track, and/or a separate wav; or record one.</p>
<p><label>video <input type="file" id="video" accept="video/*"></label>
   <label>audio (16 kHz wav) <input type="file" id="audio" accept=".wav,audio/wav"></label>
   <button id="go">Transcribe</button>
   <button id="record">Record 4 s</button></p>
<video id="preview" muted playsinline></video>
<p id="status"></p>
<table id="results"></table>
<script>
const status = document.getElementById("status");
async function send(form) {
  status.textContent = "transcribing ...";
  document.getElementById("results").innerHTML = "";
  let data;
  try {
    const response = await fetch("transcribe", {method: "POST", body: form});
    data = await response.json();
    if (!response.ok) { status.textContent = "error: " + data.error; return; }
  } catch (err) { status.textContent = "error: " + err; return; }
  const left = Object.entries(data.problems).map(([m, why]) => ` (${m} left out: ${why})`).join("");
  status.textContent = `used ${data.modalities.join(" + ")}${left}; clip ${data.duration.toFixed(2)} s` +
    (data.cascade ? `; the cascade answers with ${data.cascade}` : "");
  const table = document.getElementById("results");
  table.innerHTML = "<tr><th>rates</th><th>tokens/s</th><th>tokens</th><th>decode ms</th><th>confidence</th>" +
    "<th>transcript</th></tr>";
  for (const r of data.rows) {
    const tr = table.insertRow();
    tr.className = "row" + (r.rates === data.cascade ? " chosen" : "");
    tr.dataset.rates = r.rates;
    const cells = [r.rates, r.tokens_per_second.toFixed(1), r.tokens.toFixed(0), r.decode_ms.toFixed(0),
                   r.confidence.toFixed(3), r.text];
    cells.forEach((value, i) => { const td = tr.insertCell(); td.textContent = value; if (i === 5) td.className = "text"; });
  }
}
document.getElementById("go").onclick = () => {
  const form = new FormData();
  for (const id of ["video", "audio"]) {
    const file = document.getElementById(id).files[0];
    if (file) form.append(id, file);
  }
  send(form);
};
document.getElementById("record").onclick = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
  const preview = document.getElementById("preview");
  preview.srcObject = stream; preview.style.display = "block"; preview.play();
  const recorder = new MediaRecorder(stream), chunks = [];
  recorder.ondataavailable = e => chunks.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach(t => t.stop());
    const form = new FormData();
    form.append("video", new Blob(chunks, {type: recorder.mimeType}), "recording.webm");
    send(form);
  };
  status.textContent = "recording ...";
  recorder.start(); setTimeout(() => recorder.stop(), 4000);
};
</script></body></html>
"""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _TooLarge(Exception):
    """The request body passed the upload limit while it was being read."""


def _bounded(receive: Callable[[], Awaitable[dict]], limit: int) -> Callable[[], Awaitable[dict]]:
    """`receive` that raises `_TooLarge` once more than `limit` body bytes came in (chunked bodies included)."""
    seen = 0

    async def bounded() -> dict:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _TooLarge
        return message

    return bounded


def _suffix(filename: str | None) -> str:
    """The upload's extension if it is a plain short one (the decoder probes the content), else `.bin`."""
    suffix = Path(filename or "").suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else ".bin"


async def _save(upload: Any, path: Path) -> None:
    """Copy an upload to `path` a chunk at a time, never holding it whole in memory."""
    with path.open("wb") as out:
        while chunk := await upload.read(CHUNK):
            out.write(chunk)


def app(recognizer: Recognizer, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, queue: int = DEFAULT_QUEUE) -> Any:
    """The Starlette app around a loaded model (one request decodes at a time: the model is not re-entrant)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    page = (
        PAGE.replace("__NAME__", _escape(recognizer.cfg.name))
        .replace("__TASK__", recognizer.cfg.model.compression.task)
        .replace("__COMBOS__", ", ".join(recognizer.combinations))
    )
    limit = int(max_upload_mb * 1e6)
    lock = asyncio.Lock()
    pending = 0  # requests being read, waiting or decoding

    def error(message: str, status: int, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def transcribe(request: Request) -> JSONResponse:
        nonlocal pending
        if pending > queue:
            return error(f"busy: {pending} requests ahead of this one; try again shortly", 503, **{"Retry-After": "5"})
        if int(request.headers.get("content-length") or 0) > limit:
            return error(f"upload too large: over {max_upload_mb:g} MB (mome serve --max-upload-mb)", 413)
        pending += 1
        try:
            return await _transcribe(Request(request.scope, _bounded(request.receive, limit)))
        except _TooLarge:
            return error(f"upload too large: over {max_upload_mb:g} MB (mome serve --max-upload-mb)", 413)
        finally:
            pending -= 1

    async def _transcribe(request: Request) -> JSONResponse:
        async with request.form(max_files=2, max_fields=10) as form:
            with tempfile.TemporaryDirectory(prefix="mome-serve-") as folder:
                paths: dict[str, Path | None] = {}
                for field in ("video", "audio"):
                    upload = form.get(field)
                    if upload is None or isinstance(upload, str):
                        paths[field] = None
                        continue
                    paths[field] = Path(folder) / f"{field}{_suffix(upload.filename)}"
                    await _save(upload, paths[field])
                await form.close()  # the parser's spooled copies: gone before the (slow) decode
                if paths["video"] is None and paths["audio"] is None:
                    return error("give a video and/or an audio file", 400)
                try:
                    async with lock:
                        results, chosen = await asyncio.to_thread(
                            recognizer.transcribe_each, paths["video"], paths["audio"]
                        )
                except UserError as err:  # a clip the model cannot use: the one-line reason
                    return error(str(err).replace(folder + "/", ""), 422)
        first = results[0]
        rows = [
            {
                "rates": r.rates,
                "tokens_per_second": recognizer.tokens_per_second[r.rates],
                "tokens": r.tokens,
                "decode_ms": 1000 * r.seconds["decode"],
                "confidence": r.confidence,
                "text": r.text,
            }
            for r in results
        ]
        return JSONResponse(
            {
                "modalities": list(first.modalities),
                "problems": first.problems,
                "duration": first.duration,
                "rows": rows,
                "cascade": chosen,
            }
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:  # 400 bad multipart, 404, 405
        assert isinstance(exc, HTTPException)
        return error(str(exc.detail), exc.status_code)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:  # anything else: still JSON
        return error(f"{type(exc).__name__}: {exc}".splitlines()[0], 500)

    return Starlette(
        routes=[Route("/", index), Route("/transcribe", transcribe, methods=["POST"])],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error (port in use, unknown host) before the model loads."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise UserError(f"--host {host}: not an address of this machine ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use (another mome serve?); pick one with --port"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


def serve(
    recognizer: Recognizer,
    sock: socket.socket,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    queue: int = DEFAULT_QUEUE,
) -> None:
    """Serve the page on an already listening socket (see `listen`) until Ctrl-C."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    print(f"mome serve: http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app(recognizer, max_upload_mb, queue), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])

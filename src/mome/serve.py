"""`mome serve RUN`: a local web page to try a trained model.

Drop a clip (a raw video of a face or a 96x96 mouth crop, with its own audio track or a separate wav), or
record one with the browser's camera and microphone, and see the transcript at every rate combination with
its cost in LLM input tokens and decode time, and the combination the calibrated cascade answers with. One
Starlette app on uvicorn, bound to 127.0.0.1 by default; the model is loaded once (`mome.api`).

    GET  /             the page (plain HTML and JavaScript, no outside resources)
    POST /transcribe   multipart `video` and/or `audio` -> JSON {modalities, problems, duration, rows, cascade}
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from mome.api import Recognizer

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


def app(recognizer: Recognizer) -> Any:
    """The Starlette app around a loaded model (one request decodes at a time: the model is not re-entrant)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from mome.errors import UserError

    page = (PAGE.replace("__NAME__", _escape(recognizer.cfg.name))
            .replace("__TASK__", recognizer.cfg.model.compression.task)
            .replace("__COMBOS__", ", ".join(recognizer.combinations)))  # fmt: skip
    lock = asyncio.Lock()

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def transcribe(request: Request) -> JSONResponse:
        form = await request.form()
        with tempfile.TemporaryDirectory(prefix="mome-serve-") as folder:
            paths: dict[str, Path | None] = {}
            for field in ("video", "audio"):
                upload = form.get(field)
                if upload is None or isinstance(upload, str):
                    paths[field] = None
                    continue
                path = Path(folder) / f"{field}{Path(upload.filename or '').suffix or '.bin'}"
                path.write_bytes(await upload.read())
                paths[field] = path
            if paths["video"] is None and paths["audio"] is None:
                return JSONResponse({"error": "give a video and/or an audio file"}, status_code=400)
            try:
                async with lock:
                    results, chosen = await asyncio.to_thread(
                        recognizer.transcribe_each, paths["video"], paths["audio"]
                    )
            except UserError as err:  # a clip the model cannot use: the one-line reason
                return JSONResponse({"error": str(err).replace(folder + "/", "")}, status_code=422)
            except Exception as err:  # anything else: still an answer the page can show
                return JSONResponse({"error": f"{type(err).__name__}: {err}".splitlines()[0]}, status_code=500)
        first = results[0]
        rows = [{"rates": r.rates, "tokens_per_second": recognizer.tokens_per_second[r.rates], "tokens": r.tokens,
                 "decode_ms": 1000 * r.seconds["decode"], "confidence": r.confidence, "text": r.text}
                for r in results]  # fmt: skip
        return JSONResponse({"modalities": list(first.modalities), "problems": first.problems,
                             "duration": first.duration, "rows": rows, "cascade": chosen})  # fmt: skip

    return Starlette(routes=[Route("/", index), Route("/transcribe", transcribe, methods=["POST"])])


def serve(recognizer: Recognizer, host: str = "127.0.0.1", port: int = 7860) -> None:
    import uvicorn

    print(f"mome serve: http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app(recognizer), host=host, port=port, log_level="warning")

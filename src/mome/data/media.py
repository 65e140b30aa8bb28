"""Every decoder and encoder of media in mome: an utterance's `<stem>.mp4` (PyAV) and `<stem>.wav`
(soundfile), and ordinary recordings (`read_media`: frames resampled to 25 fps by timestamp, the audio track
resampled to 16 kHz mono; `read_audio_track`: the audio track alone).

Every failure raises `MediaError` whose message names the file and the reason (missing, empty, truncated,
undecodable, wrong sample rate), so that the dataset can log it and skip the item instead of crashing.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from mome.constants import FPS, SAMPLE_RATE
from mome.errors import UserError

X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:non-deterministic=0:mbtree=0"
"""libx264 settings that make the bitstream a function of the frames alone (see `write_video`)."""


class MediaError(UserError):
    """A media file cannot be used; the message is `<path>: <reason>`."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def check_file(path: Path) -> None:
    if not path.is_file():
        raise MediaError(path, "missing file")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file")


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = FPS,
    crf: int = 20,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Encode uint8 RGB frames [T, H, W, 3] as H.264 yuv420p mp4, byte-identical for identical frames.

    `audio` (float [S] in [-1, 1], mono) adds an AAC track, as a camera recording has (raw-video tests,
    `mome transcribe` on ordinary videos); the corpus itself keeps audio in its wav files.

    One encoder thread, so that the bitstream does not depend on thread scheduling, and no macroblock-tree
    rate control (`mbtree=0`): with it, x264's SIMD code made some encodes of identical input differ,
    even single-threaded (docs/experiments.md).
    `tests/data/test_media_determinism.py` checks this.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": X264_PARAMS}
        audio_stream = container.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)  # explicit timing: rate control depends on it
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)[None]  # [1, S]
            af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            af.sample_rate, af.pts = sample_rate, 0
            container.mux(audio_stream.encode(af))
            container.mux(audio_stream.encode(None))


def video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    """The first video stream of an open file, set to decode on one thread: every reader here runs one
    clip per process (loader workers, `prepare-lrs` workers), and FFmpeg's default of a thread per core
    oversubscribes the cores that the other processes need."""
    if not container.streams.video:
        raise MediaError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_count = 1
    return stream


def rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as uint8 RGB [H, W, 3], converted in this thread: swscale's own slice threads, started in
    a parent process, deadlock a DataLoader worker forked from it (seen as a hung test run)."""
    return frame.to_ndarray(format="rgb24", threads=1)


def read_video(path: str | Path) -> np.ndarray:
    """Decode all frames of an mp4 as uint8 RGB [T, H, W, 3]."""
    path = Path(path)
    check_file(path)
    try:
        with av.open(str(path)) as container:
            frames = [rgb(f) for f in container.decode(video_stream(container, path))]
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise MediaError(path, f"undecodable video ({type(err).__name__}: {err})") from err
    if not frames:
        raise MediaError(path, "no decodable video frames (truncated?)")
    return np.stack(frames)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM wav (what LRS3 preprocessing writes); float input in [-1, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 [S] in [-1, 1]; multi-channel files are averaged to mono (as auto_avsr does)."""
    path = Path(path)
    check_file(path)
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise MediaError(path, f"undecodable audio ({err})") from err
    if sr != sample_rate:
        raise MediaError(path, f"sample rate {sr} Hz, expected {sample_rate}")
    if audio.shape[0] == 0:
        raise MediaError(path, "no audio samples (truncated?)")
    return audio.mean(axis=1)


def _mono_resampler(sample_rate: int) -> av.AudioResampler:
    return av.AudioResampler(format="flt", layout="mono", rate=sample_rate)


def _resampled(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> list[np.ndarray]:
    """The mono float chunks one decoded frame gives (`None` flushes the resampler)."""
    return [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]


def read_audio_track(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The audio track of a media file as mono float32 [S] at `sample_rate`; `MediaError` if it has none."""
    path = Path(path)
    check_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(path, "no audio track")
            resampler = _mono_resampler(sample_rate)
            chunks = [c for frame in container.decode(audio=0) for c in _resampled(resampler, frame)]
            chunks += _resampled(resampler, None)  # flush
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise MediaError(path, f"undecodable audio track ({type(err).__name__}: {err})") from err
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MediaError(path, "empty audio track")
    return np.concatenate(chunks).astype(np.float32)


def header_seconds(path: str | Path) -> float | None:
    """A file's duration as its container header states it (the video stream's, else the file's), or None
    where it states none: read without decoding, so that an over-long recording is refused before its frames
    fill the memory."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / av.time_base
    except (av.error.FFmpegError, ValueError, OSError):
        pass  # the decoder says what is wrong with the file
    return None


def read_media(path: str | Path, need_audio: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 RGB frames [T, H, W, 3] at 25 fps, float32 mono audio [S] at 16 kHz or None) of a media file.

    Frames are picked by timestamp (the last frame shown at each 1/25 s tick), so a 30 fps or variable-rate
    recording becomes 25 fps with the right duration; a 25 fps file comes back frame for frame. Raises
    `MediaError` for a missing, empty or undecodable file, no video stream, or (with `need_audio`) no audio.
    """
    path = Path(path)
    check_file(path)
    frames, times, chunks = [], [], []
    try:
        with av.open(str(path)) as container:
            vstream = video_stream(container, path)
            if need_audio and not container.streams.audio:
                raise MediaError(path, "no audio track")
            streams = [vstream, *container.streams.audio[:1]]
            resampler = _mono_resampler(SAMPLE_RATE)
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        frames.append(rgb(frame))
                        times.append(frame.time)
                    else:
                        chunks += _resampled(resampler, frame)
            if len(streams) > 1:
                chunks += _resampled(resampler, None)
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise MediaError(path, f"undecodable ({type(err).__name__}: {err})") from err
    if not frames:
        raise MediaError(path, "no decodable video frames (truncated?)")
    video = np.stack(frames)
    if all(t is not None for t in times) and len(times) > 1:
        t = np.asarray(times, dtype=np.float64) - times[0]
        step = float(np.median(np.diff(t))) or 1 / FPS
        num = max(1, round((t[-1] + step) * FPS))
        pick = np.clip(np.searchsorted(t, np.arange(num) / FPS + 1e-4, side="right") - 1, 0, len(t) - 1)
        if num != len(video) or np.any(pick != np.arange(num)):
            video = video[pick]
    audio = None
    if chunks:
        audio = np.concatenate(chunks).astype(np.float32)
        if not len(audio):
            audio = None
    if need_audio and audio is None:
        raise MediaError(path, "empty audio track")
    return video, audio


def cut_or_pad(audio: np.ndarray, length: int) -> np.ndarray:
    """Truncate or zero-pad `audio` [S] to `length` samples (auto_avsr's `cut_or_pad`)."""
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))

"""A clip that lacks a usable modality: a unified (`task: any`) model falls back to the one that is there and
says so; a task-specific model stops with one line naming the problem. One test per way a modality fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mome.cli import main
from mome.config import load_config
from mome.data.media import MediaError, read_audio, read_video, write_video
from mome.errors import ClipTooLong
from mome.inference.inputs import combination_for, load_clip
from tiny import untrained_run

FAST = ["decode.num_beams=1", "decode.max_new_tokens=2", "data.num_workers=0"]


@pytest.fixture(scope="module")
def clip(corpus: Path) -> tuple[Path, Path]:
    """A corpus clip: a 96x96 mouth-crop mp4 without an audio track, and its wav."""
    mp4 = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    return mp4, mp4.with_suffix(".wav")


def test_no_audio_track(clip) -> None:
    mp4, _ = clip
    loaded = load_clip(mp4, None, "any", input_kind="crop")
    assert loaded.modalities == ("video",) and "audio" not in loaded.batch and "video" in loaded.batch
    assert "no audio track" in loaded.problems["audio"]
    with pytest.raises(MediaError, match=r"audio: no audio track .*\(this AVSR model needs audio and video"):
        load_clip(mp4, None, "avsr", input_kind="crop")
    with pytest.raises(MediaError, match="audio: no audio track"):
        load_clip(mp4, None, "asr", input_kind="crop")
    assert load_clip(mp4, None, "vsr", input_kind="crop").modalities == ("video",)


def test_silent_audio(clip, tmp_path) -> None:
    mp4, wav = clip
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(len(read_audio(wav)), np.float32), 16000)
    loaded = load_clip(mp4, silent, "any", input_kind="crop")
    assert loaded.modalities == ("video",) and "the audio is silent" in loaded.problems["audio"]
    with pytest.raises(MediaError, match="audio: the audio is silent"):
        load_clip(mp4, silent, "avsr", input_kind="crop")


def test_video_too_short(clip, tmp_path) -> None:
    mp4, wav = clip
    short = tmp_path / "short.mp4"
    write_video(short, read_video(mp4)[:5])
    loaded = load_clip(short, wav, "any", input_kind="crop")
    assert loaded.modalities == ("audio",) and "too short to read lips" in loaded.problems["video"]
    # the audio keeps its own length, not the 5 frames of the broken video
    assert loaded.batch["audio"].shape[-1] >= len(read_audio(wav)) - 640
    with pytest.raises(MediaError, match="video: the video is 5 frames long"):
        load_clip(short, wav, "vsr", input_kind="crop")


def test_no_video_stream_or_no_video(clip) -> None:
    _, wav = clip
    loaded = load_clip(wav, wav, "any", input_kind="crop")  # a wav given as the video: no video stream
    assert loaded.modalities == ("audio",) and loaded.problems["video"] == "no video stream"
    assert load_clip(None, wav, "any").modalities == ("audio",)
    with pytest.raises(MediaError, match="video: no video given"):
        load_clip(None, wav, "avsr")


def test_raw_video_without_a_face(clip, tmp_path) -> None:
    _, wav = clip
    wall = tmp_path / "wall.mp4"
    frames = np.full((30, 128, 128, 3), 90, np.uint8) + np.arange(30, dtype=np.uint8)[:, None, None, None]
    write_video(wall, frames)
    loaded = load_clip(wall, wav, "any")  # 128x128: a raw video, so face detection runs first
    assert loaded.modalities == ("audio",) and loaded.problems["video"] == "a face is found on only 0 of 30 frames"
    with pytest.raises(MediaError, match="video: a face is found on only 0 of 30 frames"):
        load_clip(wall, wav, "avsr")


def test_the_rates_follow_the_modalities_used() -> None:
    comp = load_config("tiny", ["model.compression.task=any"]).model.compression
    assert combination_for(comp, ("audio", "video"), (16, 5)) == (16, 5)
    assert combination_for(comp, ("audio",), (16, 5)) == (16, None)
    assert combination_for(comp, ("video",), None) == (None, 2)  # the finest video rate
    assert combination_for(comp, ("audio", "video"), (16, None)) == (16, None)  # audio only, as asked
    assert combination_for(comp, ("video",), (16, None)) == (None, 2)  # nothing left of the request
    avsr = load_config("tiny").model.compression
    assert combination_for(avsr, ("audio", "video"), None) == (4, 2)


def test_a_video_file_that_cannot_be_read_is_an_error_not_a_fallback(clip, tmp_path) -> None:
    _, wav = clip
    with pytest.raises(MediaError, match="missing file"):
        load_clip(tmp_path / "typo.mp4", wav, "any")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="undecodable"):
        load_clip(broken, wav, "any")


def test_an_audio_only_model_still_checks_the_audio_against_the_video(clip, tmp_path) -> None:
    mp4, wav = clip
    long = tmp_path / "long.wav"
    sf.write(str(long), np.tile(read_audio(wav), 4), 16000)
    with pytest.raises(MediaError, match="audio is .* frames long, video"):
        load_clip(mp4, long, "asr", input_kind="crop", tolerance=2)


def test_transcribe_says_which_modality_it_used(corpus: Path, clip, tmp_path, capsys) -> None:
    mp4, _ = clip
    unified = untrained_run(corpus, tmp_path / "unified", ["model.compression.task=any"])
    assert main(["transcribe", str(unified), "--video", str(mp4), "--rates", "16,5", *FAST]) == 0
    err = capsys.readouterr().err
    assert "used video (audio left out: no audio track" in err and "rates v5" in err, err
    avsr = untrained_run(corpus, tmp_path / "avsr")
    assert main(["transcribe", str(avsr), "--video", str(mp4), *FAST]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "audio: no audio track" in lines[0], lines


def _write_timed(path: Path, frames: np.ndarray, times: list[float]) -> None:
    """An mp4 whose frame i is shown at `times[i]` seconds (a 50 fps or variable-rate clip)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=100)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = Fraction(1, 100)
        for frame, t in zip(frames, times):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = round(t * 100), Fraction(1, 100)
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))


def test_a_50_fps_or_variable_rate_mouth_crop_is_retimed_to_25_fps(clip, tmp_path) -> None:
    mp4, _ = clip
    frames = read_video(mp4)
    doubled = tmp_path / "fifty.mp4"
    _write_timed(doubled, np.repeat(frames, 2, axis=0), [i / 50 for i in range(2 * len(frames))])
    loaded = load_clip(doubled, None, "vsr", input_kind="crop")
    assert loaded.batch["video"].shape[1] == len(frames)  # the clip's duration, not twice it
    # variable rate: the first half shown at 50 fps, the rest at 25 fps; 25 fps ticks pick by timestamp
    half = len(frames) // 2
    times = [i / 50 for i in range(2 * half)] + [half / 25 + i / 25 for i in range(len(frames) - half)]
    vfr = tmp_path / "vfr.mp4"
    _write_timed(vfr, np.concatenate([np.repeat(frames[:half], 2, axis=0), frames[half:]]), times)
    assert load_clip(vfr, None, "vsr", input_kind="auto").batch["video"].shape[1] == len(frames)


def test_one_rule_for_long_clips_audio_or_video(clip, tmp_path) -> None:
    mp4, wav = clip
    frames = read_video(mp4)
    long_video = tmp_path / "long.mp4"
    write_video(long_video, np.resize(frames, (31 * 25, *frames.shape[1:])))
    long_audio = tmp_path / "long.wav"
    sf.write(str(long_audio), np.resize(read_audio(wav), 31 * 16000), 16000)
    message = r"the clip is 31.0 s long, longer than the 30 s a model reads at once: cut it into shorter clips"
    with pytest.raises(ClipTooLong, match=rf"long.mp4: {message}"):
        load_clip(long_video, None, "vsr", input_kind="crop")
    with pytest.raises(ClipTooLong, match=rf"long.wav: {message}"):
        load_clip(None, long_audio, "asr")

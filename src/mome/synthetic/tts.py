"""Speech synthesis with phoneme timings from the two offline engines: flite and espeak-ng.

- flite (Debian `flite`, 4 English voices, 16 kHz): run as a subprocess; `-psdur` prints each ARPAbet
  phoneme with its end time. The Debian `kal` voice is 8 kHz, so `kal16` is used instead.
- espeak-ng (Debian `libespeak-ng1`, about 100 voice variants and several accents, 22.05 kHz): called in
  process through ctypes, because only the C API gives phoneme timings without MBROLA voices
  (`espeakINITIALIZE_PHONEME_EVENTS`). Its audio is resampled to 16 kHz with a polyphase filter.

Both return `Speech`: float32 mono audio at 16 kHz and `(phoneme, start_s, end_s)` tuples in the engine's
own phoneme alphabet (`visemes.py` maps both alphabets). Everything is deterministic for a given input.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from mome.constants import SAMPLE_RATE

FLITE_VOICES = ("kal16", "awb", "rms", "slt")
# Approximate mean f0 (Hz) of each flite voice; a speaker's pitch factor scales it.
FLITE_F0 = {"kal16": 105.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-us-nyc")
ESPEAK_VARIANTS = tuple([f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 5)] + ["klatt", "klatt2"])


_SILENCES = ("pau", "_", "_:", "_!", "_|")


class TTSError(RuntimeError):
    """The engine failed or produced no audio for a sentence."""


@dataclass
class Voice:
    engine: str
    """`flite` or `espeak`."""
    name: str
    """flite voice (`slt`) or espeak voice with variant (`en-us+m3`)."""
    rate: float = 1.0
    """Speaking-rate factor (> 1 is faster)."""
    pitch: float = 1.0
    """Pitch factor relative to the voice's default."""


@dataclass
class Speech:
    audio: np.ndarray
    """float32 [S] at 16 kHz."""
    phonemes: list[tuple[str, float, float]]
    """(phoneme, start seconds, end seconds), in order, covering the utterance."""


def synthesize(text: str, voice: Voice) -> Speech:
    """Speak `text` with `voice`; raises `TTSError` if the engine fails or returns silence."""
    speech = _flite(text, voice) if voice.engine == "flite" else _espeak(text, voice)
    if speech.audio.size == 0 or not np.any(speech.audio) or not speech.phonemes:
        raise TTSError(f"{voice.engine}:{voice.name} produced no speech for {text!r}")
    return _clip_trailing_silence(speech)


def _clip_trailing_silence(speech: Speech) -> Speech:
    """flite's diphone voices (kal16) report a final pause that runs past the end of the audio; clip
    silence to the audio, and leave any other overshoot for the caller to reject."""
    duration = len(speech.audio) / SAMPLE_RATE
    phonemes = list(speech.phonemes)
    while phonemes and phonemes[-1][0] in _SILENCES and phonemes[-1][2] > duration:
        name, start, _ = phonemes.pop()
        if start < duration:
            phonemes.append((name, start, duration))
            break
    return Speech(speech.audio, phonemes)


# ----------------------------------------------------------------------------------------------- flite
def _flite(text: str, voice: Voice) -> Speech:
    with tempfile.TemporaryDirectory(prefix="mome-flite-") as tmp:
        wav_path = os.path.join(tmp, "out.wav")
        cmd = [
            "flite",
            "-voice",
            voice.name,
            "-t",
            text,
            "-o",
            wav_path,
            "-psdur",
            "--setf",
            f"duration_stretch={1.0 / voice.rate:.4f}",
            "--setf",
            f"int_f0_target_mean={FLITE_F0.get(voice.name, 120.0) * voice.pitch:.2f}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(wav_path):
            raise TTSError(f"flite failed ({result.returncode}): {result.stderr.strip()[:200]}")
        audio, sr = sf.read(wav_path, dtype="float32")
    if sr != SAMPLE_RATE:
        raise TTSError(f"flite voice {voice.name} is {sr} Hz, expected {SAMPLE_RATE}")
    phonemes, start = [], 0.0
    for item in result.stdout.split():
        name, _, end = item.rpartition(":")
        phonemes.append((name, start, float(end)))
        start = float(end)
    return Speech(audio, phonemes)


# ---------------------------------------------------------------------------------------------- espeak
class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EVENT_PHONEME, _EVENT_END = 7, 0
_PARAM_RATE, _PARAM_PITCH = 1, 3


class _Espeak:
    """One libespeak-ng instance per process (the library keeps global state)."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError as err:
            raise TTSError(f"libespeak-ng.so.1 not found (apt-get install espeak-ng): {err}") from err
        # AUDIO_OUTPUT_SYNCHRONOUS = 2; espeakINITIALIZE_PHONEME_EVENTS = 1.
        self.sample_rate = self.lib.espeak_Initialize(2, 0, None, 1)
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_END:
            if events[i].type == _EVENT_PHONEME:
                self.events.append((events[i].id.string.decode(errors="replace"), events[i].sample))
            i += 1
        return 0

    def speak(self, text: str, voice: Voice) -> Speech:
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise TTSError(f"espeak-ng has no voice {voice.name!r}")
        self.lib.espeak_SetParameter(_PARAM_RATE, int(round(165 * voice.rate)), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(np.clip(round(50 * voice.pitch), 0, 99)), 0)
        self.chunks, self.events = [], []
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if not self.chunks:
            return Speech(np.zeros(0, np.float32), [])
        raw = np.concatenate(self.chunks).astype(np.float32) / 32768.0
        audio = resample_poly(raw, 320, 441).astype(np.float32)  # 22,050 -> 16,000 Hz
        duration = len(raw) / self.sample_rate
        starts = [(name, sample / self.sample_rate) for name, sample in self.events]
        phonemes = [
            (name, t, starts[i + 1][1] if i + 1 < len(starts) else duration) for i, (name, t) in enumerate(starts)
        ]
        if phonemes and phonemes[0][1] > 0:  # leading silence before the first phoneme event
            phonemes.insert(0, ("_", 0.0, phonemes[0][1]))
        return Speech(audio, [p for p in phonemes if p[2] > p[1]])


_ESPEAK: _Espeak | None = None


def _espeak(text: str, voice: Voice) -> Speech:
    """Synthesise in a forked child of a process whose espeak-ng has been initialised but never used.

    libespeak-ng carries wave-generator state from one utterance to the next (the same call twice gives
    a few samples' difference), so each utterance starts from the same pristine state instead; a fork
    costs a few milliseconds."""
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = _Espeak()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: synthesise, send the pickled result, exit without cleanup handlers
        os.close(read_fd)
        try:
            payload = pickle.dumps(_ESPEAK.speak(text, voice))
        except BaseException as err:  # noqa: BLE001 - sent to the parent and re-raised there
            payload = pickle.dumps(TTSError(f"espeak-ng failed: {err}"))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        raise TTSError(f"espeak-ng child process died on {text!r}")
    result = pickle.loads(data)
    if isinstance(result, Exception):
        raise result
    return result

"""Phonemes -> visemes -> per-frame mouth articulation, with co-articulation.

Both engines' alphabets (flite ARPAbet, espeak-ng mnemonics) map to one set of 12 viseme classes
(`VISEMES`). Diphthongs are split into two halves (`ay` = open then spread), so the mouth moves inside
a vowel as a real one does.

Co-articulation follows the dominance model of Cohen & Massaro (1993): every viseme pulls the articulators
towards its target with a weight (its dominance). Lip consonants (p b m, f v, w) dominate, while tongue
consonants (t, k) barely constrain the lips and take their shape from neighbouring vowels. The weighted
targets are smoothed with a Gaussian in time and the lips lead the sound by a few tens of milliseconds.

    phonemes (engine alphabet, start, end) -> viseme segments -> 200 Hz targets -> dominance-weighted
    Gaussian smoothing -> sampled at the 25 fps frame centres -> params [T, 9], labels [T]
"""

from __future__ import annotations

import numpy as np

from mome.constants import FPS

LEAD_S = 0.03
"""How far the lips move ahead of the sound (anticipatory co-articulation), in seconds."""
SMOOTH_S = 0.035
"""Standard deviation of the Gaussian co-articulation window, in seconds."""
VISEMES = (
    "sil",
    "pbm",
    "fv",
    "th",
    "alveolar",
    "velar",
    "postalveolar",
    "round_close",
    "round_open",
    "open",
    "mid",
    "spread",
)
PARAMS = ("open", "width", "round", "teeth", "tongue", "tuck", "press", "protrude", "lower")

# Target articulation per viseme (all in [0, 1]) and its dominance (how strongly it resists co-articulation):
#   open      jaw drop / inner opening          width     lip-corner spread
#   round     circular outline                  teeth     upper teeth shown
#   tongue    tongue shown (>0.3: its tip between the teeth, th)
#   tuck      lower lip under the upper teeth (f v)
#   press     lips pressed together: thin, rolled in, a dark seam, chin dimple (p b m)
#   protrude  lips pushed forward: fuller, a highlight on the lower lip and a shadow under it
#   lower     lower teeth shown (teeth close together: s z, sh ch, ee)
# The classes differ in more than one parameter, so each stays recognisable when co-articulation blends it.
_TARGETS = {
    #                open  width round teeth tongue tuck press protr lower
    "sil": ((0.03, 0.50, 0.10, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), 0.6),
    "pbm": ((0.00, 0.44, 0.10, 0.0, 0.0, 0.0, 1.0, 0.4, 0.0), 4.0),
    "fv": ((0.10, 0.52, 0.00, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0), 3.0),
    "th": ((0.24, 0.55, 0.00, 0.9, 1.0, 0.0, 0.0, 0.0, 0.3), 3.0),
    "alveolar": ((0.16, 0.58, 0.05, 0.8, 0.2, 0.0, 0.0, 0.0, 0.6), 0.5),
    "velar": ((0.38, 0.50, 0.05, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0), 0.4),
    "postalveolar": ((0.22, 0.34, 0.60, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0), 2.0),
    "round_close": ((0.10, 0.12, 1.00, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0), 2.0),
    "round_open": ((0.62, 0.30, 1.00, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0), 1.5),
    "open": ((1.00, 0.62, 0.00, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0), 1.0),
    "mid": ((0.50, 0.74, 0.00, 0.8, 0.1, 0.0, 0.0, 0.0, 0.0), 1.0),
    "spread": ((0.20, 1.00, 0.00, 1.0, 0.0, 0.0, 0.0, 0.0, 0.6), 1.0),
}
TARGETS = np.array([_TARGETS[v][0] for v in VISEMES], np.float32)  # [12, 9]
DOMINANCE = np.array([_TARGETS[v][1] for v in VISEMES], np.float32)  # [12]

_ARPABET = {
    **dict.fromkeys(["pau", "sil", "h#", ""], "sil"),
    **dict.fromkeys("p b m em".split(), "pbm"),
    **dict.fromkeys("f v".split(), "fv"),
    **dict.fromkeys("th dh".split(), "th"),
    **dict.fromkeys("t d n l s z dx el en".split(), "alveolar"),
    **dict.fromkeys("k g ng hh".split(), "velar"),
    **dict.fromkeys("sh zh ch jh".split(), "postalveolar"),
    **dict.fromkeys("w uw uh r".split(), "round_close"),
    **dict.fromkeys("ao".split(), "round_open"),
    **dict.fromkeys("aa ah ae".split(), "open"),
    **dict.fromkeys("eh er ax axr".split(), "mid"),
    **dict.fromkeys("iy ih y ix".split(), "spread"),
    # diphthongs: two visemes, each for half the phoneme
    "ay": ("open", "spread"),
    "aw": ("open", "round_close"),
    "ey": ("mid", "spread"),
    "ow": ("round_open", "round_close"),
    "oy": ("round_open", "spread"),
}

_ESPEAK_CONSONANTS = {
    "p": "pbm",
    "b": "pbm",
    "m": "pbm",
    "f": "fv",
    "v": "fv",
    "T": "th",
    "D": "th",
    "t": "alveolar",
    "d": "alveolar",
    "n": "alveolar",
    "l": "alveolar",
    "s": "alveolar",
    "z": "alveolar",
    "k": "velar",
    "g": "velar",
    "N": "velar",
    "h": "velar",
    "x": "velar",
    "?": "velar",
    "S": "postalveolar",
    "Z": "postalveolar",
    "tS": "postalveolar",
    "dZ": "postalveolar",
    "w": "round_close",
    "r": "round_close",
    "j": "spread",
}
_ESPEAK_VOWEL_START = {
    "a": "open",
    "A": "open",
    "V": "open",
    "@": "mid",
    "3": "mid",
    "E": "mid",
    "e": "mid",
    "I": "spread",
    "i": "spread",
    "O": "round_open",
    "o": "round_open",
    "0": "round_open",
    "u": "round_close",
    "U": "round_close",
}


def espeak_viseme(name: str) -> str | tuple[str, str]:
    """Viseme(s) of an espeak-ng phoneme mnemonic (`eI`, `a#`, `tS`, `_:` ...)."""
    if not name or name.startswith("_") or name.startswith(";"):
        return "sil"
    for key in (name[:2], name[:1]):
        if key in _ESPEAK_CONSONANTS:
            return _ESPEAK_CONSONANTS[key]
    first = _ESPEAK_VOWEL_START.get(name[0], "mid")
    # Diphthongs end in a second vowel letter: aI, aU, eI, oU, OI, i@, e@, U@ ...
    tail = name[1:].rstrip("#:0123456789/")
    if tail and tail[-1] in "IU@" and not (name[0] in "@3" and tail[-1] == "@"):
        second = {"I": "spread", "U": "round_close", "@": "mid"}[tail[-1]]
        if second != first:
            return first, second
    return first


def viseme_segments(phonemes: list[tuple[str, float, float]], engine: str) -> list[tuple[str, float, float]]:
    """Map (phoneme, start, end) of `engine` (`flite` or `espeak`) to (viseme, start, end)."""
    out = []
    for name, start, end in phonemes:
        v = _ARPABET.get(name, "mid") if engine == "flite" else espeak_viseme(name)
        if isinstance(v, tuple):
            mid = 0.5 * (start + end)
            out += [(v[0], start, mid), (v[1], mid, end)]
        else:
            out.append((v, start, end))
    return out


def frame_labels(
    segments: list[tuple[str, float, float]], num_frames: int, fps: int = FPS, lead_s: float = LEAD_S
) -> np.ndarray:
    """Viseme index the mouth shows at each frame: int64 [T] (for classifiers and the preview).

    That is the viseme active `lead_s` after the frame centre, since the lips lead the sound by as much
    (`articulation`); with `lead_s=0` it is the viseme of the audio at the frame centre.
    """
    centres = (np.arange(num_frames) + 0.5) / fps + lead_s
    labels = np.zeros(num_frames, np.int64)
    for v, start, end in segments:
        labels[(centres >= start) & (centres < end)] = VISEMES.index(v)
    return labels


def articulation(
    segments: list[tuple[str, float, float]],
    num_frames: int,
    fps: int = FPS,
    smooth_s: float = SMOOTH_S,
    lead_s: float = LEAD_S,
) -> np.ndarray:
    """Co-articulated mouth parameters at the frame centres: float32 [T, 9] (columns = `PARAMS`).

    Args:
        smooth_s: standard deviation of the Gaussian co-articulation window.
        lead_s: how far the lips move ahead of the sound (anticipatory co-articulation).
    """
    rate = 200  # Hz of the internal target grid
    n = int(np.ceil((num_frames / fps + 0.5) * rate))
    idx = np.zeros(n, np.int64)  # silence everywhere no phoneme covers
    t = np.arange(n) / rate + lead_s
    for v, start, end in segments:
        idx[(t >= start) & (t < end)] = VISEMES.index(v)
    weight = DOMINANCE[idx]  # [n]
    half = int(3 * smooth_s * rate)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / (smooth_s * rate)) ** 2)
    num = np.stack([np.convolve(TARGETS[idx, k] * weight, kernel, "same") for k in range(len(PARAMS))], 1)
    den = np.convolve(weight, kernel, "same")[:, None]
    smooth = num / den  # [n, 9]
    centres = ((np.arange(num_frames) + 0.5) / fps * rate).astype(np.int64)
    return smooth[np.clip(centres, 0, n - 1)].astype(np.float32)

"""Mouth-region renderer: articulation parameters -> 96x96 RGB frames, like the LRS3 preprocessed crops.

A frame is drawn at twice the output size and reduced with area averaging (anti-aliasing), then blurred and
given sensor noise. What varies per speaker (`Appearance`): skin tone, lip colour and thickness, mouth width,
scale and position in the crop, head-motion amplitude, lighting direction and strength, blur and noise level,
how far the jaw opens. What varies per frame: the nine articulation parameters (`visemes.PARAMS`) and a
smooth head motion. Each viseme class has cues of its own: p/b/m thin pressed lips with a dark seam and a
bunched chin; f/v the upper teeth on the lower lip; th the tongue tip between the teeth; sh/ch and the
rounded vowels protruded lips (a highlight on the lower lip, a shadow under it); open vowels a wide jaw drop.
The speech content is only in the lip shape, teeth and tongue, so a model must learn those, not pixels.

    nostrils                (move with the head)
    upper lip  ~~~v~~~      (cupid's bow, thickness per speaker)
    cavity     [teeth]      (opening, width and rounding from the articulation; teeth, lower teeth, tongue)
    lower lip  ~~~~~~~      (tucked under the teeth for f/v; pressed for p/b/m; pushed forward when rounded)
    chin crease             (moves down with the jaw, darker when the lips press)
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from mome.constants import FPS, MOUTH_CROP_SIZE

SIZE = MOUTH_CROP_SIZE
_UP = 2  # supersampling factor
_S = SIZE * _UP


@dataclass
class Appearance:
    skin: tuple[float, float, float]
    lip: tuple[float, float, float]
    lip_thickness: float
    mouth_width: float
    scale: float
    offset: tuple[float, float]
    head_motion: float
    light_angle: float
    light_strength: float
    blur: float
    noise: float
    jaw: float = 1.0
    """Articulation strength: how far this speaker opens the jaw (hypo- to hyper-articulation)."""

    def to_dict(self) -> dict:
        return asdict(self)


def random_appearance(rng: random.Random) -> Appearance:
    """A speaker's look; drawn once per speaker from the speaker's own seed."""
    tone = rng.uniform(0.25, 1.0)  # dark to light skin
    skin = (60 + 150 * tone * rng.uniform(0.9, 1.0), 45 + 140 * tone, 35 + 125 * tone * rng.uniform(0.85, 1.0))
    redness = rng.uniform(0.55, 0.9)
    lip = (skin[0] * redness + rng.uniform(10, 40), skin[1] * rng.uniform(0.45, 0.7), skin[2] * rng.uniform(0.5, 0.8))
    return Appearance(
        skin=tuple(round(c, 2) for c in skin),
        lip=tuple(round(c, 2) for c in lip),
        lip_thickness=rng.uniform(0.6, 1.4),
        mouth_width=rng.uniform(0.85, 1.15),
        scale=rng.uniform(0.85, 1.15),
        offset=(rng.uniform(-5, 5), rng.uniform(-4, 4)),
        head_motion=rng.uniform(0.3, 1.5),
        light_angle=rng.uniform(0, 2 * np.pi),
        light_strength=rng.uniform(0.0, 0.35),
        blur=rng.uniform(0.0, 1.2),
        noise=rng.uniform(1.0, 6.0),
        jaw=rng.uniform(0.8, 1.2),
    )


def _head_motion(num_frames: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth per-frame (dx, dy, angle) from a few random sinusoids: [T, 3]."""
    t = np.arange(num_frames)[:, None] / FPS
    freq = rng.uniform(0.2, 1.2, size=(1, 3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 3, 2))
    waves = np.sin(2 * np.pi * freq * t[..., None] + phase).sum(-1)  # [T, 3]
    return waves * amplitude * np.array([1.5, 1.0, 0.03])


def _lighting(app: Appearance) -> np.ndarray:
    y, x = np.mgrid[0:_S, 0:_S] / _S - 0.5
    ramp = np.cos(app.light_angle) * x + np.sin(app.light_angle) * y
    return (1.0 + app.light_strength * 2 * ramp)[..., None].astype(np.float32)  # [S, S, 1]


def _transform(points: np.ndarray, centre: np.ndarray, angle: float, shift: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rel = points - centre
    return np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1) + centre + shift


def _poly(img: np.ndarray, pts: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [np.round(pts * 8).astype(np.int32)], colour, lineType=cv2.LINE_AA, shift=3)


def _draw_frame(p: np.ndarray, app: Appearance, motion: np.ndarray, base: np.ndarray) -> np.ndarray:
    opening, width, rnd, teeth, tongue, tuck, press, protrude, lower = p
    k = 1.2 * _UP * app.scale
    centre = np.array([_S / 2 + app.offset[0] * _UP, _S / 2 + 6 * _UP + app.offset[1] * _UP])
    shift, angle = motion[:2] * _UP, motion[2]
    img = base.copy()
    skin, lip = np.array(app.skin), np.array(app.lip)
    half_w = k * app.mouth_width * (17 + 13 * width - 7 * rnd - 2 * protrude)  # corner-to-centre distance
    gap = k * 18 * opening * app.jaw  # inner opening height (the jaw drop)
    # Pressed lips (p b m) roll in and thin out; protruded lips (rounded, sh) get fuller.
    fuller = 3 * rnd + 2.5 * protrude - 2.8 * press
    thick_u = k * app.lip_thickness * max(1.0, 4 + fuller)
    thick_l = k * app.lip_thickness * max(1.2, 5.5 + fuller - 2.5 * tuck)
    x = np.linspace(-1, 1, 41)
    # Rounding makes the outline more circular (higher exponent = fuller sides).
    prof = (1 - np.abs(x) ** (2 + 2 * rnd)) ** (0.5 + 0.3 * rnd)
    inner_u = np.stack([x * half_w * (0.92 - 0.1 * rnd), -0.5 * gap * prof], 1)
    inner_l = np.stack([x * half_w * (0.92 - 0.1 * rnd), 0.5 * gap * prof + 0.2 * k * tuck], 1)
    bow = 1 - 0.35 * np.exp(-((x / 0.12) ** 2))  # cupid's bow dip
    outer_u = np.stack([x * half_w, -0.5 * gap * prof - thick_u * prof**0.6 * bow], 1)
    outer_l = np.stack([x * half_w, 0.5 * gap * prof + thick_l * prof**0.6], 1)
    T = lambda a: _transform(a + centre, centre, angle, shift)  # noqa: E731
    # The chin crease follows the jaw; pressing the lips bunches the chin (a darker, higher crease).
    chin_y = 0.5 * gap + thick_l + k * (9 - 3 * press)
    chin = np.stack([x * half_w * 0.7, chin_y + k * 2.5 * (1 - x**2)], 1)
    cv2.polylines(
        img,
        [np.round(T(chin) * 8).astype(np.int32)],
        False,
        tuple(skin * (0.78 - 0.18 * press)),
        int(round((3 + 2 * press) * _UP)),
        cv2.LINE_AA,
        shift=3,
    )
    for side in (-1, 1):
        nose = T(np.array([[side * k * 9, -k * 30]]))[0]
        cv2.ellipse(
            img,
            tuple(np.round(nose).astype(int)),
            (int(4 * k), int(2.5 * k)),
            np.degrees(angle),
            0,
            360,
            tuple(skin * 0.45),
            -1,
            cv2.LINE_AA,
        )
    if protrude > 0.1:  # forward lips cast a shadow on the skin below them
        shadow = np.stack([x * half_w * 0.8, 0.5 * gap * prof + thick_l * prof**0.6 + k * 2.5 * protrude], 1)
        _poly(img, T(np.concatenate([outer_l, shadow[::-1]])), tuple(skin * (1 - 0.3 * protrude)))
    _poly(img, T(np.concatenate([outer_u, outer_l[::-1]])), tuple(lip * (1 - 0.15 * press)))
    _poly(img, T(np.concatenate([outer_u, inner_u[::-1]])), tuple(lip * (0.92 - 0.1 * press)))  # upper lip shade
    if protrude > 0.1:  # ... and catch the light on the lower lip
        glint = np.stack([x * half_w * 0.45, 0.5 * gap * prof + thick_l * (0.35 + 0.25 * (1 - np.abs(x)))], 1)
        top = np.stack([x * half_w * 0.45, 0.5 * gap * prof + thick_l * 0.3], 1)
        _poly(img, T(np.concatenate([top, glint[::-1]])), tuple(np.minimum(255, lip * (1 + 0.35 * protrude))))
    if press > 0.3:  # the pressed seam: a dark straight line between the lips
        seam = np.stack([x * half_w * 0.85, 0 * x], 1)
        cv2.polylines(
            img,
            [np.round(T(seam) * 8).astype(np.int32)],
            False,
            tuple(lip * 0.45),
            int(round(1.5 * _UP * press)),
            cv2.LINE_AA,
            shift=3,
        )
    if gap > 0.6 * _UP or teeth * tuck > 0.3:
        cavity = T(np.concatenate([inner_u, inner_l[::-1]]))
        _poly(img, cavity, (35, 18, 20))
        mask = np.zeros(img.shape[:2], np.uint8)
        _poly(mask, cavity, 255)
        layer = img.copy()
        teeth_h = k * 4.5 * teeth
        if teeth_h > 0.5:
            top = np.stack([x * half_w * 0.6, -0.5 * gap * prof - 1], 1)
            bottom = np.stack([x * half_w * 0.6, -0.5 * gap * prof + teeth_h], 1)
            _poly(layer, T(np.concatenate([top, bottom[::-1]])), (225, 220, 205))
        if lower * teeth > 0.1:  # lower teeth, close under the upper ones
            low_h = k * 3.5 * lower * teeth
            top = np.stack([x * half_w * 0.5, 0.5 * gap * prof - low_h], 1)
            bottom = np.stack([x * half_w * 0.5, 0.5 * gap * prof + 1], 1)
            _poly(layer, T(np.concatenate([top, bottom[::-1]])), (205, 200, 188))
        if 0.1 < tongue <= 0.3:  # tongue body at the floor of the mouth
            tip = T(np.array([[0.0, 0.5 * gap - k * 3 * tongue]]))[0]
            cv2.ellipse(
                layer,
                tuple(np.round(tip).astype(int)),
                (int(half_w * 0.45), int(k * 4 * tongue + 1)),
                np.degrees(angle),
                0,
                360,
                (190, 80, 90),
                -1,
                cv2.LINE_AA,
            )
        np.copyto(img, layer, where=mask[..., None] > 0)
        if tuck > 0.3:  # f/v: the upper teeth rest on the lower lip, outside the cavity
            strip = np.stack([x * half_w * 0.45, 0.5 * gap * prof + k * 2.5 * tuck], 1)
            top = np.stack([x * half_w * 0.45, -0.5 * gap * prof], 1)
            _poly(img, T(np.concatenate([top, strip[::-1]])), (225, 220, 205))
    if tongue > 0.3:  # th: the tongue tip pokes out between the teeth, over the lower lip
        s = (tongue - 0.3) / 0.7
        tip = T(np.array([[0.0, 0.5 * gap + k * 1.5 * s]]))[0]
        cv2.ellipse(
            img,
            tuple(np.round(tip).astype(int)),
            (int(half_w * 0.38 * s + 1), int(k * 3.5 * s + 1)),
            np.degrees(angle),
            0,
            360,
            (205, 95, 105),
            -1,
            cv2.LINE_AA,
        )
    return img


def render_clip(params: np.ndarray, app: Appearance, seed: int) -> np.ndarray:
    """Frames for articulation `params` [T, 9]: uint8 [T, 96, 96, 3] (RGB). Deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    motion = _head_motion(len(params), app.head_motion, rng)
    base = np.empty((_S, _S, 3), np.float32)
    base[:] = app.skin
    frames = np.empty((len(params), SIZE, SIZE, 3), np.uint8)
    light = _lighting(app)
    for i, p in enumerate(params):
        img = _draw_frame(p, app, motion[i], base)
        img = cv2.resize(img * light, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        if app.blur > 0.2:
            img = cv2.GaussianBlur(img, (0, 0), app.blur)
        img += rng.normal(0.0, app.noise, img.shape).astype(np.float32)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames

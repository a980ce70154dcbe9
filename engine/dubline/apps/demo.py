"""Inputs for ``dubline demo``: a talking clip and a dub, made offline from public-domain material.

The face is scikit-image's astronaut photograph (``skimage.data.astronaut()``: NASA portrait of
Eileen Collins, public domain), which installs with scikit-image. It is animated into a short
talking clip: the 68 landmarks are found once with dlib's embedded models, and every frame the
jaw and lower lip are lowered to follow the openness of the clip's own synthesised speech (the
landmark warp of ``backends.retrieval.transfer``); where the lips part an inner mouth is painted
(the photo's own upper teeth, a dark red cavity, a hint of tongue), so a 68-point landmark
detector measures a real opening. Slow head drift, a tiny roll and sensor noise keep it from
looking like a frozen still.

The speech is our own formant synthesis (no TTS engine): a glottal pulse train with a falling,
accented F0 contour and jitter, through a cascade of time-varying formant resonators (Klatt's
resonator form) for the vowels a e i o u, with stop closures and bursts, fricative and nasal
consonants between the vowels and pauses between phrases. The openness of the mouth at each
instant is part of the same score, so the clip's mouth follows its own syllables. The dub uses
another seed and tempo, so its rhythm differs from the clip's.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import opentimelineio as otio
from scipy import signal

from dubline.core import landmarks as lm
from dubline.core.errors import InvalidInputError, NoFaceError
from dubline.core.progress import ProgressSink, no_progress
from dubline.core.timing import frames_to_range, parse_rate, seconds_to_frame
from dubline.stages.backends.retrieval.transfer import TransferParams, transfer_mouth
from dubline.stages.speech.targets import frame_centres

#: Sample rate of the synthesised speech (the analysis stages' own rate, so no resampling).
SPEECH_RATE = 16000
#: Output frame size (even, so 4:2:0 video codecs take it as is).
FRAME_SIZE = 512
#: Region of the 512x512 photograph that becomes the frame: head and shoulders, scaled 2x.
_PHOTO_CROP = (97, 8, 256)  # x0, y0, side

# Formants (Hz) of a female voice (Peterson & Barney style values, rounded) and the jaw opening
# each vowel needs, on the same 0..1 scale as dubline.stages.speech.visemes (a ~ AA, e ~ EH, i ~ IY,
# o ~ AO, u ~ UW).
_VOWELS: dict[str, tuple[tuple[float, float, float, float], float]] = {
    "a": ((850.0, 1220.0, 2810.0, 3800.0), 1.0),
    "e": ((600.0, 2300.0, 2900.0, 3900.0), 0.55),
    "i": ((330.0, 2750.0, 3300.0, 4000.0), 0.2),
    "o": ((560.0, 950.0, 2700.0, 3800.0), 0.75),
    "u": ((380.0, 900.0, 2650.0, 3700.0), 0.25),
}
_BANDWIDTHS = np.array([90.0, 110.0, 170.0, 250.0])
_NEUTRAL_FORMANTS = (500.0, 1500.0, 2500.0, 3500.0)
_NASAL_FORMANTS = (280.0, 1300.0, 2600.0, 3500.0)


@dataclass(frozen=True)
class _Consonant:
    kind: str  # "stop", "fricative" or "nasal"
    voiced: bool
    openness: float  # mouth opening while it is articulated (0 = lips shut)
    noise_band: tuple[float, float]  # Hz: band of the burst or frication noise


_CONSONANTS: dict[str, _Consonant] = {
    "p": _Consonant("stop", False, 0.0, (400.0, 2500.0)),
    "b": _Consonant("stop", True, 0.0, (400.0, 2500.0)),
    "t": _Consonant("stop", False, 0.15, (3000.0, 7000.0)),
    "d": _Consonant("stop", True, 0.15, (3000.0, 7000.0)),
    "k": _Consonant("stop", False, 0.25, (1500.0, 3500.0)),
    "g": _Consonant("stop", True, 0.25, (1500.0, 3500.0)),
    "m": _Consonant("nasal", True, 0.0, (0.0, 0.0)),
    "n": _Consonant("nasal", True, 0.15, (0.0, 0.0)),
    "s": _Consonant("fricative", False, 0.15, (4000.0, 7600.0)),
    "f": _Consonant("fricative", False, 0.05, (1500.0, 7600.0)),
    "sh": _Consonant("fricative", False, 0.2, (2000.0, 5500.0)),
}


@dataclass(frozen=True)
class Syllable:
    """One consonant-vowel syllable of the score (seconds from the start of the track)."""

    consonant: str
    vowel: str
    start_s: float
    vowel_start_s: float
    end_s: float


@dataclass(frozen=True)
class SpeechScore:
    """What the synthesiser was asked to say: syllables grouped into phrases, with pauses between."""

    syllables: list[Syllable]
    phrases: list[tuple[float, float]]  # (start, end) seconds of each run of syllables
    duration_s: float


@dataclass(frozen=True)
class SynthesisedSpeech:
    """A speech-like track and the mouth opening it implies, sample for sample."""

    samples: np.ndarray  # float32 mono at ``sample_rate``
    sample_rate: int
    openness: np.ndarray  # float32 0..1 per sample: jaw opening the score asks for
    score: SpeechScore

    def openness_at(self, times_s: np.ndarray) -> np.ndarray:
        """Mouth openness at the given times (e.g. frame centres), linearly interpolated."""
        positions = np.arange(self.openness.shape[0]) / self.sample_rate
        return np.interp(times_s, positions, self.openness).astype(np.float32)


@dataclass(frozen=True)
class DemoInputs:
    """Files for a demo render: the talking clip, the dub, the span to patch, and a description."""

    video: Path
    dub: Path
    span: otio.opentime.TimeRange
    notes: str


# --- speech -----------------------------------------------------------------------------------


def compose_score(duration_s: float, rng: np.random.Generator, tempo: float = 1.0) -> SpeechScore:
    """A random score of CV syllables in phrases of 3-6, filling ``duration_s`` with pauses.

    ``tempo`` > 1 speaks faster (shorter vowels and consonants).
    """
    syllables: list[Syllable] = []
    phrases: list[tuple[float, float]] = []
    consonants = list(_CONSONANTS)
    vowels = list(_VOWELS)
    t = 0.2 + 0.1 * rng.random()
    end_limit = duration_s - 0.15
    while t < end_limit - 0.3:
        phrase_start = t
        for _ in range(int(rng.integers(3, 7))):
            consonant = consonants[int(rng.integers(len(consonants)))]
            kind = _CONSONANTS[consonant].kind
            consonant_s = {"stop": 0.07, "fricative": 0.09, "nasal": 0.065}[kind] * rng.uniform(0.85, 1.2) / tempo
            vowel_s = rng.uniform(0.1, 0.2) / tempo
            if t + consonant_s + vowel_s > end_limit:
                break
            syllables.append(Syllable(consonant, vowels[int(rng.integers(len(vowels)))], t, t + consonant_s, t + consonant_s + vowel_s))
            t += consonant_s + vowel_s
        if t > phrase_start:
            phrases.append((phrase_start, t))
        t += rng.uniform(0.28, 0.5)
    return SpeechScore(syllables, phrases, duration_s)


def _smooth(values: np.ndarray, seconds: float) -> np.ndarray:
    """Moving average over ``seconds`` (edges held), for control tracks."""
    width = max(int(seconds * SPEECH_RATE) | 1, 1)
    padded = np.pad(values, ((width // 2, width // 2),) + ((0, 0),) * (values.ndim - 1), mode="edge")
    kernel = np.ones(width) / width
    if values.ndim == 1:
        return np.convolve(padded, kernel, mode="valid")
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(values.shape[1])], axis=1)


def _pitch_track(score: SpeechScore, n: int, rng: np.random.Generator) -> np.ndarray:
    """F0 (Hz) per sample: per-phrase declination, rise-falls on about a third of the syllables,
    and a slow wander of up to 1.5 %."""
    times = np.arange(n) / SPEECH_RATE
    base = 205.0 * rng.uniform(0.95, 1.05)
    f0 = np.full(n, base)
    for start, end in score.phrases:
        inside = (times >= start) & (times < end)
        progress = (times[inside] - start) / max(end - start, 1e-3)
        f0[inside] = base * (1.12 - 0.22 * progress)  # a falling statement contour
    for syllable in score.syllables:
        if rng.random() < 0.35:  # accented syllables get a pitch rise-fall
            centre = (syllable.vowel_start_s + syllable.end_s) / 2
            f0 *= 1 + 0.1 * np.exp(-(((times - centre) / 0.06) ** 2))
    wander = _smooth(rng.standard_normal(n), 0.08)
    return f0 * (1 + 0.015 * wander / max(np.abs(wander).max(), 1e-9))


def _glottal_source(f0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pulse train at ``f0`` with jitter and shimmer, shaped like glottal flow (Klatt's glottal
    low-pass: -12 dB/octave), plus pitch-synchronous aspiration noise."""
    n = f0.shape[0]
    pulses = np.zeros(n)
    position = 0.0
    while position < n:
        index = int(position)
        pulses[index] = 1.0 + 0.06 * rng.standard_normal()  # shimmer
        position += SPEECH_RATE / f0[index] * (1.0 + 0.012 * rng.standard_normal())  # jitter
    pole = np.exp(-np.pi * 220.0 / SPEECH_RATE)
    flow = signal.lfilter([1.0], [1.0, -2 * pole, pole * pole], pulses)
    flow -= _smooth(flow, 0.02)  # no DC: the radiation difference below would make it a click
    breath = signal.lfilter([1.0], [1.0, -0.7], rng.standard_normal(n)) * 0.04 * np.abs(flow).max()
    return flow + breath


def _formant_filter(excitation: np.ndarray, formants: np.ndarray, block: int = 80) -> np.ndarray:
    """Cascade of four Klatt resonators whose frequencies follow ``formants`` (n, 4), updated
    every ``block`` samples (5 ms) with the filter state carried across blocks."""
    n = excitation.shape[0]
    out = np.empty(n)
    state = np.zeros((4, 2))
    radius = np.exp(-np.pi * _BANDWIDTHS / SPEECH_RATE)
    c = -(radius**2)
    for start in range(0, n, block):
        centre = formants[min(start + block // 2, n - 1)]
        b = 2 * radius * np.cos(2 * np.pi * centre / SPEECH_RATE)
        a = 1 - b - c  # unit gain at DC
        sos = np.zeros((4, 6))
        sos[:, 0], sos[:, 3], sos[:, 4], sos[:, 5] = a, 1.0, -b, -c
        out[start : start + block], state = signal.sosfilt(sos, excitation[start : start + block], zi=state)
    return out


def _noise_burst(length: int, band: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    low, high = band
    sos = signal.butter(4, [low, min(high, SPEECH_RATE / 2 - 200)], btype="bandpass", fs=SPEECH_RATE, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(length))


def synthesise_speech(seconds: float, seed: int = 0, tempo: float = 1.0) -> SynthesisedSpeech:
    """A speech-like mono track of ``seconds`` at 16 kHz, with the mouth openness it implies."""
    if not seconds > 0:
        raise InvalidInputError(f"speech length must be positive, got {seconds} s")
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SPEECH_RATE))
    score = compose_score(seconds, rng, tempo)

    def span(start_s: float, end_s: float) -> slice:
        return slice(int(start_s * SPEECH_RATE), min(int(end_s * SPEECH_RATE), n))

    voicing = np.zeros(n)  # amplitude of the glottal source
    formants = np.tile(np.array(_NEUTRAL_FORMANTS), (n, 1))
    openness = np.zeros(n)
    noise = np.zeros(n)
    for syllable in score.syllables:
        consonant = _CONSONANTS[syllable.consonant]
        vowel_formants, vowel_openness = _VOWELS[syllable.vowel]
        onset, nucleus = span(syllable.start_s, syllable.vowel_start_s), span(syllable.vowel_start_s, syllable.end_s)
        onset_length = onset.stop - onset.start
        formants[nucleus] = vowel_formants
        openness[nucleus] = vowel_openness
        openness[onset] = consonant.openness
        # Consonant loci: F1 low (constriction), F2/F3 halfway to the vowel's.
        formants[onset] = [300.0] + [(v + neutral) / 2 for v, neutral in zip(vowel_formants[1:], _NEUTRAL_FORMANTS[1:])]
        level = rng.uniform(0.8, 1.0)
        vowel_length = nucleus.stop - nucleus.start
        # Vowel loudness: quick rise, slow fall (a syllable's energy arc).
        arc = np.sin(np.pi * np.linspace(0.0, 1.0, vowel_length) ** 0.7) ** 0.4
        voicing[nucleus] = level * arc
        if consonant.kind == "nasal":
            formants[onset] = _NASAL_FORMANTS
            voicing[onset] = 0.22 * level
        elif consonant.kind == "stop":
            burst = min(int(0.015 * SPEECH_RATE), onset_length // 3)
            if consonant.voiced:
                voicing[onset.start : onset.stop - burst] = 0.05 * level  # voice bar under the closure
            decay = np.exp(-np.linspace(0.0, 4.0, burst))
            noise[onset.stop - burst : onset.stop] += 0.35 * level * decay * _noise_burst(burst, consonant.noise_band, rng)
        else:
            envelope = np.sin(np.pi * np.linspace(0.0, 1.0, onset_length)) ** 0.5
            noise[onset] += 0.12 * level * envelope * _noise_burst(onset_length, consonant.noise_band, rng)
    # Articulators glide: formants over ~40 ms, the jaw over ~60 ms, voicing on/offsets ~10 ms.
    formants = _smooth(formants, 0.04)
    openness = np.clip(_smooth(openness, 0.06), 0.0, 1.0)
    voicing = _smooth(voicing, 0.01)

    f0 = _pitch_track(score, n, rng)
    voiced = _formant_filter(_glottal_source(f0, rng) * voicing, formants)
    radiated = np.diff(voiced, prepend=0.0)  # lip radiation: +6 dB/octave
    radiated /= max(np.abs(radiated).max(), 1e-9)
    track = radiated + noise
    track = 0.6 * track / max(np.abs(track).max(), 1e-9)
    track += 0.0015 * rng.standard_normal(n)  # room noise floor, about -56 dBFS
    return SynthesisedSpeech(track.astype(np.float32), SPEECH_RATE, openness.astype(np.float32), score)


# --- face --------------------------------------------------------------------------------------

#: Inner-lip aperture (in inter-ocular distances) at openness 0 and 1. The photograph smiles with
#: its upper teeth showing (aperture ~0.16): openness 0 brings the lower lip up over the teeth,
#: openness 1 drops the jaw to a wide "a".
_APERTURE_CLOSED = 0.13
_APERTURE_OPEN = 0.38
_MOUTH_WARP = TransferParams(max_opening_change=0.4, min_aperture_to_stretch=0.0, warp_sigma=0.3)


@dataclass(frozen=True)
class _Portrait:
    image: np.ndarray  # the photograph, RGB uint8
    landmarks: np.ndarray  # (68, 2) in photograph pixels
    crop: tuple[int, int, int]  # x0, y0, side of the square that becomes the frame


def _photo_landmarks(image: np.ndarray, crop: tuple[int, int, int]) -> np.ndarray:
    """The 68 landmarks of the largest face inside ``crop``, from the face-track stage's detector.

    The whole photograph also holds a face-like mission patch on the suit; detecting in the crop
    keeps the detector on the astronaut.
    """
    from dubline.stages.faces.detect import detect_frame
    from dubline.stages.faces.types import FaceTrackParams

    x0, y0, side = crop
    # The face is ~90 px wide in the photograph: upsample once so HOG's 80 px window finds it surely.
    faces = detect_frame(image[y0 : y0 + side, x0 : x0 + side], FaceTrackParams(detect_upsample=1))
    if not faces:
        raise NoFaceError("demo: no face found in the astronaut photograph (skimage.data.astronaut)")
    return faces[0].landmarks.astype(np.float64) + np.array([x0, y0], np.float64)


def _load_portrait() -> _Portrait:
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[..., :3])
    return _Portrait(image, _photo_landmarks(image, _PHOTO_CROP), _PHOTO_CROP)


def _inner_mouth(shape: tuple[int, int], polygon: np.ndarray, openness: float) -> np.ndarray:
    """RGB float image of a mouth cavity filling ``polygon``: dark red, darkest under the upper
    teeth and towards the corners, with the tongue's back lit near the lower lip when open."""
    height, width = shape
    top, bottom = polygon[:, 1].min(), polygon[:, 1].max()
    left, right = polygon[:, 0].min(), polygon[:, 0].max()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = np.clip((ys - top) / max(bottom - top, 1.0), 0.0, 1.0)  # 0 at the teeth, 1 at the lower lip
    across = np.clip(np.abs(xs - (left + right) / 2) / max((right - left) / 2, 1.0), 0.0, 1.0)
    cavity = np.array([34.0, 9.0, 7.0]) + np.array([66.0, 20.0, 14.0]) * depth[..., None] ** 1.5
    cavity *= (1.0 - 0.6 * across**2)[..., None]
    tongue = np.exp(-(((ys - bottom) / (0.35 * (bottom - top) + 1.0)) ** 2) - (((xs - (left + right) / 2) / (0.3 * (right - left) + 1.0)) ** 2))
    tongue_colour = np.array([160.0, 66.0, 58.0])
    weight = (0.55 * min(max(openness, 0.0), 1.0) * tongue)[..., None]
    return cavity * (1.0 - weight) + tongue_colour * weight


def _lip_outline(inner_lip: np.ndarray, samples: int = 24) -> np.ndarray:
    """A rounded outline through the 8 inner-lip points: the upper (60..64) and lower (64..67, 60)
    edges each as a monotone cubic in x, so the opening is a curved mouth, not an octagon."""
    from scipy.interpolate import PchipInterpolator

    edges = []
    for chain in (inner_lip[[0, 1, 2, 3, 4]], inner_lip[[4, 5, 6, 7, 0]]):
        xs, order = np.unique(chain[:, 0], return_index=True)  # PCHIP needs strictly rising x
        if xs.shape[0] < 2:
            return inner_lip
        along = np.linspace(xs[0], xs[-1], samples)
        edge = np.stack([along, PchipInterpolator(xs, chain[order, 1])(along)], axis=1)
        edges.append(edge if chain[0, 0] <= chain[-1, 0] else edge[::-1])
    return np.vstack(edges)


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray, blur: float) -> np.ndarray:
    """Anti-aliased float mask of ``polygon`` (sub-pixel vertices), softened by ``blur`` pixels."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    mask = mask.astype(np.float32) / 255.0
    return cv2.GaussianBlur(mask, (0, 0), blur) if blur > 0 else mask


def _talking_photo(portrait: _Portrait, openness: float) -> np.ndarray:
    """The photograph with the mouth opened to ``openness`` (0..1): jaw and lower lip lowered by
    the retrieval backend's landmark warp, the parted lips filled with the photo's own upper teeth
    (they stay with the upper jaw) above a painted cavity."""
    target = _APERTURE_CLOSED + (_APERTURE_OPEN - _APERTURE_CLOSED) * openness
    image = portrait.image
    moved = transfer_mouth(image, portrait.landmarks, image.shape, portrait.landmarks, target, _MOUTH_WARP)
    x0, y0, x1, y1 = moved.roi
    frame = image.copy()
    region = moved.crop.astype(np.float32)
    shift = np.array([x0, y0], np.float64)
    shape = (y1 - y0, x1 - x0)
    opening = _lip_outline(moved.landmarks[lm.INNER_LIP] - shift)
    opened = _polygon_mask(shape, opening, 0.6)
    teeth = _polygon_mask(shape, _lip_outline(portrait.landmarks[lm.INNER_LIP] - shift), 0.5)
    inside = _inner_mouth(shape, opening, openness)
    photo = image[y0:y1, x0:x1].astype(np.float32)
    inside = photo * teeth[..., None] + inside * (1.0 - teeth[..., None])
    region = region * (1.0 - opened[..., None]) + inside * opened[..., None]
    frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return frame


def _head_motion(frame_count: int, rate: Fraction, rng: np.random.Generator) -> np.ndarray:
    """Per frame (dx, dy, roll_degrees, scale): slow sums of sinusoids, a pixel or two of drift
    and well under a degree of roll, the way a seated speaker sways."""
    times = np.arange(frame_count) / float(rate)
    motion = np.zeros((frame_count, 4))
    for column, amplitude in enumerate((1.6, 1.1, 0.5, 0.006)):
        for _ in range(3):
            frequency, phase = rng.uniform(0.15, 0.7), rng.uniform(0, 2 * np.pi)
            motion[:, column] += amplitude / 3 * np.sin(2 * np.pi * frequency * times + phase)
    motion[:, 3] += 1.0
    return motion


def _frame_transform(portrait: _Portrait, dx: float, dy: float, roll: float, scale: float) -> np.ndarray:
    """2x3 affine from photograph pixels to output pixels: the crop scaled to FRAME_SIZE, then
    the head motion about the face centre."""
    x0, y0, side = portrait.crop
    zoom = FRAME_SIZE / side
    to_frame = np.array([[zoom, 0.0, -x0 * zoom], [0.0, zoom, -y0 * zoom], [0.0, 0.0, 1.0]])
    centre = portrait.landmarks[lm.NOSE].mean(axis=0) * zoom - np.array([x0, y0]) * zoom
    sway = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, scale)
    sway[:, 2] += (dx, dy)
    return (np.vstack([sway, [0.0, 0.0, 1.0]]) @ to_frame)[:2]


def render_talking_frames(
    openness: np.ndarray, rate: Fraction, seed: int = 0, progress: ProgressSink = no_progress
) -> Iterator[np.ndarray]:
    """RGB uint8 frames (FRAME_SIZE square) of the astronaut saying ``openness`` (one value 0..1
    per frame), with head sway and sensor noise; streamed so memory does not grow with length."""
    portrait = _load_portrait()
    rng = np.random.default_rng(seed + 7919)
    motion = _head_motion(len(openness), rate, rng)
    total = len(openness)
    for index, (value, (dx, dy, roll, scale)) in enumerate(zip(openness, motion)):
        photo = _talking_photo(portrait, float(value))
        matrix = _frame_transform(portrait, dx, dy, roll, scale)
        frame = cv2.warpAffine(photo, matrix, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        grain = rng.normal(0.0, 1.6, frame.shape).astype(np.float32)
        exposure = 1.0 + 0.004 * rng.standard_normal()
        yield np.clip(frame.astype(np.float32) * exposure + grain + 0.5, 0, 255).astype(np.uint8)
        progress("demo video", index + 1, total)


# --- files -------------------------------------------------------------------------------------

#: The dub speaks faster than the clip, with its own syllables, so its rhythm differs.
_DUB_TEMPO = 1.2


@dataclass(frozen=True)
class DemoPlan:
    """What the demo files will hold: the clip's speech, the dub's, and the span (frames)."""

    rate: Fraction
    frame_count: int
    span_first: int
    span_end: int  # exclusive
    source: SynthesisedSpeech  # the clip's own track; the mouth follows its openness
    dub: SynthesisedSpeech  # as long as the span
    dub_source_correlation: float  # best-lag (±2 frames) correlation of the two openness tracks over the span

    @property
    def source_openness(self) -> np.ndarray:
        """Mouth openness per clip frame (at frame centres)."""
        return self.source.openness_at(frame_centres(self.rate, self.frame_count))

    @property
    def dub_openness(self) -> np.ndarray:
        """Openness the dub asks for, per span frame."""
        return self.dub.openness_at(frame_centres(self.rate, self.span_end - self.span_first))


#: A dub whose mouth rhythm correlates with the undubbed span above this is re-drawn: the demo must
#: show a change (natural footage with someone else's audio scores about 0.1).
_MAX_DUB_SOURCE_CORRELATION = 0.3
_DUB_DRAWS = 16


def plan_demo(seconds: float = 4.0, rate: Fraction = Fraction(25), seed: int = 0) -> DemoPlan:
    """Speech for the clip and a dub of a different rhythm for a span in the middle of the clip
    (0.5 s in from each end). A pure function of its arguments."""
    from dubline.stages.speech.calibration import best_lag

    rate = parse_rate(rate)
    frame_count = seconds_to_frame(seconds, rate)
    margin = seconds_to_frame(0.5, rate)
    if frame_count < 2 * margin + seconds_to_frame(1.0, rate):
        raise InvalidInputError(f"demo clip of {seconds} s is too short; it needs at least 2 s")
    first, end = margin, frame_count - margin
    source = synthesise_speech(float(frame_count / rate), seed)
    span_openness = source.openness_at(frame_centres(rate, frame_count))[first:end]
    best: tuple[float, SynthesisedSpeech] | None = None
    for draw in range(_DUB_DRAWS):
        dub = synthesise_speech(float((end - first) / rate), seed + 1 + draw, tempo=_DUB_TEMPO)
        _, correlation = best_lag(span_openness, dub.openness_at(frame_centres(rate, end - first)), 2)
        correlation = float(np.nan_to_num(correlation))
        if best is None or correlation < best[0]:
            best = (correlation, dub)
        if correlation <= _MAX_DUB_SOURCE_CORRELATION:
            break
    return DemoPlan(rate, frame_count, first, end, source, best[1], best[0])


def make_demo_inputs(
    directory: Path,
    *,
    seconds: float = 4.0,
    rate: Fraction = Fraction(25),
    seed: int = 0,
    progress: ProgressSink = no_progress,
) -> DemoInputs:
    """Write a talking-astronaut clip (H.264 + its own speech as PCM, in .mov) and a different dub
    (16 kHz WAV) into ``directory``, with a span in the middle of the clip as long as the dub.

    Everything is made offline from scikit-image's public-domain astronaut photograph and our own
    speech synthesis (see ``plan_demo``); the same arguments give the same files.
    """
    from dubline.stages import media

    plan = plan_demo(seconds, rate, seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    video = media.write_patch(
        render_talking_frames(plan.source_openness, plan.rate, seed, progress),
        directory / "astronaut_talking.mov",
        "h264",
        plan.rate,
        start_timecode="01:00:00:00",
        audio=media.AudioClip(plan.source.samples, plan.source.sample_rate),
        overwrite=True,
    )
    dub = media.write_audio(media.AudioClip(plan.dub.samples, plan.dub.sample_rate), directory / "dub.wav", overwrite=True)
    notes = (
        f"source: {video.name}, {plan.frame_count} frames at {plan.rate} fps ({FRAME_SIZE}x{FRAME_SIZE} H.264, "
        f"start timecode 01:00:00:00), scikit-image's public-domain NASA astronaut portrait animated to its own "
        f"synthetic speech ({len(plan.source.score.syllables)} syllables in {len(plan.source.score.phrases)} phrases); "
        f"dub: {dub.name}, {plan.dub.samples.shape[0] / plan.dub.sample_rate:.2f} s of other, faster synthetic "
        f"speech ({len(plan.dub.score.syllables)} syllables; mouth-rhythm correlation with the undubbed span "
        f"{plan.dub_source_correlation:.2f}); span: frames {plan.span_first}-{plan.span_end - 1}."
    )
    return DemoInputs(video, dub, frames_to_range(plan.span_first, plan.span_end, plan.rate), notes)


@dataclass(frozen=True)
class DemoResult:
    inputs: DemoInputs
    render: Any  # pipeline.RenderResult
    qc: Any  # quality.QcReport
    contact_sheet: Path


def run_demo(directory: Path, progress: ProgressSink = no_progress) -> DemoResult:
    """Make the inputs, render the span with the default backend, measure it, draw a contact sheet."""
    from dubline.pipeline import RenderRequest, analyse_clip, render
    from dubline.pipeline.qc import run_qc
    from dubline.qc.sheets import sheet_for_render

    directory.mkdir(parents=True, exist_ok=True)
    inputs = make_demo_inputs(directory, progress=progress)
    patch, matte = directory / "patch.mov", directory / "patch_matte.mov"
    result = render(
        RenderRequest(
            video=inputs.video, audio=inputs.dub, span=inputs.span, out=patch, matte=matte,
            otio_path=directory / "patch.otio", overwrite=True,
        ),
        progress=progress,
        cache_root=directory / "cache",
    )
    report = run_qc(patch, inputs.dub, source=inputs.video, span=inputs.span, matte=matte,
                    cache_root=directory / "cache", progress=progress)
    faces = analyse_clip(inputs.video, cache_root=directory / "cache").faces
    sheet = sheet_for_render(inputs.video, result.span[0], patch, faces, directory / "contact_sheet.png", matte)
    return DemoResult(inputs, result, report, sheet)

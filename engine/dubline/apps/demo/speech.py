"""The demo's speech: our own formant synthesis (no TTS engine), with the mouth opening it implies.


The speech is our own formant synthesis (no TTS engine): a glottal pulse train with a falling,
accented F0 contour and jitter, through a cascade of time-varying formant resonators (Klatt's
resonator form) for the vowels a e i o u, with stop closures and bursts, fricative and nasal
consonants between the vowels and pauses between phrases. The openness of the mouth at each
instant is part of the same score, so the clip's mouth follows its own syllables. The dub uses
another seed and tempo, so its rhythm differs from the clip's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from dubline.core.errors import InvalidInputError

#: Sample rate of the synthesised speech (the analysis stages' own rate, so no resampling).
SPEECH_RATE = 16000
#: Output frame size (even, so 4:2:0 video codecs take it as is).

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

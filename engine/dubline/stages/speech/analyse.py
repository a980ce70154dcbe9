"""The speech-track stage: dub audio + span timing -> SpeechTrack (phones, visemes, voice, targets).

The audio is aligned so its t = 0 is the span's first frame. What does not fit the span is
handled by ``length_policy``; differences under half a frame are padded/trimmed silently (decoded
audio rarely ends on an exact sample).

The whole analysis is cached as one blob keyed by a hash of the float32 samples and every
parameter that changes the result (frame rate, frame count, policy, all stage parameters and
``ANALYSIS_VERSION``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dubline.core.cache import BlobCache, array_fingerprint
from dubline.core.errors import InvalidInputError, InvalidRateError
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.stages.speech.phones import (
    SAMPLE_RATE,
    PhoneDecoderParams,
    PhoneSegment,
    decode_phones,
)
from dubline.stages.speech.targets import (
    CoarticulationParams,
    frame_centres,
    frame_targets,
)
from dubline.stages.speech.vad import VadParams, detect_voice

if TYPE_CHECKING:
    from dubline.stages.media import AudioClip

#: Bump when the analysis changes in a way the parameters do not capture (invalidates the cache).
ANALYSIS_VERSION = 1
STAGE = "speech"
LENGTH_POLICIES = ("pad_or_trim", "pad", "trim", "error")


@dataclass(frozen=True)
class SpeechParams:
    decoder: PhoneDecoderParams = PhoneDecoderParams()
    vad: VadParams = VadParams()
    coarticulation: CoarticulationParams = CoarticulationParams()


@dataclass(eq=False)
class SpeechTrack:
    """Speech analysis of one audio over one span; per-frame arrays have ``frame_count`` entries."""

    rate: Fraction
    frame_count: int
    audio_duration_s: float  # of the audio as given, before padding/trimming
    phones: list[PhoneSegment]  # (phone, start_s, end_s), seconds from the span's first frame
    speech_segments: list[tuple[float, float]]  # VAD speech, seconds
    phone_index: np.ndarray  # int32: index into ``phones`` at each frame centre, -1 where none
    phone: np.ndarray  # str: phone label at each frame centre ("" where none)
    viseme: np.ndarray  # str: viseme at each frame centre (REST in silence)
    voice_activity: np.ndarray  # float32 0..1: share of the frame's duration that is VAD speech
    speech_probability: np.ndarray  # float32 0..1: silero's probability at the frame centre
    openness: np.ndarray  # float32 0..1 target mouth state (coarticulated)
    width: np.ndarray
    rounding: np.ndarray
    closure: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """The span's duration (frame_count / rate)."""
        return float(self.frame_count / self.rate)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpeechTrack):
            return NotImplemented
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, np.ndarray):
                if not np.array_equal(mine, theirs):
                    return False
            elif mine != theirs:
                return False
        return True


def _describe(seconds: float) -> str:
    return f"{seconds:.2f} s"


def align_to_span(
    samples: np.ndarray, *, rate: Fraction, frame_count: int, length_policy: str
) -> tuple[np.ndarray, int, list[str]]:
    """(aligned samples of exactly the span's length, samples of real audio in them, warnings)."""
    if length_policy not in LENGTH_POLICIES:
        raise InvalidInputError(f"length_policy must be one of {', '.join(LENGTH_POLICIES)}; got {length_policy!r}")
    target = int(round(Fraction(frame_count) / rate * SAMPLE_RATE))
    have = samples.shape[0]
    half_frame = int(SAMPLE_RATE / rate / 2)
    warnings: list[str] = []
    if abs(have - target) > half_frame:
        dub_s, span_s = have / SAMPLE_RATE, target / SAMPLE_RATE
        what = f"the dub audio is {_describe(dub_s)} but the span is {_describe(span_s)} ({frame_count} frames at {rate} fps)"
        shorter = have < target
        allowed = {"pad_or_trim": True, "pad": shorter, "trim": not shorter, "error": False}[length_policy]
        if not allowed:
            raise InvalidInputError(f"{what}; length_policy={length_policy!r} does not allow {'padding' if shorter else 'trimming'} it")
        action = "padded with" if shorter else "trimmed"
        warnings.append(f"{what}: {action} {_describe(abs(dub_s - span_s))}{' of silence' if shorter else ''}")
    aligned = np.zeros(target, np.float32)
    used = min(have, target)
    aligned[:used] = samples[:used]
    return aligned, used, warnings


def _per_frame_voice(
    segments: list[tuple[float, float]], probabilities: np.ndarray, window_s: float, rate: Fraction, frame_count: int
) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(frame_count) / float(rate)
    ends = starts + 1 / float(rate)
    covered = np.zeros(frame_count)
    for s, e in segments:
        covered += np.clip(np.minimum(ends, e) - np.maximum(starts, s), 0, None)
    activity = np.clip(covered * float(rate), 0.0, 1.0)
    centres = frame_centres(rate, frame_count)
    if probabilities.size:
        window_centres = (np.arange(probabilities.size) + 0.5) * window_s
        probability = np.interp(centres, window_centres, probabilities, right=0.0)
    else:
        probability = np.zeros(frame_count)
    return activity.astype(np.float32), probability.astype(np.float32)


def _phones_at_frames(phones: list[PhoneSegment], rate: Fraction, frame_count: int) -> tuple[np.ndarray, np.ndarray]:
    centres = frame_centres(rate, frame_count)
    starts = np.array([p.start_s for p in phones])
    ends = np.array([p.end_s for p in phones])
    index = np.searchsorted(starts, centres, side="right") - 1
    if phones:
        inside = (index >= 0) & (centres < ends[np.clip(index, 0, None)])
    else:
        inside = np.zeros(frame_count, bool)
    index = np.where(inside, index, -1).astype(np.int32)
    labels = np.array([phones[i].phone if i >= 0 else "" for i in index], dtype=str) if frame_count else np.zeros(0, str)
    return index, labels


def _cache_for(cache: bool | str | Path | None, samples: np.ndarray, key: dict[str, Any]):
    if cache is None or cache is False:
        return None
    root = None if cache is True else Path(cache)
    return BlobCache(STAGE, array_fingerprint(np.ascontiguousarray(samples, np.float32)), key, root=root)


def analyse_speech(
    audio: AudioClip,
    *,
    rate: Fraction,
    frame_count: int,
    length_policy: str = "pad_or_trim",
    params: SpeechParams = SpeechParams(),
    cache: bool | str | Path | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> SpeechTrack:
    """Analyse 16 kHz mono audio (``dubline.stages.media.read_audio(path, span, rate=16000, mono=True)``).

    ``rate`` is the video's exact frame rate and ``frame_count`` the span's length in frames; the
    audio's first sample is at the start of the span's first frame. ``length_policy`` says what to
    do when the audio's length differs from the span's: "pad_or_trim" (default: silence-pad or
    trim, with a warning in the result), "pad" (only padding allowed), "trim" (only trimming),
    "error" (raise InvalidInputError naming both durations). ``cache``: None/False for none, True
    for the default cache directory, or a directory.
    """
    try:
        rate = Fraction(rate)
    except (TypeError, ValueError) as error:
        raise InvalidRateError(f"speech analysis: frame rate {rate!r} is not a number") from error
    if rate <= 0:
        raise InvalidRateError(f"speech analysis: frame rate must be positive, got {rate}")
    if not isinstance(frame_count, int) or frame_count < 0:
        raise InvalidInputError(f"speech analysis: frame_count must be a non-negative integer, got {frame_count!r}")
    if audio.sample_rate != SAMPLE_RATE:
        raise InvalidRateError(
            f"speech analysis needs {SAMPLE_RATE} Hz audio, got {audio.sample_rate} Hz; "
            "read it with dubline.stages.media.read_audio(path, span, rate=16000, mono=True)"
        )
    samples = np.asarray(audio.samples, dtype=np.float32)
    if samples.ndim != 1:
        raise InvalidInputError(f"speech analysis needs mono audio, got samples of shape {samples.shape}")

    key = {
        "version": ANALYSIS_VERSION,
        "rate": str(rate),
        "frame_count": frame_count,
        "length_policy": length_policy,
        "params": dataclasses.asdict(params),
    }
    store = _cache_for(cache, samples, key)
    if store is not None:
        cached = store.get()
        if isinstance(cached, SpeechTrack):
            progress(STAGE, 1, 1)
            return cached

    aligned, used, warnings = align_to_span(samples, rate=rate, frame_count=frame_count, length_policy=length_policy)
    real = aligned[:used]
    progress(STAGE, 0, 3)
    voice = detect_voice(real, params.vad)
    progress(STAGE, 1, 3)
    # Cut long audio into utterances in the middle of VAD silences.
    cut_points = [0.5 * (a[1] + b[0]) for a, b in zip(voice.segments, voice.segments[1:])]
    phones = decode_phones(real, SAMPLE_RATE, params=params.decoder, cut_points_s=cut_points, cancel=cancel)
    progress(STAGE, 2, 3)
    targets = frame_targets(phones, voice.segments, rate=rate, frame_count=frame_count, params=params.coarticulation)
    activity, probability = _per_frame_voice(voice.segments, voice.probabilities, voice.window_s, rate, frame_count)
    phone_index, phone_labels = _phones_at_frames(phones, rate, frame_count)
    track = SpeechTrack(
        rate=rate,
        frame_count=frame_count,
        audio_duration_s=samples.shape[0] / SAMPLE_RATE,
        phones=phones,
        speech_segments=list(voice.segments),
        phone_index=phone_index,
        phone=phone_labels,
        viseme=targets.viseme,
        voice_activity=activity,
        speech_probability=probability,
        openness=targets.openness,
        width=targets.width,
        rounding=targets.rounding,
        closure=targets.closure,
        warnings=warnings,
    )
    progress(STAGE, 3, 3)
    if store is not None:
        store.put(track)
    return track

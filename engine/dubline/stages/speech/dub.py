"""Reading a dub: the audio that plays over a span, from any offset, at the speech stage's rate.

The one reader used by render and qc, so both agree on what the dub is: the dub's time
``offset`` plays at the span's first frame; a negative offset means the dub starts that much
later than the span (silence first). Non-finite samples (a broken float WAV) become silence with
a warning rather than poisoning every later stage.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio

from dubline.core.errors import InvalidInputError, NoStreamError
from dubline.core.timing import seconds_of
from dubline.stages.media import AudioClip, probe, read_audio
from dubline.stages.speech.phones import SAMPLE_RATE


def read_dub(path: Path, offset: otio.opentime.RationalTime, field_name: str = "--audio-offset") -> tuple[AudioClip, list[str]]:
    """The dub from ``offset`` on, 16 kHz mono float32, and warnings about its samples."""
    info = probe(path)
    if not info.audio:
        raise NoStreamError(f"{path} has no audio stream")
    stream = info.audio[0]
    duration = Fraction(stream.duration_seconds)
    if duration <= 0:
        raise InvalidInputError(f"{path.name} holds no audio samples (its audio stream is empty)")
    start = seconds_of(offset)
    if start >= duration:
        raise InvalidInputError(
            f"{field_name} {float(start):.3f}s is past the end of {path.name} ({float(duration):.3f}s)"
        )
    if start < 0:
        clip = read_audio(path, None, rate=SAMPLE_RATE, mono=True)
        lead = np.zeros(int(round(-start * SAMPLE_RATE)), np.float32)
        clip = AudioClip(np.concatenate([lead, clip.samples]), SAMPLE_RATE)
    else:
        clip = read_audio(path, (start, duration), rate=SAMPLE_RATE, mono=True)
    warnings = []
    finite = np.isfinite(clip.samples)
    if not finite.all():
        bad = int(np.count_nonzero(~finite))
        warnings.append(f"{path.name}: {bad} audio samples were NaN or infinite and are played as silence")
        clip = AudioClip(np.where(finite, clip.samples, np.float32(0)), clip.sample_rate)
    return clip, warnings

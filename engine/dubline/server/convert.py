"""Messages of ``dubline.v1`` <-> pipeline requests and results, with every field validated.

Validation errors are ``InvalidInputError`` (INVALID_ARGUMENT) naming the field; paths go through
``MediaRoots.check`` (PERMISSION_DENIED outside the roots).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio

from dubline.errors import InvalidInputError, InvalidRateError
from dubline.server.security import MediaRoots
from dubline_client import pb

LENGTH_POLICIES = ("pad_or_trim", "pad", "trim", "error")
MAX_LIBRARY_FILES = 64
MAX_BACKEND_OPTIONS = 32
MAX_TEXT = 256
#: A rate above this is not a frame or sample rate anyone uses; it guards the arithmetic.
MAX_RATE = 1_000_000


def rational_fraction(time: pb.RationalTime, field: str) -> Fraction:
    """Seconds as an exact Fraction; InvalidRateError for a zero, negative or absurd rate."""
    if time.rate_num <= 0 or time.rate_den <= 0 or Fraction(time.rate_num, time.rate_den) > MAX_RATE:
        raise InvalidRateError(
            f"{field} has rate {time.rate_num}/{time.rate_den}; the rate must be a positive "
            f"fraction rate_num/rate_den (e.g. 25/1 or 24000/1001)"
        )
    return Fraction(time.value * time.rate_den, time.rate_num)


def rate_of(time: pb.RationalTime, field: str) -> Fraction:
    rational_fraction(time, field)
    return Fraction(time.rate_num, time.rate_den)


def _otio_time(time: pb.RationalTime, field: str) -> otio.opentime.RationalTime:
    rate = rate_of(time, field)
    return otio.opentime.RationalTime(float(time.value), float(rate))


def span_of(span: pb.Span, field: str = "span") -> otio.opentime.TimeRange | str:
    kind = span.WhichOneof("kind")
    if kind is None:
        raise InvalidInputError(f"{field} is required: give {field}.range (rational start and duration) or {field}.text")
    if kind == "text":
        text = span.text.strip()
        if not text or len(text) > MAX_TEXT:
            raise InvalidInputError(f"{field}.text {span.text[:40]!r} is not a span like 120-245")
        return text
    if not span.range.HasField("start") or not span.range.HasField("duration"):
        raise InvalidInputError(f"{field}.range needs both start and duration")
    start = rational_fraction(span.range.start, f"{field}.range.start")
    duration = rational_fraction(span.range.duration, f"{field}.range.duration")
    if start < 0:
        raise InvalidInputError(f"{field}.range.start is negative ({start} s)")
    if duration <= 0:
        raise InvalidInputError(f"{field}.range.duration must be positive, got {duration} s")
    return otio.opentime.TimeRange(
        _otio_time(span.range.start, f"{field}.range.start"), _otio_time(span.range.duration, f"{field}.range.duration")
    )


def _speaker(text: str, roots: MediaRoots):
    from dubline.cli.render import speaker_hint

    if not text:
        return None
    if "@" in text:
        return speaker_hint(text)
    return speaker_hint(str(roots.check(text, "spec.speaker")))


def _choice(value: str, default: str, allowed: tuple[str, ...] | list[str], field: str) -> str:
    value = value or default
    if value not in allowed:
        raise InvalidInputError(f"{field} {value[:40]!r} is not one of {', '.join(allowed)}")
    return value


def render_request(spec: pb.RenderSpec, roots: MediaRoots, *, outputs_required: bool = True):
    """The pipeline's RenderRequest for ``spec`` (every field checked)."""
    from dubline import media
    from dubline.backends import DEFAULT_BACKEND, names
    from dubline.paths import check_outputs
    from dubline.pipeline import EXPRESSIONS, RenderRequest, request_inputs

    if len(spec.library) > MAX_LIBRARY_FILES:
        raise InvalidInputError(f"spec.library has {len(spec.library)} files; at most {MAX_LIBRARY_FILES}")
    if len(spec.backend_options) > MAX_BACKEND_OPTIONS or any(
        len(k) > MAX_TEXT or len(v) > MAX_TEXT for k, v in spec.backend_options.items()
    ):
        raise InvalidInputError(f"spec.backend_options: at most {MAX_BACKEND_OPTIONS} entries of {MAX_TEXT} characters")
    offset = rational_fraction(spec.audio_offset, "spec.audio_offset") if spec.HasField("audio_offset") else Fraction(0)
    request = RenderRequest(
        video=roots.check(spec.video, "spec.video"),
        audio=roots.check(spec.audio, "spec.audio"),
        span=span_of(spec.span, "spec.span"),
        out=roots.check(spec.out, "spec.out", required=outputs_required),
        backend=_choice(spec.backend, DEFAULT_BACKEND, names(), "spec.backend"),
        codec=_choice(spec.codec, media.DEFAULT_PATCH_CODEC, tuple(media.PATCH_CODECS), "spec.codec"),
        matte=roots.check(spec.matte, "spec.matte", required=False),
        otio_path=roots.check(spec.otio, "spec.otio", required=False),
        audio_offset=float(offset),
        speaker=_speaker(spec.speaker, roots),
        expression=_choice(spec.expression, "as-source", EXPRESSIONS, "spec.expression"),
        library=tuple(roots.check(p, f"spec.library[{i}]") for i, p in enumerate(spec.library)),
        overwrite=spec.overwrite,
        with_audio=spec.with_audio,
        length_policy=_choice(spec.length_policy, "pad_or_trim", LENGTH_POLICIES, "spec.length_policy"),
        backend_options=dict(spec.backend_options),
    )
    # Refused before the job is queued: an output that is an input never reaches the pipeline.
    check_outputs({"spec.out": request.out, "spec.matte": request.matte, "spec.otio": request.otio_path},
                  request_inputs(request))
    return request


def render_done(result: Any) -> pb.RenderDone:
    """A pipeline RenderResult as the ``done`` event."""
    qc = {f"seconds.{stage}": float(s) for stage, s in result.stage_seconds.items()}
    qc.update({f"passthrough.{reason}": float(n) for reason, n in result.passthrough.items()})
    otio_json = Path(result.otio_path).read_text() if result.otio_path else ""
    return pb.RenderDone(
        out=str(result.out),
        matte=str(result.matte or ""),
        otio=str(result.otio_path or ""),
        otio_json=otio_json,
        frames_written=result.frames_written,
        span_first=result.span[0],
        span_end=result.span[1],
        start_timecode=result.start_timecode or "",
        backend=result.backend,
        frames_patched=result.frames_patched,
        qc=qc,
        warnings=list(result.warnings),
    )

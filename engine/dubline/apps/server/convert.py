"""Messages of ``dubline.v1`` <-> pipeline requests and results, with every field validated.

Validation errors are ``InvalidInputError`` (INVALID_ARGUMENT) naming the field; paths go through
``MediaRoots.check`` (PERMISSION_DENIED outside the roots).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio
from dubline_client import pb

from dubline.apps.server.security import MediaRoots
from dubline.core.errors import InvalidInputError, InvalidRateError
from dubline.core.models import model_dir
from dubline.core.timing import seconds_time
from dubline.pipeline import SPEC_LABELS, RenderRequest
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND, PATH_OPTIONS
from dubline.stages.faces import SpeakerHint

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


def _speaker(text: str, roots: MediaRoots) -> SpeakerHint | None:
    if not text:
        return None
    if "@" in text:
        return SpeakerHint.parse(text, "spec.speaker")
    return SpeakerHint.parse(str(roots.check(text, "spec.speaker")), "spec.speaker")


def render_request(spec: pb.RenderSpec, roots: MediaRoots, *, frame_outputs: tuple[Path, Path] | None = None) -> RenderRequest:
    """The pipeline's RenderRequest for ``spec``: sizes and paths checked here (media roots), every
    other field by RenderRequest itself, with errors naming ``spec.*`` fields. ``frame_outputs``
    (patch, matte) replace the spec's outputs for the one-frame RPC, which renders a lossless patch
    and matte into the engine's own work directory."""
    if len(spec.library) > MAX_LIBRARY_FILES:
        raise InvalidInputError(f"spec.library has {len(spec.library)} files; at most {MAX_LIBRARY_FILES}")
    if len(spec.backend_options) > MAX_BACKEND_OPTIONS or any(
        len(k) > MAX_TEXT or len(v) > MAX_TEXT for k, v in spec.backend_options.items()
    ):
        raise InvalidInputError(f"spec.backend_options: at most {MAX_BACKEND_OPTIONS} entries of {MAX_TEXT} characters")
    offset = rational_fraction(spec.audio_offset, "spec.audio_offset") if spec.HasField("audio_offset") else Fraction(0)
    outputs = dict(
        out=roots.check(spec.out, "spec.out"), codec=spec.codec or media.DEFAULT_PATCH_CODEC,
        matte=roots.check(spec.matte, "spec.matte", required=False),
        otio_path=roots.check(spec.otio, "spec.otio", required=False),
        sheet=roots.check(spec.sheet, "spec.sheet", required=False),
        overwrite=spec.overwrite, with_audio=spec.with_audio,
    ) if frame_outputs is None else dict(
        out=frame_outputs[0], codec="ffv1", matte=frame_outputs[1], otio_path=None, sheet=None, overwrite=True,
        with_audio=False,
    )
    return RenderRequest(
        video=roots.check(spec.video, "spec.video"),
        audio=roots.check(spec.audio, "spec.audio"),
        span=span_of(spec.span, "spec.span"),
        backend=spec.backend or DEFAULT_BACKEND,
        audio_offset=seconds_time(offset),
        speaker=_speaker(spec.speaker, roots),
        expression=spec.expression or "as-source",
        library=tuple(roots.check(p, f"spec.library[{i}]") for i, p in enumerate(spec.library)),
        length_policy=spec.length_policy or "pad_or_trim",
        backend_options=_backend_options(spec, roots),
        labels=SPEC_LABELS,
        **outputs,
    )


def _backend_options(spec: pb.RenderSpec, roots: MediaRoots) -> dict[str, str]:
    """The spec's backend options, with every option that names a file (``PATH_OPTIONS``)
    checked and resolved: a bare name is a file in the engine's model directory, an absolute path
    must be inside a media root."""
    options = dict(spec.backend_options)
    for key in PATH_OPTIONS.get(spec.backend or "retrieval", ()):
        if key in options:
            options[key] = str(roots.check_model(options[key], f"spec.backend_options.{key}", model_dir()))
    return options


def render_done(result: Any) -> pb.RenderDone:
    """A pipeline RenderResult as the ``done`` event."""
    qc = {f"seconds.{stage}": float(s) for stage, s in result.stage_seconds.items()}
    qc.update({f"share.render.{stage}": float(share) for stage, share in result.loop_shares.items()})
    qc.update({f"passthrough.{reason}": float(n) for reason, n in result.passthrough.items()})
    qc.update({f"analysis.{name}": float(v) for name, v in getattr(result, "analysis", {}).items()})
    # Incremental re-render: rows copied from the previous patch of the span, drawn, drawn to warm up.
    qc.update({f"reuse.{name}": float(getattr(result, f"frames_{name}", 0)) for name in ("reused", "rendered", "warmup")})
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
        flags=[pb.FrameFlag(first=f.first, end=f.end, kind=f.kind, note=f.note, label=f.label(result.span[0]))
               for f in result.flags],
        sheet=str(result.sheet or ""),
    )

"""``RenderRequest``: one render, parsed and validated once, the same way from every door.

The CLI (``render``, ``submit``), ``dubline otio``, the gRPC engine and batch jobs all build a
``RenderRequest``; construction checks every field against the constants of the stage that owns
it (codecs from the media stage, backends from the backend manifest, expressions from the backend
contract, length policies from the speech stage) and refuses outputs that name an input. Error
messages name fields the way the door that built the request calls them (``--codec`` on the
command line, ``spec.codec`` over gRPC), through ``labels``.

Times are exact: the span is a TimeRange (or the editor's text, resolved against the source's
rate once it is probed), the dub offset a RationalTime in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import opentimelineio as otio

from dubline.core.errors import InvalidInputError
from dubline.core.paths import check_outputs, labelled
from dubline.core.timing import parse_seconds, seconds_time
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND, EXPRESSIONS, PATH_OPTIONS
from dubline.stages.backends import names as backend_names
from dubline.stages.faces import SpeakerHint
from dubline.stages.speech import LENGTH_POLICIES

#: Field -> how the command line names it (the default labels of error messages).
CLI_LABELS: Mapping[str, str] = MappingProxyType({
    "video": "--video", "audio": "--audio", "span": "--range", "out": "--out", "backend": "--backend",
    "codec": "--codec", "matte": "--matte", "otio_path": "--otio", "audio_offset": "--audio-offset",
    "speaker": "--speaker", "expression": "--expression", "library": "--library",
    "length_policy": "--length-policy", "backend_options": "--backend-option", "sheet": "--sheet",
})
#: The same fields as ``dubline.v1.RenderSpec`` names them.
SPEC_LABELS: Mapping[str, str] = MappingProxyType(
    {name: f"spec.{'otio' if name == 'otio_path' else name}" for name in CLI_LABELS}
)

#: Outputs whose codec is fixed by the suffix: the matte is lossless (PNG in .mov, FFV1 in .mkv).
MATTE_CODECS = {".mov": "png", ".mkv": "ffv1"}

Span = otio.opentime.TimeRange | str


@dataclass(frozen=True)
class RenderRequest:
    video: Path
    audio: Path
    span: Span  # a TimeRange, or text (120-245, timecode, seconds) resolved against the source's rate
    out: Path
    backend: str = DEFAULT_BACKEND
    codec: str = media.DEFAULT_PATCH_CODEC
    matte: Path | None = None
    otio_path: Path | None = None
    #: a contact sheet (PNG: source / patch / mouth close-ups / matte) of the finished render
    sheet: Path | None = None
    #: seconds of the dub that play at the span's first frame (negative: the dub starts later)
    audio_offset: otio.opentime.RationalTime = field(default_factory=lambda: seconds_time(0))
    speaker: SpeakerHint | None = None
    expression: str = "as-source"
    library: tuple[Path, ...] = ()
    overwrite: bool = False
    with_audio: bool = False
    length_policy: str = "pad_or_trim"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=lambda: CLI_LABELS, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_outputs(self.outputs(), self.inputs())  # first: the one refusal that protects the user's media
        self._choose("backend", self.backend, backend_names())
        self._choose("codec", self.codec, tuple(media.PATCH_CODECS))
        self._choose("expression", self.expression, EXPRESSIONS)
        self._choose("length_policy", self.length_policy, LENGTH_POLICIES)
        if isinstance(self.span, str) and not self.span.strip():
            raise InvalidInputError(f"{self.labels['span']} is empty; give a span like 120-245")
        suffixes = media.PATCH_CODECS[self.codec].suffixes
        if self.out.suffix.lower() not in suffixes:
            raise InvalidInputError(
                f"{self.labels['out']} {self.out.name}: {self.codec} patches go in {' or '.join(suffixes)} files"
            )
        if self.matte is not None and self.matte.suffix.lower() not in MATTE_CODECS:
            raise InvalidInputError(
                f"{self.labels['matte']} {self.matte.name}: the matte clip is written lossless, use a .mov (PNG) or .mkv (FFV1) name"
            )
        if self.sheet is not None and self.sheet.suffix.lower() != ".png":
            raise InvalidInputError(f"{self.labels['sheet']} {self.sheet.name}: the contact sheet is a .png picture")

    def _choose(self, name: str, value: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if value not in allowed:
            raise InvalidInputError(f"{self.labels[name]} {str(value)[:40]!r} is not one of {', '.join(allowed)}")

    def inputs(self) -> dict[str, Path]:
        """Every file the render reads (no output may be one of them), by field label: the media
        and any weights file a backend option names."""
        weights = {
            f"{self.labels['backend_options']} {key}": Path(str(self.backend_options[key]))
            for key in PATH_OPTIONS.get(self.backend, ()) if self.backend_options.get(key)
        }
        return {self.labels["video"]: self.video, self.labels["audio"]: self.audio,
                **labelled(self.labels["library"], self.library), **weights}

    def outputs(self) -> dict[str, Path | None]:
        return {self.labels["out"]: self.out, self.labels["matte"]: self.matte, self.labels["otio_path"]: self.otio_path,
                self.labels["sheet"]: self.sheet}

    @property
    def matte_codec(self) -> str | None:
        return None if self.matte is None else MATTE_CODECS[self.matte.suffix.lower()]

    @classmethod
    def from_text(
        cls,
        *,
        video: str | Path,
        audio: str | Path,
        span: Span,
        out: str | Path,
        audio_offset: str | otio.opentime.RationalTime = "0",
        speaker: str | SpeakerHint | None = None,
        backend_options: Iterable[str] | Mapping[str, Any] = (),
        library: Iterable[str | Path] = (),
        matte: str | Path | None = None,
        otio_path: str | Path | None = None,
        sheet: str | Path | None = None,
        labels: Mapping[str, str] = CLI_LABELS,
        **choices: Any,
    ) -> RenderRequest:
        """A request from what a person typed: offsets in seconds, a speaker hint as text,
        backend options as ``KEY=VALUE`` pairs (or a mapping); ``choices`` are the remaining
        fields (backend, codec, expression, length_policy, overwrite, with_audio)."""
        offset = audio_offset if isinstance(audio_offset, otio.opentime.RationalTime) else parse_seconds(
            audio_offset, labels["audio_offset"]
        )
        hint = SpeakerHint.parse(speaker, labels["speaker"]) if isinstance(speaker, str) and speaker else speaker
        options = dict(backend_options) if isinstance(backend_options, Mapping) else parse_options(
            backend_options, labels["backend_options"]
        )
        return cls(
            video=Path(video), audio=Path(audio), span=span, out=Path(out), audio_offset=offset, speaker=hint or None,
            backend_options=options, library=tuple(Path(p) for p in library),
            matte=Path(matte) if matte else None, otio_path=Path(otio_path) if otio_path else None,
            sheet=Path(sheet) if sheet else None, labels=labels, **choices,
        )


def parse_options(pairs: Iterable[str], field_name: str = "--backend-option") -> dict[str, str]:
    """``KEY=VALUE`` pairs as a dict (later keys win)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"{field_name} {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options

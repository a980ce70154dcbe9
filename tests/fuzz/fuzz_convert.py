"""Fuzz the engine's request door: ``convert.render_request`` on RenderSpecs built from fuzzed
fields (paths inside, outside and across the media root, spans as text or rationals, offsets,
speakers, backends, codecs, options) and on raw bytes parsed as a RenderSpec.

Invariant: every spec becomes a ``RenderRequest`` whose paths are all inside the media root, or
raises ``DublineError``; nothing else escapes, nothing hangs.
Run: ``python tests/fuzz/fuzz_convert.py -max_total_time=600``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import _common  # noqa: F401  (sys.path)
import atheris

with atheris.instrument_imports(include=["dubline"]):
    from dubline.apps.server import convert
    from dubline.apps.server.security import MediaRoots
    from dubline.core.errors import DublineError
    from dubline_client import pb
    from google.protobuf.message import DecodeError

WORK = Path(tempfile.mkdtemp(prefix="dubline-fuzz-convert-"))
ROOT = WORK / "media"
ROOT.mkdir()
(ROOT / "clip.mov").write_bytes(b"not really a clip")
(ROOT / "dub.wav").write_bytes(b"not really audio")
(ROOT / "out").mkdir()
(ROOT / "escape").symlink_to(WORK)
os.environ["DUBLINE_MODELS"] = str(WORK / "models")
ROOTS = MediaRoots([ROOT])
PATHS = [str(ROOT / "clip.mov"), str(ROOT / "dub.wav"), str(ROOT / "out" / "p.mov"), str(ROOT / "escape" / "x.mov"),
         str(ROOT / ".." / "media" / "clip.mov"), "/etc/passwd", "relative.mov", "", str(ROOT / "out" / "p.mp4"),
         str(ROOT / "out" / "m.mkv"), str(ROOT / "out" / "t.otio")]
WORDS = ["retrieval", "wav2lip", "prores", "h264", "ffv1", "png", "as-source", "smile", "pad", "error", "checkpoint",
         "device", "batch_size", "selection", "0-10", "10-0", "00:00:01:00-00:00:02:00", "1s-2s", "262,200@10"]


def _text(provider: atheris.FuzzedDataProvider) -> str:
    choice = provider.ConsumeIntInRange(0, 2)
    if choice == 0:
        return PATHS[provider.ConsumeIntInRange(0, len(PATHS) - 1)]
    if choice == 1:
        return WORDS[provider.ConsumeIntInRange(0, len(WORDS) - 1)]
    return provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 80))


def _time(provider: atheris.FuzzedDataProvider) -> pb.RationalTime:
    return pb.RationalTime(value=provider.ConsumeIntInRange(-2**40, 2**40),
                           rate_num=provider.ConsumeIntInRange(-2, 2**31), rate_den=provider.ConsumeIntInRange(-2, 2**31))


def spec_from(provider: atheris.FuzzedDataProvider) -> pb.RenderSpec:
    spec = pb.RenderSpec(video=_text(provider), audio=_text(provider), out=_text(provider), backend=_text(provider),
                         codec=_text(provider), matte=_text(provider), otio=_text(provider), speaker=_text(provider),
                         expression=_text(provider), length_policy=_text(provider), overwrite=provider.ConsumeBool(),
                         with_audio=provider.ConsumeBool())
    if provider.ConsumeBool():
        spec.span.text = _text(provider)
    elif provider.ConsumeBool():
        spec.span.range.start.CopyFrom(_time(provider))
        spec.span.range.duration.CopyFrom(_time(provider))
    if provider.ConsumeBool():
        spec.audio_offset.CopyFrom(_time(provider))
    for _ in range(provider.ConsumeIntInRange(0, 3)):
        spec.library.append(_text(provider))
    for _ in range(provider.ConsumeIntInRange(0, 3)):
        spec.backend_options[_text(provider)] = _text(provider)
    return spec


def check_spec(spec: pb.RenderSpec) -> None:
    try:
        request = convert.render_request(spec, ROOTS)
    except DublineError:
        return
    for path in [*request.inputs().values(), *(p for p in request.outputs().values() if p is not None)]:
        assert ROOTS.inside(Path(os.path.realpath(path))), (path, spec)


def check(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    if provider.ConsumeBool():
        check_spec(spec_from(provider))
        return
    try:
        spec = pb.RenderSpec.FromString(provider.ConsumeBytes(provider.remaining_bytes()))
    except DecodeError:
        return  # not a RenderSpec: gRPC itself answers that, before convert sees it
    check_spec(spec)


if __name__ == "__main__":
    atheris.Setup(_common.default_flags(sys.argv), check)
    atheris.Fuzz()

"""Fuzz the timeline reader's front door, ``dubline.interchange.read_timeline``, with bytes
written as an .otio (OTIO JSON), .xml (FCP 7 XML) or .edl (CMX 3600) file.

Invariant: any file either reads as one timeline or raises ``DublineError`` naming it; nothing
else escapes and nothing hangs. The first input byte picks the format; seeds: a small valid file
of each format, so the fuzzer starts inside each grammar.
Run: ``python tests/fuzz/fuzz_timeline.py -max_total_time=600``.
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import _common  # noqa: F401  (sys.path)
import atheris

with atheris.instrument_imports(include=["dubline"]):
    import opentimelineio as otio
    from dubline.core.errors import DublineError
    from dubline.interchange import read_timeline

SUFFIXES = (".otio", ".xml", ".edl")
WORK = Path(tempfile.mkdtemp(prefix="dubline-fuzz-timeline-"))

EDL_SEED = b"""TITLE: fuzz
FCM: NON-DROP FRAME

001  AX       V     C        00:00:01:00 00:00:02:00 01:00:00:00 01:00:01:00
* FROM CLIP NAME: shot.mov
"""
XML_SEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<xmeml version="4"><sequence><name>s</name><rate><timebase>25</timebase></rate><media><video><track>
<clipitem id="c1"><name>shot</name><rate><timebase>25</timebase></rate><in>0</in><out>25</out><start>0</start><end>25</end>
<file id="f1"><name>shot.mov</name><pathurl>file:///media/shot.mov</pathurl><rate><timebase>25</timebase></rate>
<duration>100</duration></file></clipitem></track></video></media></sequence></xmeml>
"""


def otio_seed() -> bytes:
    rate = 25
    timeline = otio.schema.Timeline(name="t")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.append(otio.schema.Clip(
        name="shot", media_reference=otio.schema.ExternalReference(target_url="/media/shot.mov"),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(25, rate))))
    timeline.tracks.append(track)
    return otio.adapters.write_to_string(timeline, "otio_json").encode()


def seeds(directory: Path) -> None:
    for index, seed in enumerate((otio_seed(), XML_SEED, EDL_SEED)):
        (directory / f"seed{index}").write_bytes(bytes([index]) + seed)


def check(data: bytes) -> None:
    if not data:
        return
    path = WORK / f"timeline{SUFFIXES[data[0] % len(SUFFIXES)]}"
    path.write_bytes(data[1:])
    try:
        timeline = read_timeline(path, edl_rate=Fraction(25))
    except DublineError:
        return
    assert isinstance(timeline, otio.schema.Timeline)


if __name__ == "__main__":
    argv = _common.default_flags(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):  # no corpus directory given: seed one
        corpus = WORK / "corpus"
        corpus.mkdir()
        seeds(corpus)
        argv.append(str(corpus))
    atheris.Setup(argv, check)
    # OTIO loads its adapters by file path (no import hook sees them): read one file of each format
    # so they are loaded, then instrument every loaded function, so the fuzzer is guided through
    # the EDL and FCP XML grammars too, not only dubline's own code.
    warm = Path(tempfile.mkdtemp(prefix="dubline-fuzz-warm-"))
    seeds(warm)
    for seed in sorted(warm.iterdir()):
        check(seed.read_bytes())
    atheris.instrument_all()
    atheris.Fuzz()

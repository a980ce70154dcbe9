"""Property tests (hypothesis) of every parser a user or a client feeds: the span/timecode syntax,
the timeline reader's front door, the engine's request conversion and the frame-socket parser.

The invariant of each: whatever the input, the code returns a well-formed result or raises one of
the project's own errors (``DublineError``) — never another exception, never a hang. Each runs a
few hundred examples in a few seconds; tests/fuzz/ has the atheris harnesses for long runs.
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path

import pytest
from dubline.apps.server import convert, frame_protocol
from dubline.apps.server.security import MediaRoots
from dubline.core import timing
from dubline.core.errors import DublineError
from dubline_client import pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
RATES = st.sampled_from([Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(50),
                         Fraction(60000, 1001)])
# Text that looks like the span syntax often enough to reach past the first check.
SPAN_ALPHABET = st.sampled_from(list("0123456789:;-.s ") + ["00:00:", "-", "s", "e", "+", "\u0660", "\x00"])
SPANISH = st.lists(SPAN_ALPHABET, max_size=30).map("".join)


@FAST
@given(text=st.one_of(SPANISH, st.text(max_size=40)), rate=RATES, start=st.one_of(st.none(), SPANISH, st.just("01:00:00:00")))
def test_span_syntax_parses_or_raises_a_project_error(text: str, rate: Fraction, start: str | None) -> None:
    try:
        span = timing.parse_range(text, rate, start)
    except DublineError:
        return
    first, end = timing.range_to_frames(span, rate)
    assert 0 <= first < end


@FAST
@given(text=st.one_of(SPANISH, st.text(max_size=30)), rate=RATES)
def test_timecodes_rates_and_seconds_parse_or_raise_a_project_error(text: str, rate: Fraction) -> None:
    for call in (lambda: timing.timecode_to_frames(text, rate), lambda: timing.parse_rate(text),
                 lambda: timing.parse_seconds(text, "--audio-offset")):
        try:
            call()
        except DublineError:
            pass


@FAST
@given(frame=st.integers(0, 10**7), rate=RATES)
def test_timecode_round_trips(frame: int, rate: Fraction) -> None:
    if frame >= 24 * 3600 * timing.timecode_base(rate):
        return  # SMPTE timecode has 24 hours; past 99 h the text has three hour digits
    drop = timing.is_drop_frame_rate(rate)
    text = timing.frames_to_timecode(frame, rate, drop_frame=drop)
    assert timing.timecode_to_frames(text, rate) == frame


# -- the timeline reader ------------------------------------------------------------------------------

EDL = "TITLE: t\nFCM: NON-DROP FRAME\n\n001  AX       V     C        00:00:01:00 00:00:02:00 01:00:00:00 01:00:01:00\n"
XML = ('<?xml version="1.0"?><xmeml version="4"><sequence><name>s</name><rate><timebase>25</timebase></rate>'
       '<media><video><track><clipitem id="c"><name>a</name><in>0</in><out>25</out><start>0</start><end>25</end>'
       '</clipitem></track></video></media></sequence></xmeml>')
OTIO = '{"OTIO_SCHEMA": "Timeline.1", "name": "t", "tracks": {"OTIO_SCHEMA": "Stack.1", "children": []}}'


def _mutations(seed: str) -> st.SearchStrategy[str]:
    """The seed with a slice replaced by arbitrary text (stays near the grammar)."""
    return st.tuples(st.integers(0, len(seed)), st.integers(0, 40), st.text(max_size=40)).map(
        lambda cut: seed[: cut[0]] + cut[2] + seed[cut[0] + cut[1] :]
    )


@FAST
@given(choice=st.sampled_from([(".edl", EDL), (".xml", XML), (".otio", OTIO)]), data=st.data())
def test_timeline_reader_reads_or_raises_a_project_error(tmp_path: Path, choice, data) -> None:
    from dubline.interchange import read_timeline

    suffix, seed = choice
    text = data.draw(st.one_of(_mutations(seed), st.text(max_size=200)))
    path = tmp_path / f"timeline{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_timeline(path, edl_rate=Fraction(25))
    except DublineError:
        pass


# -- the engine's request conversion -------------------------------------------------------------------

@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[MediaRoots, Path]:
    work = tmp_path_factory.mktemp("convert")
    root = work / "media"
    (root / "out").mkdir(parents=True)
    for name in ("clip.mov", "dub.wav"):
        (root / name).write_bytes(b"x")
    (root / "escape").symlink_to(work)
    return MediaRoots([root]), root


def _paths(root: Path) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([str(root / "clip.mov"), str(root / "dub.wav"), str(root / "out" / "p.mov"),
                         str(root / "escape" / "x.mov"), str(root / ".." / "x.mov"), "/etc/passwd", "", "rel.mov",
                         str(root / "out" / "m.mkv"), str(root / "out" / "t.otio")]),
        st.text(max_size=30),
    )


def _times() -> st.SearchStrategy[pb.RationalTime]:
    return st.builds(pb.RationalTime, value=st.integers(-2**40, 2**40), rate_num=st.integers(-1, 2**31 - 1),
                     rate_den=st.integers(-1, 2**31 - 1))


@FAST
@given(data=st.data())
def test_render_request_conversion_checks_every_path_or_raises_a_project_error(roots, data) -> None:
    media_roots, root = roots
    paths = _paths(root)
    words = st.sampled_from(["", "retrieval", "wav2lip", "prores", "h264", "ffv1", "smile", "pad", "error", "bogus"])
    spec = pb.RenderSpec(
        video=data.draw(paths), audio=data.draw(paths), out=data.draw(paths), matte=data.draw(paths),
        otio=data.draw(paths), backend=data.draw(words), codec=data.draw(words), expression=data.draw(words),
        length_policy=data.draw(words), speaker=data.draw(st.one_of(paths, st.just("262,200@10"))),
        library=data.draw(st.lists(paths, max_size=3)), overwrite=data.draw(st.booleans()),
        backend_options=data.draw(st.dictionaries(st.sampled_from(["checkpoint", "device", "x"]), paths, max_size=2)),
    )
    if data.draw(st.booleans()):
        spec.span.text = data.draw(st.one_of(SPANISH, st.text(max_size=20)))
    else:
        spec.span.range.start.CopyFrom(data.draw(_times()))
        spec.span.range.duration.CopyFrom(data.draw(_times()))
    if data.draw(st.booleans()):
        spec.audio_offset.CopyFrom(data.draw(_times()))
    try:
        request = convert.render_request(spec, media_roots)
    except DublineError:
        return
    named = [*request.inputs().values(), *(p for p in request.outputs().values() if p is not None)]
    assert all(media_roots.inside(Path(os.path.realpath(p))) for p in named), named


@FAST
@given(raw=st.binary(max_size=300))
def test_raw_bytes_as_a_render_spec_convert_or_raise_a_project_error(roots, raw: bytes) -> None:
    from google.protobuf.message import DecodeError

    try:
        spec = pb.RenderSpec.FromString(raw)
    except DecodeError:
        return
    try:
        convert.render_request(spec, roots[0])
    except DublineError:
        pass


# -- the frame socket ----------------------------------------------------------------------------------

class _Stream:
    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.at, self.chunk = data, 0, chunk

    def recv_into(self, view, count: int) -> int:
        n = min(count, self.chunk, len(self.data) - self.at)
        view[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n

    def settimeout(self, seconds) -> None:
        pass


def _request_bodies() -> st.SearchStrategy[bytes]:
    """Bodies built field by field (sometimes right), then maybe cut or extended."""
    fixed = st.builds(
        lambda values: struct.pack("<qqqqiiBBBBII", *values),
        st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-5, 100), st.integers(-5, 100), st.integers(-2**63, 2**63 - 1),
                  st.integers(-2, 2**31 - 1), st.integers(-2, 2**31 - 1), st.integers(0, 3), st.integers(0, 3),
                  st.integers(0, 1), st.integers(0, 255), st.integers(0, 8), st.integers(0, 8)),
    )
    text = st.text(max_size=12).map(lambda t: struct.pack("<I", len(t.encode())) + t.encode())
    lying = st.integers(0, 2**32 - 1).map(lambda n: struct.pack("<I", n))
    pixels = st.binary(max_size=256).map(lambda b: struct.pack("<Q", len(b)) + b)
    body = st.tuples(fixed, st.lists(st.one_of(text, lying), min_size=0, max_size=5), pixels).map(
        lambda parts: parts[0] + b"".join(parts[1]) + parts[2])
    return st.one_of(body, st.binary(max_size=200))


@FAST
@given(body=_request_bodies(), cut=st.integers(0, 400))
def test_frame_request_bodies_decode_or_raise_a_protocol_error(body: bytes, cut: int) -> None:
    for candidate in (body, body[:cut]):
        try:
            request = frame_protocol.decode_request(candidate)
        except frame_protocol.ProtocolError:
            continue
        again = frame_protocol.decode_request(frame_protocol.encode_request(request)[frame_protocol.HEADER.size:])
        assert (again.video, again.audio, again.frame, again.pixels) == (request.video, request.audio, request.frame,
                                                                          request.pixels)


@FAST
@given(kind=st.integers(0, 2**16 - 1), declared=st.integers(0, 2**64 - 1), body=st.binary(max_size=64),
       magic=st.sampled_from([b"DBLF", b"DBLX"]), version=st.integers(0, 2), chunk=st.integers(1, 16))
def test_frame_messages_read_or_raise_a_protocol_error(kind, declared, body, magic, version, chunk) -> None:
    declared = declared if declared <= frame_protocol.MAX_BODY_BYTES // 1024 else declared % 256  # keep allocations small
    raw = frame_protocol.HEADER.pack(magic, version, kind, declared) + body
    try:
        message = frame_protocol.read_message(_Stream(raw, chunk))
    except frame_protocol.ProtocolError:
        return
    assert message is not None and len(message[1]) == declared <= len(body)


def test_a_declared_size_past_the_limit_is_refused_before_any_allocation() -> None:
    raw = frame_protocol.HEADER.pack(frame_protocol.MAGIC, frame_protocol.VERSION, 1, 2**63)
    with pytest.raises(frame_protocol.ProtocolError, match="exceeds"):
        frame_protocol.read_message(_Stream(raw, 16))


# -- what the atheris harnesses found (kept as regressions) ---------------------------------------------

def test_exponents_in_numbers_are_refused_not_computed() -> None:
    """fuzz_timing: ``Fraction("5e555555...")`` computed a power with millions of digits (a hang)."""
    for call in (lambda: timing.parse_rate("55555555e55555555555555555555555555555555"),
                 lambda: timing.parse_seconds("1e999999999", "--audio-offset"),
                 lambda: timing.parse_range("9" * 5000 + "-1", Fraction(25))):
        with pytest.raises(DublineError):
            call()


def test_frame_requests_with_absurd_audio_offsets_are_refused() -> None:
    """fuzz_frame_socket: an offset of 2**62 s decoded, and could not be encoded again."""
    request = frame_protocol.FrameRequest(5, 0, 10, 0, 1, 1, True, 0, 0, "/a.mp4", "/b.wav", "", "", b"")
    body = bytearray(frame_protocol.encode_request(request)[frame_protocol.HEADER.size:])
    struct.pack_into("<qii", body, 24, 2**62, 1, 1)  # value, rate_num, rate_den of the offset
    with pytest.raises(frame_protocol.ProtocolError, match="audio offset"):
        frame_protocol.decode_request(bytes(body))

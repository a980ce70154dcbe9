"""Renders of footage in the wild, made from the real shared clips the way devices store them:
phone clips turned sideways (90/180/270) and on irregular timestamps (gaps, jitter), anamorphic
camera originals (4:3 and 3:2 pixels), 10-bit ProRes 422 HQ, 10-bit HEVC with PQ tags, 1080i
top field first, ProRes 4444 with alpha.

Each asserts the render succeeds with the exact frame count on the (conform) grid, that the patch
carries the source's rotation, pixel aspect, bit depth, colour tags and field order, that the
mouth lands where the upright face's mouth is, and, for 10-bit sources, that pixels outside the
matte differ from the source no more than a codec-only round trip does (within 1.2x).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from dubline.core import landmarks as lm
from dubline.core.timing import frames_to_range
from dubline.pipeline import RenderRequest, render
from dubline.pipeline.analysis import analyse_clip
from dubline.pipeline.qc import run_qc
from dubline.stages import media
from dubline.stages.composite import lower_face_matte
from dubline.stages.media.colour import to_rgb
from footagegen import (
    Storage,
    deepen,
    reencode,
    to_pq,
    upright_frames,
    write_clip,
    yuv_planes,
)

pytestmark = pytest.mark.slow

FRAMES = 24
FIRST, END = 6, 18
SPAN = f"{FIRST}-{END}"
HDR10 = {"color_primaries": 9, "color_trc": 16, "colorspace": 9, "color_range": 1}
PRORES_HQ = {"profile": "3", "vendor": "apl0"}  # what the prores patch codec writes
PRORES_4444 = {"profile": "4", "vendor": "apl0"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, shared_media) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def upright(shared_media) -> list[np.ndarray]:
    return upright_frames(shared_media / "speaker_a.mp4", FRAMES + 4)[:FRAMES]


@pytest.fixture(scope="module")
def dub(shared_media) -> Path:
    return shared_media / "dub_en_16k.wav"


@pytest.fixture(scope="module")
def reference(clips, upright, cache):
    """The upright clip's face track: where the mouth is, as the editor sees the picture."""
    path = write_clip(clips / "upright.mp4", upright, Storage())
    return analyse_clip(path, cache_root=cache).faces


def _render(source: Path, dub: Path, cache: Path, codec: str, suffix: str = ".mov", matte: bool = True, **options):
    out = source.with_name(f"{source.stem}_{codec}_patch{suffix}")
    matte_path = source.with_name(f"{source.stem}_{codec}_matte.mov") if matte else None
    result = render(RenderRequest(video=source, audio=dub, span=SPAN, out=out, codec=codec, matte=matte_path,
                                  overwrite=True, **options), cache_root=cache)
    assert result.frames_written == END - FIRST and result.frames_patched >= (END - FIRST) // 2
    patch = media.probe(out).video
    assert patch.frame_count == END - FIRST
    return result, patch


def _frames(path: Path, first: int, end: int) -> list[media.VideoFrame]:
    return list(media.read_span(path, frames_to_range(first, end, media.probe(path).video.rate)))


def _assert_mouth_where_the_upright_mouth_is(source: Path, matte: Path, reference) -> None:
    """The matte, seen upright, sits on the upright clip's mouth: the landmarks went back to
    stored pixels correctly."""
    view = media.FrameView.of(media.probe(source).video)
    checked = 0
    for row, frame in enumerate(_frames(matte, 0, END - FIRST)):
        shown = view.analysis_image(frame.image)[..., 0].astype(np.float64)
        points = reference.landmarks[FIRST + row]
        if not shown.any() or not np.isfinite(points).all():
            continue
        expected = lower_face_matte(points, shown.shape)
        distance = np.hypot(*(_centroid(shown) - _centroid(expected)))
        assert distance < 0.15 * lm.inter_ocular_distance(points), (row, distance)
        checked += 1
    assert checked >= (END - FIRST) // 2


def _centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]]
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


def _assert_layout_copied(source: media.VideoStreamInfo, patch: media.VideoStreamInfo) -> None:
    assert patch.layout.display_matrix == source.layout.display_matrix
    assert patch.layout.sample_aspect_ratio == source.layout.sample_aspect_ratio
    assert patch.layout.field_order == source.layout.field_order or source.layout.field_order == "unknown"
    if patch.codec == "png":  # RGB storage: a YUV matrix and range do not apply
        assert (patch.colour.primaries, patch.colour.transfer) == (source.colour.primaries, source.colour.transfer)
    else:
        assert patch.colour == source.colour
    assert (patch.width, patch.height) == (source.width, source.height)


# ---- phones: rotation -----------------------------------------------------------------------

@pytest.mark.parametrize("rotation, codec", [(90, "h264"), (180, "h264"), (270, "png")])
def test_phone_clip_stored_sideways(clips, upright, dub, cache, reference, rotation, codec):
    source = write_clip(clips / f"rot{rotation}.mp4", upright, Storage(rotation=rotation))
    info = media.probe(source).video
    assert media.FrameView.of(info).orientation.rotation == rotation
    faces = analyse_clip(source, cache_root=cache).faces
    # The detector saw the upright face: the same landmarks as the upright clip's, in display pixels.
    both = faces.usable & reference.usable
    assert both.sum() >= FRAMES - 2
    assert np.nanmean(np.hypot(*(faces.landmarks[both] - reference.landmarks[both]).T)) < 2.5
    result, patch = _render(source, dub, cache, codec)
    _assert_layout_copied(info, patch)
    assert patch.bit_depth == info.bit_depth == 8
    _assert_mouth_where_the_upright_mouth_is(source, result.matte, reference)
    if codec == "png":  # lossless: every pixel outside the matte is the source's own, as stored
        for out, src, matte in zip(_frames(result.out, 0, END - FIRST), _frames(source, FIRST, END),
                                   _frames(result.matte, 0, END - FIRST)):
            outside = matte.image[..., 0] == 0
            assert np.array_equal(out.image[outside], src.image[outside])
        _assert_qc_agrees(result, source, dub, cache)


def _assert_qc_agrees(result, source: Path, dub: Path, cache: Path) -> None:
    """``qc`` (another entry point) sees the same grid, the same face and the untouched pixels."""
    report = run_qc(result.out, dub, source=source, span=SPAN, matte=result.matte, cache_root=cache)
    assert report.frames == report.expected_frames == END - FIRST
    assert report.outside_exact
    assert report.identity_distance is not None and report.identity_distance < 0.6


def test_wav2lip_gets_upright_faces_from_a_sideways_clip(clips, upright, dub, cache, reference):
    """The Wav2Lip path on a phone clip: upright crops in, the generated face back on the stored
    pixels (deterministic weights: the mouths are noise, the geometry is what is checked)."""
    source = write_clip(clips / "rot90_wav2lip.mp4", upright, Storage(rotation=90))
    result, patch = _render(source, dub, cache, "png", backend="wav2lip",
                            backend_options={"deterministic": True, "device": "cpu", "batch_size": 8})
    _assert_layout_copied(media.probe(source).video, patch)
    _assert_mouth_where_the_upright_mouth_is(source, result.matte, reference)
    for out, src, matte in zip(_frames(result.out, 0, END - FIRST), _frames(source, FIRST, END),
                               _frames(result.matte, 0, END - FIRST)):
        outside = matte.image[..., 0] == 0
        assert np.array_equal(out.image[outside], src.image[outside])


# ---- phones: variable frame rate ------------------------------------------------------------

def _shown_by_rule(pts: list[int], time_base: Fraction, rate: Fraction) -> list[int]:
    """docs/FOOTAGE.md's slot rule with exact fractions: slot k shows the last frame at or before
    the middle of the slot; the grid ends at the slot holding the last frame."""
    start = pts[0]
    last = int(Fraction(pts[-1] - start) * time_base * rate + Fraction(1, 2))
    return [max(i for i, p in enumerate(pts) if p <= start + (slot + Fraction(1, 2)) / (rate * time_base))
            for slot in range(last + 1)]


VFR_CASES = {
    # 25 fps in 1/90000 with frames 5, 9, 10 and 17 never recorded.
    "gaps": lambda: [(i, i * 3600) for i in range(FRAMES) if i not in (5, 9, 10, 17)],
    # every timestamp jittered by up to 4 ms, and frame 14 recorded twice 12 ms apart.
    "jitter": lambda: sorted(
        [(i, i * 3600 + (int(e) if i else 0)) for i, e in zip(range(FRAMES), np.random.default_rng(11).integers(-360, 361, FRAMES))]
        + [(14, 14 * 3600 + 1080 + 360)], key=lambda pair: pair[1]),
}


@pytest.mark.parametrize("case", list(VFR_CASES))
def test_variable_frame_rate_phone_clip(clips, upright, dub, cache, case):
    frames_and_pts = VFR_CASES[case]()
    pts = [p for _, p in frames_and_pts]
    source = write_clip(clips / f"vfr_{case}.mp4", [upright[i] for i, _ in frames_and_pts],
                        Storage(pts=pts, time_base=Fraction(1, 90000)))
    info = media.probe(source).video
    assert info.variable_rate and info.rate == 25
    shown = _shown_by_rule(pts, Fraction(1, 90000), Fraction(25))
    assert info.frame_count == len(shown)
    held, dropped = len(shown) - len(set(shown)), len(pts) - len(set(shown))
    assert (info.conform.held, info.conform.dropped) == (held, dropped)
    assert (held, dropped) == ((4, 0) if case == "gaps" else (0, 1))
    result, patch = _render(source, dub, cache, "png")
    assert patch.rate == 25 and not patch.variable_rate
    assert any(w.startswith("variable frame rate: conformed to 25 fps") for w in result.warnings)
    # Slot k of the patch is made from the source frame the rule shows there, decoded by pts.
    decoded = {}
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            decoded[frame.pts] = to_rgb(frame)[0]
    ordered = [decoded[p] for p in sorted(decoded)]
    for row, (out, matte) in enumerate(zip(_frames(result.out, 0, END - FIRST), _frames(result.matte, 0, END - FIRST))):
        outside = matte.image[..., 0] == 0
        assert np.array_equal(out.image[outside], ordered[shown[FIRST + row]][outside]), row
    if case == "gaps":
        _assert_qc_agrees(result, source, dub, cache)


# ---- camera originals: anamorphic -----------------------------------------------------------

@pytest.mark.parametrize("sar", [Fraction(4, 3), Fraction(3, 2)])
def test_anamorphic_camera_original(clips, upright, dub, cache, reference, sar):
    source = write_clip(clips / f"sar{sar.numerator}{sar.denominator}.mov", upright,
                        Storage(codec="prores_ks", pix_fmt="yuv422p10le", options=dict(PRORES_HQ),
                                sample_aspect_ratio=sar))
    info = media.probe(source).video
    assert info.width == round(336 / sar) and info.layout.sample_aspect_ratio == sar
    assert media.FrameView.of(info).display_size == (336, 252)
    result, patch = _render(source, dub, cache, "prores")
    _assert_layout_copied(info, patch)
    assert patch.bit_depth == info.bit_depth == 10
    _assert_mouth_where_the_upright_mouth_is(source, result.matte, reference)


# ---- 10 bits: ProRes 422 HQ, HEVC PQ, ProRes 4444 with alpha ---------------------------------

def _outside_errors(source: Path, patch: Path, reference: Path, matte: Path, planes: slice) -> dict[str, tuple[float, float]]:
    """Mean absolute error over the pixels outside the matte, per plane group (luma / chroma /
    alpha): ours (the patch) and the codec-only round trip (``reference``), both against the
    source's decoded code values. A chroma sample counts as outside when every pixel it covers is."""
    mattes = [f.image[..., 0] > 0 for f in _frames(matte, 0, END - FIRST)]
    src, ours, codec_only = yuv_planes(source, FIRST, END), yuv_planes(patch), yuv_planes(reference, FIRST, END)
    sums: dict[str, list[float]] = {}
    for row, inside in enumerate(mattes):
        for index in range(len(src[row]))[planes]:
            name = "luma" if index == 0 else "alpha" if index == 3 else "chroma"
            shape = src[row][index].shape
            if ours[row][index].shape != shape:
                continue
            factor_y, factor_x = inside.shape[0] // shape[0], inside.shape[1] // shape[1]
            covered = inside.reshape(shape[0], factor_y, shape[1], factor_x).any(axis=(1, 3))
            outside = ~covered
            ours_error = np.abs(ours[row][index] - src[row][index])[outside]
            codec_error = np.abs(codec_only[row][index] - src[row][index])[outside]
            entry = sums.setdefault(name, [0.0, 0.0, 0.0])
            entry[0] += ours_error.sum()
            entry[1] += codec_error.sum()
            entry[2] += outside.sum()
    return {name: (a / n, b / n) for name, (a, b, n) in sums.items()}


def _assert_within_codec_round_trip(errors: dict[str, tuple[float, float]]) -> None:
    for name, (ours, codec_only) in errors.items():
        assert ours <= 1.2 * codec_only + 1e-3, (name, ours, codec_only)


def test_ten_bit_prores_422_hq(clips, upright, dub, cache):
    source = write_clip(clips / "prores10.mov", deepen(upright),
                        Storage(codec="prores_ks", pix_fmt="yuv422p10le", options=dict(PRORES_HQ)))
    info = media.probe(source).video
    result, patch = _render(source, dub, cache, "prores")
    assert patch.bit_depth == info.bit_depth == 10 and patch.pixel_format == "yuv422p10le"
    _assert_layout_copied(info, patch)
    codec_only = reencode(source, clips / "prores10_codec_only.mov", "prores_ks", "yuv422p10le", PRORES_HQ)
    errors = _outside_errors(source, result.out, codec_only, result.matte, slice(0, 3))
    assert set(errors) == {"luma", "chroma"}
    _assert_within_codec_round_trip(errors)


def test_ten_bit_hevc_with_pq_tags(clips, upright, dub, cache):
    source = write_clip(clips / "hevc_pq.mp4", to_pq(upright),
                        Storage(codec="libx265", pix_fmt="yuv420p10le", colour=dict(HDR10),
                                options={"x265-params": "crf=12:keyint=8:log-level=error"}))
    info = media.probe(source).video
    assert info.colour == media.ColourTags("bt2020", "smpte2084", "bt2020nc", "tv") and info.bit_depth == 10
    result, patch = _render(source, dub, cache, "prores")
    _assert_layout_copied(info, patch)  # primaries, transfer, matrix and range: the NLE reads HDR10
    assert patch.bit_depth == 10
    with av.open(str(result.out)) as container:  # ProRes' own frame header says PQ too
        frame = next(container.decode(video=0))
        assert (frame.color_primaries, frame.color_trc, frame.colorspace) == (9, 16, 9)
    codec_only = reencode(source, clips / "hevc_codec_only.mov", "prores_ks", "yuv422p10le", PRORES_HQ)
    # 4:2:0 source, 4:2:2 patch: chroma has no common grid to compare on; luma does.
    _assert_within_codec_round_trip(_outside_errors(source, result.out, codec_only, result.matte, slice(0, 1)))


def test_prores_4444_with_alpha(clips, upright, dub, cache):
    height, width = upright[0].shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    alpha = np.clip(65535 * (1.4 - np.hypot((xs - width / 2) / width, (ys - height / 2) / height) * 2.2), 0, 65535)
    source = write_clip(clips / "prores4444.mov", deepen(upright),
                        Storage(codec="prores_ks", pix_fmt="yuva444p10le", options=dict(PRORES_4444),
                                alpha=alpha.astype(np.uint16)))
    info = media.probe(source).video
    assert info.alpha
    result, patch = _render(source, dub, cache, "prores4444")
    assert patch.alpha and patch.bit_depth == info.bit_depth
    _assert_layout_copied(info, patch)
    codec_only = reencode(source, clips / "prores4444_codec_only.mov", "prores_ks", "yuva444p10le", PRORES_4444)
    errors = _outside_errors(source, result.out, codec_only, result.matte, slice(0, 4))
    assert set(errors) == {"luma", "chroma", "alpha"}
    _assert_within_codec_round_trip(errors)
    # The alpha channel is the source's everywhere, inside the matte too.
    for ours, src in zip(yuv_planes(result.out), yuv_planes(source, FIRST, END)):
        assert np.abs(ours[3] - src[3]).max() <= 4


# ---- broadcast: 1080i top field first -------------------------------------------------------

def test_1080i_top_field_first(clips, upright, dub, cache):
    broadcast = []
    for image in upright:
        frame = np.zeros((1080, 1920, 3), np.uint8)
        frame[:, 240:1680] = cv2.resize(image, (1440, 1080), interpolation=cv2.INTER_CUBIC)
        broadcast.append(frame)
    source = write_clip(clips / "i1080.mp4", broadcast,
                        Storage(interlaced="tff", options={"crf": "16", "preset": "ultrafast", "g": "8"}))
    info = media.probe(source).video
    assert info.layout.field_order == "tt" and (info.width, info.height) == (1920, 1080)
    for codec, suffix in (("prores", ".mov"), ("h264", ".mp4")):
        _, patch = _render(source, dub, cache, codec, suffix, matte=False)
        assert patch.layout.field_order == "tt"
        out = source.with_name(f"i1080_{codec}_patch{suffix}")
        with av.open(str(out)) as container:
            assert all(frame.interlaced_frame for frame in container.decode(video=0))

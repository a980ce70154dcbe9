"""The media layer on footage in the wild, without face analysis (fast): display matrices as the
ffmpeg CLI applies them, the analysis view and its coordinate maps, the conform rule, writing the
source's layout/colour/depth/alpha, the 10-bit round trip, full-range and HDR pictures."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest
from dubline.apps.cli.main import main as cli
from dubline.core.timing import frames_to_range
from dubline.stages import media
from dubline.stages.composite import paste
from dubline.stages.media.colour import analysis_8bit, sixteen_bit_white, to_rgb
from dubline.stages.media.conform import STANDARD_RATES, conform, nominal_rate
from footagegen import Storage, deepen, reencode, to_pq, write_clip, yuv_planes
from mediagen import make_video, spec_for

ORIENTATIONS = [(degrees, hflip) for degrees in (0, 90, 180, 270) for hflip in (False, True)]


def _marker_clip(path, degrees: int, hflip: bool, image: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        stream.set_display_rotation(degrees, hflip=hflip)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 25)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg CLI is not installed")
@pytest.mark.parametrize("degrees, hflip", ORIENTATIONS)
def test_analysis_view_is_what_the_ffmpeg_cli_displays(tmp_path, degrees, hflip):
    """The eight exact display matrices, turned upright the way the ffmpeg CLI (autorotate) shows them."""
    image = np.random.default_rng(degrees + hflip).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    path = tmp_path / "marker.mov"
    _marker_clip(path, degrees, hflip, image)
    shown = tmp_path / "shown.raw"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    str(shown)], check=True)
    view = media.FrameView.of(media.probe(path).video)
    ours = view.analysis_image(image)
    assert np.array_equal(np.fromfile(shown, np.uint8).reshape(ours.shape), ours)
    assert view.display_size == (ours.shape[1], ours.shape[0])


def test_probe_reports_rotation_pixel_aspect_depth_and_field_order(tmp_path, capsys):
    frames = [np.full((48, 64, 3), 90, np.uint8)] * 3
    path = write_clip(tmp_path / "phone.mov", frames, Storage(codec="prores_ks", pix_fmt="yuv422p10le",
                                                              options={"profile": "3"}, rotation=90))
    video = media.probe(path).video
    assert (video.width, video.height) == (48, 64)  # stored sideways
    assert video.bit_depth == 10 and not video.alpha
    view = media.FrameView.of(video)
    assert (view.orientation.rotation, view.orientation.mirrored) == (90, False)
    assert view.display_size == (64, 48)
    assert cli(["probe", str(path)]) == 0
    text = capsys.readouterr().out
    assert "rotated 90° clockwise" in text and "shown 64x48" in text and "10-bit" in text
    assert cli(["probe", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)["video"]
    assert data["display"] == {"width": 64, "height": 48, "rotation": 90, "mirrored": False}
    assert data["bit_depth"] == 10 and data["layout"]["sample_aspect_ratio"] == "1/1"
    assert data["layout"]["display_matrix"] == list(video.layout.display_matrix)


@pytest.mark.parametrize("degrees, hflip", ORIENTATIONS)
@pytest.mark.parametrize("sar", [Fraction(1), Fraction(4, 3), Fraction(3, 2), Fraction(8, 9)])
def test_coordinates_map_both_ways(degrees, hflip, sar):
    from dubline.stages.media.orientation import Orientation

    matrix = _matrix(degrees, hflip)
    view = media.FrameView((120, 90), Orientation.from_matrix(matrix), sar)
    points = np.random.default_rng(5).uniform(0, 80, (68, 2))
    assert np.allclose(view.to_display(view.to_stored(points)), points)
    # A stored pixel's centre lands where the analysis image shows that pixel.
    stored = np.zeros((90, 120, 3), np.uint8)
    stored[30:33, 70:73] = 255  # a 3x3 marker centred on (71, 31)
    shown = view.analysis_image(stored)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : shown.shape[0], 0 : shown.shape[1]]
    centre = np.array([(xs * shown).sum(), (ys * shown).sum()]) / shown.sum()
    assert np.allclose(view.to_display(np.array([71.0, 31.0])), centre, atol=0.35)
    # Regions: a display crop and back is the stored picture itself (exact unless resampled).
    image = np.random.default_rng(1).integers(0, 65535, (90, 120, 3), dtype=np.uint16)
    box = (10, 12, 50, 40) if not (view.orientation.swap) else (12, 10, 40, 50)
    crop = view.display_region(image, box)
    assert crop.shape[:2] == (box[3] - box[1], box[2] - box[0]) and crop.dtype == np.uint16
    back, (x0, y0, x1, y1) = view.stored_region(crop, box, image.shape)
    if sar == 1:
        assert np.array_equal(back, image[y0:y1, x0:x1])
    else:
        inner = (slice(2, -2), slice(3, -3))  # the border repeats the crop's edge
        assert np.abs(back[inner].astype(float) - image[y0:y1, x0:x1][inner]).mean() < 9000  # noise resampled twice


def _matrix(degrees: int, hflip: bool) -> tuple[int, ...] | None:
    """The display matrix PyAV writes for set_display_rotation(degrees, hflip)."""
    radians = np.radians(degrees)
    a, b = round(np.cos(radians)), round(np.sin(radians))
    matrix = [a, -b, b, a]  # av_display_rotation_set with PyAV's sign
    if hflip:
        matrix = [-matrix[0], matrix[1], -matrix[2], matrix[3]]
    if matrix == [1, 0, 0, 1]:
        return None
    one = 1 << 16
    return (matrix[0] * one, matrix[1] * one, 0, matrix[2] * one, matrix[3] * one, 0, 0, 0, 1 << 30)


@pytest.mark.parametrize(
    "steps, time_base, expected",
    [
        ([3000] * 20 + [6000] + [3000] * 10 + [9000] + [3000] * 5, Fraction(1, 90000), Fraction(30)),  # gaps
        (list(np.diff(np.arange(301) * 3000 + np.random.default_rng(2).integers(-360, 360, 301))), Fraction(1, 90000),
         Fraction(30)),  # timestamps jittered by up to 4 ms around a 30 fps grid, 10 s
        ([1001] * 30 + [2002] * 3, Fraction(1, 30000), Fraction(30000, 1001)),
        ([33, 33, 34] * 20, Fraction(1, 1000), Fraction(30)),  # 30 fps in whole milliseconds
        ([80] * 20, Fraction(1, 1000), Fraction(25, 2)),  # 12.5 fps: no standard rate within 1 %
        ([2] * 30, Fraction(1, 240), Fraction(120)),
    ],
    ids=["gaps", "jitter", "ntsc-gaps", "ms-rounded", "12.5", "120"],
)
def test_nominal_rate_rule(steps, time_base, expected):
    pts = np.concatenate([[0], np.cumsum(steps)])
    assert nominal_rate(pts, time_base) == expected
    assert expected in STANDARD_RATES or expected == Fraction(25, 2)


def _shown_by_rule(pts: list[int], time_base: Fraction, rate: Fraction) -> list[int]:
    """The documented slot rule, written out with exact fractions: slot k shows the last frame at
    or before the middle of the slot; the grid ends at the slot holding the last frame."""
    start = pts[0]
    last = int(Fraction(pts[-1] - start) * time_base * rate + Fraction(1, 2))
    shown = []
    for slot in range(last + 1):
        middle = start + (slot + Fraction(1, 2)) / (rate * time_base)
        shown.append(max(i for i, p in enumerate(pts) if p <= middle))
    return shown


def test_conform_counts_holds_and_drops():
    # 25 fps in 1/90000: frames 5 and 6 missing (2 held), one extra frame 10 ms after frame 12 (dropped).
    pts = [i * 3600 for i in range(20) if i not in (5, 6)] + [12 * 3600 + 900]
    pts = sorted(pts)
    grid = conform(np.array(pts), Fraction(1, 90000))
    assert grid.rate == 25
    shown = _shown_by_rule(pts, Fraction(1, 90000), Fraction(25))
    assert list(grid.slot_pts) == [pts[i] for i in shown]
    assert (grid.held, grid.dropped, len(grid.slot_pts), grid.source_frames) == (2, 1, 20, 19)
    assert grid.span_counts(4, 8) == (2, 0)
    assert grid.span_counts(10, 15) == (0, 1)
    assert grid.describe() == "variable frame rate: conformed to 25 fps, 2 held, 1 dropped"


def test_probe_and_read_a_vfr_clip_with_gaps_on_its_grid(tmp_path, capsys):
    kept = [i for i in range(30) if i not in (7, 8, 15, 22)]
    pts = [i * 3600 for i in kept]
    path = make_video(tmp_path / "phone.mp4", spec_for("h264", frames=len(kept), pts=pts,
                                                       time_base=Fraction(1, 90000), first_index=0))
    video = media.probe(path).video
    assert video.variable_rate and video.rate == 25 and video.frame_count == 30
    assert (video.conform.held, video.conform.dropped) == (4, 0)
    frames = list(media.read_span(path, frames_to_range(5, 25, video.rate)))
    assert [f.index for f in frames] == list(range(5, 25))
    from mediagen import decode_index

    # mediagen numbers frames by position: slot k shows the last kept frame at or before it
    expected = [max(n for n, i in enumerate(kept) if i <= k) for k in range(5, 25)]
    assert [decode_index(f.image) for f in frames] == expected
    assert cli(["probe", str(path)]) == 0
    assert "variable frame rate: conformed to 25 fps, 4 held, 0 dropped" in capsys.readouterr().out
    assert cli(["probe", "--json", str(path)]) == 0
    conformed = json.loads(capsys.readouterr().out)["video"]["conform"]
    assert conformed == {"rate": "25/1", "source_frames": 26, "held": 4, "dropped": 0,
                         "note": "variable frame rate: conformed to 25 fps, 4 held, 0 dropped"}


LAYOUT = media.PictureLayout(display_matrix=_matrix(90, False), sample_aspect_ratio=Fraction(4, 3), field_order="tt")
HDR10 = media.ColourTags("bt2020", "smpte2084", "bt2020nc", "tv")


@pytest.mark.parametrize("codec, suffix, pix_fmt, field_coded", [
    ("prores", ".mov", "yuv422p10le", True),
    ("prores4444", ".mov", "yuv444p12le", True),
    ("dnxhr", ".mov", "yuv422p10le", False),
    ("h264", ".mp4", "yuv420p10le", True),
    ("png", ".mov", "rgb48be", False),
    ("ffv1", ".mkv", "gbrp16le", False),  # FFV1 codes 16-bit RGB planar
])
def test_patches_carry_layout_colour_and_depth(tmp_path, codec, suffix, pix_fmt, field_coded):
    frames = deepen([np.random.default_rng(i).integers(30, 220, (128, 256, 3), dtype=np.uint8) for i in range(3)])
    out = media.write_patch(frames, tmp_path / f"patch{suffix}", codec, Fraction(25), "01:00:00:00", HDR10,
                            layout=LAYOUT)
    video = media.probe(out).video
    assert video.pixel_format == pix_fmt
    assert video.layout.display_matrix == LAYOUT.display_matrix
    if suffix != ".mkv":  # Matroska's display size is not settable through PyAV (patch_warnings says so)
        assert video.layout.sample_aspect_ratio == Fraction(4, 3)
    if codec != "dnxhr":  # DNxHR codes progressive pictures; mov writes no field atom for it
        assert video.layout.field_order == "tt"
    rgb = codec in ("png", "ffv1")
    if rgb:  # RGB storage: primaries and transfer (a YUV matrix or range does not apply)
        assert (video.colour.primaries, video.colour.transfer) == ("bt2020", "smpte2084")
    else:
        assert video.colour == HDR10
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert frame.interlaced_frame == field_coded
        if codec != "dnxhr" and not rgb:  # the coded pictures carry them too (ProRes frame header, H.264 VUI;
            # DNxHR's header only knows 601/709: its container atom carries BT.2020, checked above)
            assert (frame.color_primaries, frame.color_trc, frame.colorspace) == (9, 16, 9)
    back = [f.image for f in media.read_span(out, frames_to_range(0, 3, Fraction(25)))]
    assert back[0].dtype == np.uint16
    if rgb:
        assert all(np.array_equal(a, b) for a, b in zip(frames, back))


def test_patch_warnings_name_what_a_codec_cannot_carry():
    video = media.VideoStreamInfo(
        index=0, codec="prores", width=1920, height=1080, pixel_format="yuva444p12le", rate=Fraction(25),
        time_base=Fraction(1, 25), frame_count=10, duration=None, start_timecode=None, colour=HDR10,
        variable_rate=False, bit_depth=12, alpha=True,
        layout=media.PictureLayout(sample_aspect_ratio=Fraction(4, 3), field_order="tt"))
    assert media.patch_warnings(video, "prores4444") == [
        "the source is 12-bit; prores4444 patches are 10-bit (ffv1 and png are 16-bit)"]
    assert media.patch_warnings(video, "png") == []
    notes = " | ".join(media.patch_warnings(video, "dnxhr", "ffv1"))
    assert "alpha" in notes and "12-bit" in notes and "interlaced (tt)" in notes and "matte (.mkv)" in notes


def test_prores_4444_alpha_survives_at_depth(tmp_path):
    alpha = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (128, 1))
    frames = deepen([np.random.default_rng(i).integers(30, 220, (128, 256, 3), dtype=np.uint8) for i in range(2)])
    out = media.write_patch([np.dstack([f, alpha]) for f in frames], tmp_path / "a.mov", "prores4444", Fraction(25))
    video = media.probe(out).video
    assert video.alpha and video.bit_depth == 12
    for frame in media.read_span(out, frames_to_range(0, 2, Fraction(25))):
        assert frame.alpha is not None and frame.alpha.dtype == np.uint16
        assert np.abs(frame.alpha.astype(int) - alpha).max() <= 128  # within two 10-bit steps


def test_ten_bit_422_round_trip_through_16_bit_rgb_is_exact(tmp_path):
    """Decode to 16-bit RGB and encode again: every 10-bit 4:2:2 code value comes back (+-2), luma
    and chroma, which is what keeps pixels outside the matte the source's own."""
    frames = deepen([np.random.default_rng(i).integers(0, 255, (64, 96, 3), dtype=np.uint8) for i in range(3)])
    source = write_clip(tmp_path / "ten.mov", frames, Storage(codec="prores_ks", pix_fmt="yuv422p10le",
                                                              options={"profile": "3"}))
    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            rgb, _ = to_rgb(frame)
            assert rgb.dtype == np.uint16
            back = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(
                format="yuv422p10le", interpolation=media_colour().FROM_RGB)
            for plane, original in zip(back.planes, frame.planes):
                a = np.frombuffer(plane, np.uint16).reshape(plane.height, -1)[:, : plane.width].astype(int)
                b = np.frombuffer(original, np.uint16).reshape(original.height, -1)[:, : original.width].astype(int)
                assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.01


def media_colour():
    from dubline.stages.media import colour

    return colour


def test_full_range_source_keeps_its_levels(tmp_path):
    """A full-range (pc) picture is written full range, not limited range tagged full."""
    frames = [np.tile(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], (48, 1, 3))] * 2
    source = write_clip(tmp_path / "full.mp4", frames, Storage(colour={"color_range": 2, "colorspace": 1}))
    video = media.probe(source).video
    assert video.colour.range == "pc"
    decoded = [f.image for f in media.read_span(source, frames_to_range(0, 2, video.rate))]
    out = media.write_patch(decoded, tmp_path / "p.mp4", "h264", video.rate, colour_tags=video.colour)
    assert media.probe(out).video.colour.range == "pc"
    again = [f.image for f in media.read_span(out, frames_to_range(0, 2, video.rate))]
    # Limited-range values tagged full would squeeze the ramp's ends to 16 and 235.
    ends = again[0][24, [1, -2]].mean(axis=1)
    assert ends[0] < 8 and ends[1] > 245, ends
    assert np.abs(again[0].astype(float) - decoded[0]).mean() < 2.0


def test_hdr_analysis_proxy_looks_like_the_sdr_picture():
    rng = np.random.default_rng(4)
    sdr = np.clip(rng.normal(110, 50, (32, 32, 3)), 0, 255).astype(np.uint8)
    pq = to_pq([sdr])[0]
    pq = np.rint(pq.astype(np.float64) * sixteen_bit_white() / 65535).astype(np.uint16)  # the decoded scale
    proxy = analysis_8bit(pq, "smpte2084", "bt2020")
    assert proxy.dtype == np.uint8
    # Faces graded at SDR levels come back as the SDR picture (bar the highlight shoulder).
    below_knee = sdr.max(axis=2) < 220
    difference = np.abs(proxy[below_knee].astype(int) - sdr[below_knee])
    assert np.mean(difference <= 1) > 0.98 and difference.max() <= 6
    assert np.corrcoef(proxy.ravel(), sdr.ravel())[0, 1] > 0.99
    plain = analysis_8bit(pq, None)  # PQ code values read as SDR: washed out, low contrast
    assert plain.std() < 0.8 * proxy.std()


def test_compositor_keeps_sixteen_bit_pixels_outside_the_matte():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 65535, (120, 120, 3), dtype=np.uint16)
    patch = rng.integers(0, 65535, (120, 120, 3), dtype=np.uint16)
    from dubline.stages.faces.geometry import CANONICAL_68

    landmarks = CANONICAL_68 * 50 + 60 - (CANONICAL_68 * 50).mean(axis=0)
    result = paste(frame, patch, landmarks)
    assert result.frame.dtype == np.uint16
    outside = result.matte == 0
    assert outside.any() and (~outside).any()
    assert np.array_equal(result.frame[outside], frame[outside])
    assert not np.array_equal(result.frame[~outside], frame[~outside])


def test_codec_only_reference_helpers(tmp_path):
    """The helpers the render tests measure precision with: a re-encode keeps every frame."""
    frames = deepen([np.random.default_rng(i).integers(0, 255, (32, 48, 3), dtype=np.uint8) for i in range(2)])
    source = write_clip(tmp_path / "s.mov", frames, Storage(codec="prores_ks", pix_fmt="yuv422p10le",
                                                            options={"profile": "3"}))
    again = reencode(source, tmp_path / "r.mov", "prores_ks", "yuv422p10le", {"profile": "3"})
    a, b = yuv_planes(source), yuv_planes(again)
    assert len(a) == len(b) == 2 and a[0][0].shape == b[0][0].shape == (32, 48)
    assert np.abs(a[0][0] - b[0][0]).mean() < 16  # ProRes on pixel noise is lossy, but close


@pytest.mark.parametrize("degrees, hflip", ORIENTATIONS)
def test_wav2lip_crops_are_upright_and_paste_back_where_they_came_from(degrees, hflip):
    """Wav2Lip was trained on upright faces: a sideways stored frame gives the same 96x96 crop as
    the upright picture, and the generated face goes back onto the stored pixels it came from."""
    from dubline.stages.backends.wav2lip.crops import crop_face, paste_face
    from dubline.stages.media.orientation import Orientation

    view = media.FrameView((120, 90), Orientation.from_matrix(_matrix(degrees, hflip)))
    upright = np.random.default_rng(degrees).integers(0, 255, (*view.display_shape, 3), dtype=np.uint8)
    stored = np.ascontiguousarray(view.orientation.undo(upright))
    box = np.array([10, 12, 60, 70]) if view.display_size[0] > 60 else np.array([5, 10, 60, 70])
    assert np.array_equal(crop_face(stored, box, view), crop_face(upright, box))
    face = np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    pasted = paste_face(stored, box, face, view)
    assert np.array_equal(view.orientation.apply(pasted), paste_face(upright, box, face))
    deep = paste_face(media.convert_depth(stored, np.uint16), box, face, view)  # a 16-bit frame stays 16-bit
    assert deep.dtype == np.uint16 and np.array_equal(media.to_8bit(deep), pasted)


@pytest.mark.parametrize("order", ["tt", "bb", "tb", "bt"])
def test_every_field_order_is_written_as_the_source_has_it(tmp_path, order):
    """ProRes keeps all four; H.264 only knows which field is first (tb -> tt, bt -> bb)."""
    frames = [np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)] * 2
    layout = media.PictureLayout(field_order=order)
    for codec, suffix, expected in (("prores", ".mov", order), ("h264", ".mp4", {"tb": "tt", "bt": "bb"}.get(order, order))):
        out = media.write_patch(frames, tmp_path / f"{codec}{suffix}", codec, Fraction(25), layout=layout)
        assert media.probe(out).video.layout.field_order == expected, codec

"""Face track: detection, tracking, speaker choice, usability reasons, smoothing, cache."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import pytest
from dubline.core import landmarks as convention
from dubline.core.cache import FrameCache
from dubline.core.errors import InvalidInputError, ModelNotFoundError, NoFaceError
from dubline.core.progress import CancelToken
from dubline.stages import media
from dubline.stages.faces import (
    FaceDetection,
    FaceTrackParams,
    SpeakerHint,
    detect_frame,
    detect_frames,
    geometry,
    inner_lip_aperture,
    landmark_jitter,
    stage,
    track_faces,
    track_from_detections,
)
from dubline.stages.faces.smooth import smooth_landmarks
from dubline.stages.faces.track import build_tracks, unusable_reason
from dubline.stages.media import VideoFrame

FRAMES = 40  # per clip: enough for tracking and jitter, cheap on a busy 2-core machine
RATE = 25


def _span(count: int, start: int = 0) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(otio.opentime.RationalTime(start, RATE), otio.opentime.RationalTime(count, RATE))


def _read(path: Path, count: int = FRAMES, scale: float = 1.0) -> list[VideoFrame]:
    frames = []
    for frame in media.read_span(path, _span(count)):
        image = frame.image
        if scale != 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frames.append(replace(frame, image=image))
    return frames


def _frame(index: int, image: np.ndarray) -> VideoFrame:
    return VideoFrame(index=index, pts=index, time=otio.opentime.RationalTime(index, RATE), image=image)


@pytest.fixture(scope="module")
def clip_a(shared_media: Path) -> list[VideoFrame]:
    return _read(shared_media / "speaker_a.mp4", scale=0.5)  # 422 px: IOD about 65 px


@pytest.fixture(scope="module")
def clip_b(shared_media: Path) -> list[VideoFrame]:
    return _read(shared_media / "speaker_b.mp4")  # 524 px: IOD about 100 px


@pytest.fixture(scope="module")
def detections_a(clip_a):
    return detect_frames(clip_a)


@pytest.fixture(scope="module")
def detections_b(clip_b):
    return detect_frames(clip_b)


@pytest.fixture(scope="module")
def searched_a(clip_a):
    """Every frame searched whole (no tracking): each has its own descriptor, as cuts need."""
    return detect_frames(clip_a, params=FaceTrackParams(detect_every=1))


@pytest.fixture(scope="module")
def searched_b(clip_b):
    return detect_frames(clip_b, params=FaceTrackParams(detect_every=1))


# ---------------------------------------------------------------------------------------------
# Real clips: a face on every frame, jitter lower after smoothing


@pytest.mark.slow
@pytest.mark.parametrize("name", ["a", "b"])
def test_real_clip_face_on_every_frame_and_smoothing_lowers_jitter(name, request):
    indices, detections = request.getfixturevalue(f"detections_{name}")
    track = track_from_detections(indices, detections)
    assert len(track) == FRAMES
    assert track.present.all() and (track.reason == "").all()
    assert np.isfinite(track.landmarks_raw).all() and np.isfinite(track.landmarks).all()
    assert track.speaker_choice == "only_face" and (track.track_id == track.speaker_track_id).all()
    raw, smoothed = landmark_jitter(track.landmarks_raw), landmark_jitter(track.landmarks)
    print(f"speaker_{name}: anchor jitter raw {raw:.4f} IOD/frame, smoothed {smoothed:.4f}")
    assert smoothed < 0.9 * raw
    # Smoothing keeps speech: the smoothed aperture still follows the raw one closely.
    raw_aperture = inner_lip_aperture(track.landmarks_raw)
    assert np.corrcoef(raw_aperture, track.aperture)[0, 1] > 0.9
    assert track.aperture.max() - track.aperture.min() > 0.05  # the mouth does move in these clips
    # Pose maps the eye centres near the canonical ones; lip shape is in that frame.
    eyes = geometry.apply_affine(track.pose[0], geometry.eye_centres(track.landmarks[0]))
    np.testing.assert_allclose(eyes, geometry.eye_centres(geometry.CANONICAL_68), atol=0.04)
    assert track.lip_shape.shape == (FRAMES, 20, 2) and np.all((track.lip_shape > 0.2) & (track.lip_shape < 0.9))
    assert track.descriptors.shape == (FRAMES, 128) and track.boxes.shape == (FRAMES, 4)


@pytest.mark.slow
def test_aperture_matches_shared_convention(detections_a):
    _, detections = detections_a
    for faces in detections[:5]:
        points = faces[0].landmarks
        assert inner_lip_aperture(points) == pytest.approx(convention.inner_lip_aperture(points), rel=1e-6)
        assert geometry.inter_ocular_distance(points) == pytest.approx(convention.inter_ocular_distance(points), rel=1e-6)


@pytest.mark.slow
def test_detections_are_full_resolution_and_identity_is_stable(clip_a, detections_a):
    _, detections = detections_a
    face = detections[0][0]
    height, width = clip_a[0].image.shape[:2]
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    inside = (face.landmarks[:, 0] > x0 - 20) & (face.landmarks[:, 0] < x1 + 20)
    assert inside.all()
    assert face.landmarks.dtype == np.float32 and face.descriptor.shape == (128,)
    described = [f[0].descriptor for f in detections if f[0].descriptor is not None]
    assert len(described) == 2  # the anchors 0 and 24; tracked frames carry none
    distances = [np.linalg.norm(d - face.descriptor) for d in described]
    assert max(distances) < 0.4  # one person throughout


# ---------------------------------------------------------------------------------------------
# Two faces side by side: speaker_a talks (left), a still frame of speaker_b is silent (right)


def _activity_from_audio(path: Path, count: int) -> np.ndarray:
    """Per-frame 0..1 loudness of the clip's own audio (a stand-in for voice activity)."""
    audio = media.read_audio(path, None, 16000, True).samples
    hop = 16000 // RATE
    rms = np.array([np.sqrt(np.mean(audio[i * hop : (i + 1) * hop] ** 2)) for i in range(count)])
    return (rms - rms.min()) / (rms.max() - rms.min())


@pytest.fixture(scope="module")
def two_faces(shared_media: Path, clip_b):
    side = 300
    talker = _read(shared_media / "speaker_a.mp4")
    silent = cv2.resize(clip_b[0].image, (side, side), interpolation=cv2.INTER_AREA)
    frames = [
        _frame(f.index, np.hstack([cv2.resize(f.image, (side, side), interpolation=cv2.INTER_AREA), silent]))
        for f in talker
    ]
    indices, detections = detect_frames(frames)
    activity = _activity_from_audio(shared_media / "speaker_a.mp4", len(frames))
    return frames, indices, detections, activity


def _is_left(track, width: int = 300) -> bool:
    present = track.present
    return bool(present.any() and np.all(track.boxes[present, 2] <= width + 1))


@pytest.mark.slow
def test_two_faces_speech_activity_picks_the_talker(two_faces):
    frames, indices, detections, activity = two_faces
    assert all(len(d) == 2 for d in detections)
    track = track_from_detections(indices, detections, speech_activity=activity)
    assert track.speaker_choice == "speech"
    assert _is_left(track) and track.present.all()
    assert (track.face_count == 2).all()
    # Mirrored layout (talker on the right): still the talker, so position is not what decides.
    mirrored = [[replace(d, box=(600 - d.box[2], d.box[1], 600 - d.box[0], d.box[3])) for d in faces] for faces in detections]
    track = track_from_detections(indices, mirrored, speech_activity=activity)
    assert not _is_left(track) and track.present.all()


@pytest.mark.slow
def test_two_faces_without_activity_falls_back_to_mouth_motion(two_faces):
    _, indices, detections, _ = two_faces
    track = track_from_detections(indices, detections)
    assert track.speaker_choice == "motion" and _is_left(track)


@pytest.mark.slow
def test_speaker_by_point_box_and_reference_image(two_faces, shared_media: Path):
    frames, indices, detections, activity = two_faces
    frame_index = int(indices[10])
    right_face = next(d for d in detections[10] if d.box[0] >= 300)
    cx, cy = (right_face.box[0] + right_face.box[2]) / 2, (right_face.box[1] + right_face.box[3]) / 2
    by_point = track_from_detections(indices, detections, speech_activity=activity, speaker=SpeakerHint(frame_index, point=(cx, cy)))
    assert by_point.speaker_choice == "point" and not _is_left(by_point)
    by_box = track_from_detections(indices, detections, speaker=SpeakerHint(frame_index, box=(320, 20, 580, 280)))
    assert by_box.speaker_choice == "box" and not _is_left(by_box)

    # Reference images are other frames of each person than the ones in the clip.
    reference_b = next(media.read_span(shared_media / "speaker_b.mp4", _span(1, start=100))).image
    by_reference = track_from_detections(indices, detections, speech_activity=activity, speaker=SpeakerHint(reference_image=reference_b))
    assert by_reference.speaker_choice == "reference" and not _is_left(by_reference)
    reference_a = next(media.read_span(shared_media / "speaker_a.mp4", _span(1, start=110))).image
    by_reference = track_from_detections(indices, detections, speaker=SpeakerHint(reference_image=reference_a))
    assert _is_left(by_reference)

    with pytest.raises(NoFaceError, match="frame"):
        track_from_detections(indices, detections, speaker=SpeakerHint(frame_index, point=(5, 5)))
    with pytest.raises(NoFaceError, match="reference"):
        track_from_detections(indices, detections, speaker=SpeakerHint(reference_image=np.zeros((200, 200, 3), np.uint8)))
    with pytest.raises(InvalidInputError, match="outside the span"):
        track_from_detections(indices, detections, speaker=SpeakerHint(999, point=(cx, cy)))
    with pytest.raises(InvalidInputError):
        SpeakerHint(3)
    with pytest.raises(InvalidInputError, match="speech_activity"):
        track_from_detections(indices, detections, speech_activity=activity[:5])


# ---------------------------------------------------------------------------------------------
# Synthetic tracks: the speaker choice is driven by the activity, not by size or order


def _template_face(centre_x: float, face_width: float, mouth_open: float) -> np.ndarray:
    return convention.face_template_68((centre_x, 200.0), face_width, mouth_open).astype(np.float32)


def _fake_detection(points: np.ndarray, descriptor: np.ndarray, score: float = 1.5) -> FaceDetection:
    x0, y0 = points.min(axis=0) - 10
    x1, y1 = points.max(axis=0) + 10
    return FaceDetection((float(x0), float(y0), float(x1), float(y1)), score, points, descriptor)


def test_speaker_choice_follows_activity_among_moving_mouths():
    rng = np.random.default_rng(3)
    count = 60
    activity = (np.sin(np.arange(count) / 3.0) > 0).astype(float)
    # Both mouths move; only the small one moves with the activity. The big one moves more.
    talker_open = 0.02 + 0.05 * activity + rng.normal(0, 0.003, count)
    other_open = 0.02 + 0.08 * np.abs(np.sin(np.arange(count) / 1.3 + 1))
    id_talker, id_other = rng.normal(0, 0.1, 128), rng.normal(0, 0.1, 128)
    detections = [
        [
            _fake_detection(_template_face(600, 320, other_open[i]), (id_other + rng.normal(0, 0.01, 128)).astype(np.float32)),
            _fake_detection(_template_face(200, 200, talker_open[i]), (id_talker + rng.normal(0, 0.01, 128)).astype(np.float32)),
        ]
        for i in range(count)
    ]
    indices = np.arange(100, 100 + count)
    track = track_from_detections(indices, detections, speech_activity=activity)
    assert track.speaker_choice == "speech" and np.nanmax(track.boxes[:, 2]) < 400
    # Without activity the busiest mouth wins; with no mouth moving, the largest face.
    assert np.nanmin(track_from_detections(indices, detections).boxes[:, 0]) > 400
    still = [[replace(d, landmarks=_template_face((d.box[0] + d.box[2]) / 2, d.box[2] - d.box[0] - 20, 0.02)) for d in faces] for faces in detections]
    largest = track_from_detections(indices, still)
    assert largest.speaker_choice == "largest" and np.nanmin(largest.boxes[:, 0]) > 400


# ---------------------------------------------------------------------------------------------
# Tracking: one track per person, re-acquired after cuts


def test_tracked_faces_continue_their_track_without_descriptors():
    """Faces tracked from the previous frame carry no descriptor but say which face they continue:
    two people crossing (their boxes swap) stay two tracks, each with its own identity."""
    rng = np.random.default_rng(5)
    identity = [rng.normal(0, 0.1, 128).astype(np.float32) for _ in range(2)]
    frames = []
    for i in range(30):
        faces = []
        for person, start in enumerate((150.0, 650.0)):
            x = start + (i * 17.0 if person == 0 else -i * 17.0)  # they pass each other around frame 15
            points = _template_face(x, 200, 0.03)
            detection = _fake_detection(points, identity[person] if i % 10 == 0 else None)
            faces.append(replace(detection, tracked_from=None if i % 10 == 0 else person))
        frames.append(faces)
    tracks = build_tracks(frames, FaceTrackParams())
    assert len(tracks) == 2
    for track in tracks:
        firsts = track.detections[0].box[0]
        person = 0 if firsts < 400 else 1
        assert all(track.detections[p] is frames[p][person] for p in range(30))
        assert np.allclose(track.mean_descriptor, identity[person])


@pytest.mark.slow
def test_tracks_reacquire_the_same_person_after_cuts(searched_a, searched_b):
    (_, dets_a), (_, dets_b) = searched_a, searched_b
    # A, cut to B, cut back to A (its face elsewhere in frame), gap of empty frames, A again.
    shifted = [[replace(d, box=(d.box[0] + 500, d.box[1], d.box[2] + 500, d.box[3]), landmarks=d.landmarks + [500, 0]) for d in f] for f in dets_a[10:15]]
    sequence = dets_a[:5] + dets_b[:5] + shifted + [[]] * 3 + dets_a[20:25]
    tracks = build_tracks(sequence, FaceTrackParams())
    assert len(tracks) == 2
    a_track = next(t for t in tracks if 0 in t.detections)
    assert sorted(a_track.detections) == [*range(5), *range(10, 15), *range(18, 23)]
    b_track = next(t for t in tracks if t is not a_track)
    assert sorted(b_track.detections) == list(range(5, 10))
    # A cut straight from one shot of A to another: same track, but smoothing restarts at the cut.
    cut = dets_a[:8] + shifted
    track = track_from_detections(np.arange(len(cut)), cut)
    assert len(set(track.track_id.tolist())) == 1 and track.present.all()
    np.testing.assert_allclose(track.landmarks[8:, 30, 0] - track.landmarks_raw[8:, 30, 0], 0, atol=15)
    np.testing.assert_allclose(track.landmarks[:8, 30, 0] - track.landmarks_raw[:8, 30, 0], 0, atol=15)


# ---------------------------------------------------------------------------------------------
# Frames without a usable face


@pytest.mark.slow
def test_frames_without_a_face_are_marked_and_nothing_crashes(clip_a):
    rng = np.random.default_rng(0)
    shape = clip_a[0].image.shape
    black = np.zeros(shape, np.uint8)
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    images = [f.image for f in clip_a[:4]] + [black, noise] + [f.image for f in clip_a[4:8]]
    frames = [_frame(i, image) for i, image in enumerate(images)]
    track = track_faces(frames)
    assert list(track.reason) == [""] * 4 + ["no_face", "no_face"] + [""] * 4
    assert list(track.present) == [True] * 4 + [False, False] + [True] * 4
    assert np.isnan(track.landmarks[4:6]).all() and (track.track_id[4:6] == -1).all()
    assert np.isfinite(track.landmarks[6:]).all()

    nothing = track_faces([_frame(0, black), _frame(1, noise), _frame(2, np.zeros((12, 16, 3), np.uint8))])
    assert nothing.speaker_choice == "none" and nothing.speaker_track_id == -1
    assert list(nothing.reason) == ["no_face"] * 3 and not nothing.present.any()
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        detect_frame(np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidInputError, match="twice"):
        track_faces([_frame(0, black), _frame(0, black)])


@pytest.mark.slow
def test_covered_mouth_is_tracked_and_marked_occluded(clip_b, detections_b):
    _, detections = detections_b
    x0, y0, x1, y1 = (int(v) for v in detections[0][0].box)
    frames = []
    for frame in clip_b[:8]:
        image = frame.image.copy()
        if frame.index in (3, 4):  # a hand-coloured block over the mouth and chin
            image[int(y0 + 0.65 * (y1 - y0)) : y1 + 20, x0 - 10 : x1 + 10] = (200, 180, 160)
        frames.append(replace(frame, image=image))
    track = track_faces(frames)
    assert track.present.all()
    assert list(track.reason) == ["", "", "", "occluded", "occluded", "", "", ""]
    assert len(set(track.track_id.tolist())) == 1
    # Unusable frames keep their raw fit and are not smoothed into their neighbours.
    np.testing.assert_array_equal(track.landmarks[3:5], track.landmarks_raw[3:5])
    assert np.isfinite(track.pose).all()


@pytest.mark.slow
def test_unusable_reasons(detections_b):
    _, detections = detections_b
    face = detections[0][0]
    params = FaceTrackParams()
    assert unusable_reason(face, params) == ""
    assert unusable_reason(face, replace(params, min_iod_px=1000.0)) == "too_small"
    assert unusable_reason(replace(face, score=-0.2), params) == "occluded"
    collapsed = face.landmarks.copy()
    collapsed[48:68] = collapsed[48:68].mean(axis=0)  # lips collapsed onto one point
    collapsed[0:17] = collapsed[30]  # jaw collapsed onto the nose tip
    assert unusable_reason(replace(face, landmarks=collapsed), params) == "occluded"

    # Turned away: slide the nose tip (and the nose) towards one jaw end.
    points = face.landmarks.copy()
    jaw_span = points[16, 0] - points[0, 0]
    turned = points.copy()
    turned[27:36, 0] = points[0, 0] + 0.12 * jaw_span
    assert geometry.yaw_ratio(turned) < -params.max_abs_yaw
    assert unusable_reason(replace(face, landmarks=turned), params) == "turned_away"
    mirrored = points[geometry.MIRROR] * [-1, 1]
    assert geometry.yaw_ratio(mirrored) == pytest.approx(-geometry.yaw_ratio(points), abs=1e-9)

    # In a track, the reason is set per frame and the frame is still present.
    sequence = [[f[0]] for f in detections[:10]]
    sequence[3] = [replace(sequence[3][0], score=-0.25)]
    track = track_from_detections(np.arange(10), sequence)
    assert track.reason[3] == "occluded" and track.present[3] and not track.usable[3]
    assert track.usable.sum() == 9


# ---------------------------------------------------------------------------------------------
# Geometry and smoothing on synthetic shapes


def test_similarity_transform_and_pose_recover_a_known_motion():
    angle, scale, shift = np.radians(12), 240.0, np.array([310.0, 95.0])
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle)], [scale * np.sin(angle), scale * np.cos(angle)]])
    placed = geometry.CANONICAL_68 @ matrix.T + shift
    pose = geometry.pose_to_canonical(placed)
    np.testing.assert_allclose(geometry.apply_affine(pose, placed), geometry.CANONICAL_68, atol=1e-9)
    np.testing.assert_allclose(geometry.invert_affine(pose)[:, :2], matrix, atol=1e-9)
    assert geometry.inter_ocular_distance(placed) == pytest.approx(scale * geometry.CANONICAL_IOD)
    assert geometry.yaw_ratio(placed) == pytest.approx(0.0, abs=1e-9)
    assert geometry.fit_residual(placed) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(geometry.lip_shape(placed), geometry.CANONICAL_68[48:68], atol=1e-9)
    assert landmark_jitter(np.stack([placed] * 5)) == pytest.approx(0.0)


def test_smoothing_removes_noise_but_keeps_mouth_motion():
    rng = np.random.default_rng(7)
    count = 50
    truth = []
    for i in range(count):
        mouth = 0.03 + 0.03 * (1 + np.sin(i / 2.0))  # a syllable every ~12 frames
        truth.append(_template_face(300 + 2.0 * i, 300, mouth))
    truth = np.stack(truth)
    noisy = truth + rng.normal(0, 1.5, truth.shape)  # detector noise of 1.5 px
    present = np.ones(count, bool)
    present[20] = False  # a missing frame splits the smoothing runs
    noisy[20] = np.nan
    smoothed, poses = smooth_landmarks(noisy, present, FaceTrackParams())
    assert np.isnan(smoothed[20]).all() and np.isnan(poses[20]).all()
    keep = present
    assert np.abs(smoothed[keep] - truth[keep]).mean() < 0.75 * np.abs(noisy[keep] - truth[keep]).mean()
    # Jitter drops to near the true motion (the face slides 2 px per frame).
    true_jitter = landmark_jitter(truth)
    assert abs(landmark_jitter(smoothed) - true_jitter) < 0.25 * (landmark_jitter(noisy) - true_jitter)
    true_aperture = inner_lip_aperture(truth[keep])
    assert np.corrcoef(inner_lip_aperture(smoothed[keep]), true_aperture)[0, 1] > 0.95
    amplitude = np.ptp(inner_lip_aperture(smoothed[keep])) / np.ptp(true_aperture)
    assert 0.8 < amplitude < 1.3


# ---------------------------------------------------------------------------------------------
# Cache: a second call computes nothing; an overlapping span computes only its new frames


def _counting(monkeypatch) -> dict[str, int]:
    """Count the face stage's per-frame work: whole-frame detections and tracked frames."""
    calls = {"detect": 0, "track": 0}
    real_detect, real_track = stage.detect_frame, stage.track_frame

    def detect(image, params):
        calls["detect"] += 1
        return real_detect(image, params)

    def track(image, previous, params):
        calls["track"] += 1
        return real_track(image, previous, params)

    monkeypatch.setattr(stage, "detect_frame", detect)
    monkeypatch.setattr(stage, "track_frame", track)
    return calls


@pytest.mark.slow
def test_cache_serves_repeat_and_overlapping_spans(clip_a, tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    params = FaceTrackParams()
    cache = stage.detection_cache("fingerprint-a", params, root=tmp_path)
    assert isinstance(cache, FrameCache)
    events = []
    first = track_faces(clip_a[:10], frame_count=10, cache=cache, progress=lambda *e: events.append(e))
    assert calls == {"detect": 1, "track": 9} and events[-1] == ("faces.detect", 10, 10)
    second = track_faces(clip_a[:10], cache=stage.detection_cache("fingerprint-a", params, root=tmp_path))
    assert sum(calls.values()) == 10  # nothing recomputed
    for name in ("present", "reason", "boxes", "landmarks_raw", "landmarks", "pose", "aperture", "descriptors", "track_id"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)
    # Frames 10-14 continue the tracking from cached frame 9: the same results an unbroken read gives.
    overlapping = track_faces(clip_a[5:15], cache=cache)
    assert sum(calls.values()) == 15 and overlapping.present.all()
    # Tracking/smoothing parameters do not change the cache key; detection parameters do, and so
    # does how often the whole frame is searched (it changes what tracked frames hold).
    track_faces(clip_a[:10], params=replace(params, pose_window=5), cache=stage.detection_cache("fingerprint-a", replace(params, pose_window=5), root=tmp_path))
    assert sum(calls.values()) == 15
    unbroken = track_faces(clip_a[:15])
    np.testing.assert_array_equal(overlapping.landmarks_raw[5:], unbroken.landmarks_raw[10:])
    assert stage.detection_cache("fingerprint-a", replace(params, detect_max_side=320), root=tmp_path).get_many(range(10)) == {}
    assert stage.detection_cache("fingerprint-a", replace(params, detect_every=12), root=tmp_path).get_many(range(10)) == {}


@pytest.mark.slow
def test_only_results_reached_from_an_anchor_are_cached(clip_a, tmp_path, monkeypatch):
    """A read that starts between anchors computes its frames from where it started; what the cache
    holds for a frame must not depend on that, so only frames from the next anchor on are stored."""
    calls = _counting(monkeypatch)
    params = FaceTrackParams(detect_every=8)
    cache = stage.detection_cache("fingerprint-a", params, root=tmp_path)
    track_faces(clip_a[5:20], params=params, cache=cache)
    assert sorted(cache.get_many(range(40))) == list(range(8, 20))
    assert calls["detect"] == 3  # frame 5 (the read's start) and the anchors 8 and 16
    # Read from the anchor, frames 8-19 come from the cache and equal an unbroken read's.
    calls.update(detect=0, track=0)
    again = track_faces(clip_a[0:20], params=params, cache=cache)
    assert calls == {"detect": 1, "track": 7}
    np.testing.assert_array_equal(again.landmarks_raw, track_faces(clip_a[0:20], params=params).landmarks_raw)


@pytest.mark.slow
def test_tracked_frames_agree_with_whole_frame_detection(clip_a, detections_a):
    """Between anchors each face is found again near where it was: the landmarks and the mouth
    opening are those a whole-frame search finds, without a descriptor on the tracked frames."""
    _, tracked = detections_a
    _, detected = detect_frames(clip_a, params=FaceTrackParams(detect_every=1))
    assert [len(f) for f in tracked] == [len(f) for f in detected] == [1] * FRAMES
    assert tracked[0][0].descriptor is not None and all(f[0].descriptor is None for f in tracked[1:24])
    assert all(f[0].tracked_from == 0 for f in tracked[1:24]) and tracked[24][0].tracked_from is None
    iod = np.array([geometry.inter_ocular_distance(f[0].landmarks) for f in detected])
    shift = np.array([np.abs(t[0].landmarks - d[0].landmarks).mean() for t, d in zip(tracked, detected)]) / iod
    assert shift.mean() < 0.03
    apertures = [(inner_lip_aperture(t[0].landmarks), inner_lip_aperture(d[0].landmarks)) for t, d in zip(tracked, detected)]
    assert np.corrcoef(np.array(apertures).T)[0, 1] > 0.95
    assert min(f[0].score for f in tracked) > FaceTrackParams().min_score


@pytest.mark.slow
def test_cancel_stops_the_stage(clip_a):
    token = CancelToken()
    token.cancel()
    from dubline.core.errors import CancelledError

    with pytest.raises(CancelledError):
        track_faces(clip_a[:3], cancel=token)


# ---------------------------------------------------------------------------------------------
# FAN backend: never downloads; clear error without package or weights


def _has_face_alignment() -> bool:
    return importlib.util.find_spec("face_alignment") is not None


@pytest.mark.slow
def test_fan_backend_without_weights_raises_model_not_found(clip_b, tmp_path):
    params = FaceTrackParams(landmark_backend="fan", models_dir=str(tmp_path))
    with pytest.raises(ModelNotFoundError) as raised:
        detect_frame(clip_b[0].image, params)
    message = str(raised.value)
    if _has_face_alignment():
        assert str(tmp_path / "face_alignment" / "checkpoints") in message
    else:
        assert "face-alignment" in message
    assert not any(tmp_path.rglob("*.zip"))  # nothing was fetched


@pytest.mark.slow
@pytest.mark.weights
def test_fan_backend_with_local_weights(clip_b):
    if not _has_face_alignment():
        pytest.skip("face-alignment is not installed")
    from dubline.stages.faces.fan import fan_weights_path

    if not fan_weights_path().is_file():
        pytest.skip(f"FAN weights not in the model directory ({fan_weights_path()})")
    fan = detect_frame(clip_b[0].image, FaceTrackParams(landmark_backend="fan"))
    dlib_fit = detect_frame(clip_b[0].image)
    assert len(fan) == len(dlib_fit) == 1
    difference = np.linalg.norm(fan[0].landmarks - dlib_fit[0].landmarks, axis=1).mean()
    assert difference < 0.15 * geometry.inter_ocular_distance(dlib_fit[0].landmarks)

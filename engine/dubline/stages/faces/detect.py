"""Per-frame face analysis: every face in one image, with landmarks and identity, or the faces of
the previous frame found again.

``detect_frame`` searches the whole image (HOG on a downscaled copy, 68-point landmarks at full
resolution, the 128-d identity descriptor of each face): the expensive call. ``track_frame`` looks
for each face of the previous frame only in a small window around where it was, scaled so the face
is about ``track_face_px`` wide, and fits its landmarks; it computes no descriptor (identity does not
change from one frame to the next) and gives up (None) as soon as one face is not found again, or
is found with a score below ``track_min_score`` (HOG scores at the window's scale are not those of
the whole-frame search, and the usability rules judge covered mouths by the latter), so the caller
searches the whole frame instead. ``stage.detect_frames`` decides which to call.
"""

from __future__ import annotations

import cv2
import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.stages.faces import geometry, models
from dubline.stages.faces.types import FaceDetection, FaceTrackParams

Box = tuple[float, float, float, float]

#: Boxes smaller than this (pixels) are HOG's noise, not faces.
_MIN_BOX_PX = 8
#: dlib's HOG: 8-pixel cells, and a pyramid whose levels shrink by 5/6.
_HOG_CELL = 8
_PYRAMID_STEP = 6 / 5


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InvalidInputError(f"expected an RGB uint8 image of shape (H, W, 3), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)  # dlib rejects strided views (e.g. decoded frames with padding)


def _whole_frame_scale(image: np.ndarray, params: FaceTrackParams) -> float:
    return min(1.0, params.detect_max_side / max(image.shape[:2]))


def _hog(image: np.ndarray, scale: float, origin: tuple[int, int], frame_shape: tuple[int, ...],
         params: FaceTrackParams) -> list[tuple[Box, float]]:
    """HOG detections in ``image`` scaled by ``scale``, as boxes in the frame whose crop at
    ``origin`` the image is."""
    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    with models.hog_detector_lease() as detector:
        rects, scores, _ = detector.run(np.ascontiguousarray(small), params.detect_upsample, params.detect_threshold)
    height, width = frame_shape[:2]
    x_off, y_off = origin
    found = []
    for rect, score in zip(rects, scores):
        box = (
            max(0.0, x_off + rect.left() / scale),
            max(0.0, y_off + rect.top() / scale),
            min(float(width), x_off + (rect.right() + 1) / scale),
            min(float(height), y_off + (rect.bottom() + 1) / scale),
        )
        if box[2] - box[0] >= _MIN_BOX_PX and box[3] - box[1] >= _MIN_BOX_PX:
            found.append((box, float(score)))
    return found


def _shapes(image: np.ndarray, boxes: list[Box], params: FaceTrackParams) -> tuple[list, list[np.ndarray]]:
    """dlib shapes (for descriptors) and (68, 2) float32 landmarks of each box."""
    import dlib

    rects = [dlib.rectangle(int(round(b[0])), int(round(b[1])), int(round(b[2])) - 1, int(round(b[3])) - 1) for b in boxes]
    if params.landmark_backend == "fan":
        from dubline.stages.faces.fan import fan_landmarks

        landmark_sets = fan_landmarks(image, boxes, params.models_dir)
        shapes = [
            dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
            for rect, points in zip(rects, landmark_sets)
        ]
        return shapes, [np.asarray(points, dtype=np.float32) for points in landmark_sets]
    predictor = models.shape_predictor_68()
    shapes = [predictor(image, rect) for rect in rects]
    return shapes, [np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32) for shape in shapes]


def face_descriptors(image: np.ndarray, shapes: list) -> list[np.ndarray]:
    """dlib's 128-d identity descriptor of each fitted face (one network call for all of them)."""
    if not shapes:
        return []
    import dlib

    recognizer = models.face_recognizer()
    faces = dlib.full_object_detections()
    faces.extend(shapes)
    with models.recognizer_lock:
        vectors = recognizer.compute_face_descriptor(image, faces)
    return [np.asarray(vector, dtype=np.float32) for vector in vectors]


def descriptor_at(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The identity descriptor of the face with these 68 landmarks (for frames that were tracked)."""
    import dlib

    image = _check_image(image)
    x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
    x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
    shape = dlib.full_object_detection(
        dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    )
    return face_descriptors(image, [shape])[0]


def detect_frame(image: np.ndarray, params: FaceTrackParams = FaceTrackParams()) -> list[FaceDetection]:
    """All faces in an RGB uint8 image, largest first (an empty list when there is none)."""
    image = _check_image(image)
    boxes = _hog(image, _whole_frame_scale(image, params), (0, 0), image.shape, params)
    if not boxes:
        return []
    shapes, landmark_sets = _shapes(image, [b for b, _ in boxes], params)
    descriptors = face_descriptors(image, shapes)
    detections = [
        FaceDetection(box=box, score=score, landmarks=points, descriptor=descriptor)
        for (box, score), points, descriptor in zip(boxes, landmark_sets, descriptors)
    ]
    return sorted(detections, key=lambda d: -d.area)


def _iou(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


Window = tuple[int, int, int, int, float]  # left, top, right, bottom (frame pixels), HOG scale


def _search_window(box: Box, frame_shape: tuple[int, ...], params: FaceTrackParams) -> Window:
    """The window and scale to look for a face last seen at ``box``: the box grown by
    ``track_margin`` on each side, corners on the grid of HOG cells at a scale picked from a ladder
    of face sizes (the steps of HOG's own pyramid, 6/5)."""
    height, width = frame_shape[:2]
    x0, y0, x1, y1 = box
    size = max(x1 - x0, y1 - y0, 1.0)
    rung = _PYRAMID_STEP ** round(np.log(size) / np.log(_PYRAMID_STEP))
    scale = min(min(1.0, params.detect_max_side / max(height, width)), params.track_face_px / rung)
    cell = _HOG_CELL / scale
    grow = params.track_margin * rung
    left, top = max(0, int(np.floor((x0 - grow) / cell) * cell)), max(0, int(np.floor((y0 - grow) / cell) * cell))
    right, bottom = min(width, int(np.ceil((x1 + grow) / cell) * cell)), min(height, int(np.ceil((y1 + grow) / cell) * cell))
    return left, top, right, bottom, scale


def _still_inside(box: Box, window: Window, frame_shape: tuple[int, ...], params: FaceTrackParams) -> bool:
    """Whether ``window`` still suits a face now at ``box``: same size rung, and the box keeps half
    the margin from the window's edges (where the frame allows)."""
    left, top, right, bottom, scale = window
    if _search_window(box, frame_shape, params)[4] != scale:
        return False
    height, width = frame_shape[:2]
    keep = 0.5 * params.track_margin * max(box[2] - box[0], box[3] - box[1])
    return ((left == 0 or box[0] - left >= keep) and (top == 0 or box[1] - top >= keep)
            and (right == width or right - box[2] >= keep) and (bottom == height or bottom - box[3] >= keep))


def _find_again(image: np.ndarray, previous: FaceDetection, params: FaceTrackParams) -> tuple[Box, float, Window] | None:
    """The HOG detection nearest ``previous``'s box within its search window, or None.

    The window stays where it was while the face stays well inside it, so a face that has not
    moved is searched for in exactly the same pixels and found in exactly the same box (a window
    that followed every wobble of the box would make a still face, and its mouth, jitter)."""
    window = previous.search_window
    if window is None or not _still_inside(previous.box, window, image.shape, params):
        window = _search_window(previous.box, image.shape, params)
    left, top, right, bottom, scale = window
    if right - left < _MIN_BOX_PX or bottom - top < _MIN_BOX_PX:
        return None
    found = _hog(image[top:bottom, left:right], scale, (left, top), image.shape, params)
    overlaps = [(_iou(box, previous.box), box, score) for box, score in found]
    best = max(overlaps, default=None, key=lambda item: item[0])
    if best is None or best[0] <= 0.0:
        return None
    return best[1], best[2], window


def carried_box(box: Box, before: np.ndarray, after: np.ndarray) -> Box:
    """``box`` drawn around a face with landmarks ``before``, carried to the same face with
    landmarks ``after``: the same place and size relative to the eyes and nose. Each step goes
    through the canonical face, so along a chain the box stays where the anchor's whole-frame
    search put it relative to the face (no drift, none of the window search's coarse box steps)."""
    into = geometry.pose_to_canonical(np.asarray(before, np.float64))
    out_of = geometry.invert_affine(geometry.pose_to_canonical(np.asarray(after, np.float64)))
    scale = np.hypot(into[0, 0], into[1, 0]) * np.hypot(out_of[0, 0], out_of[1, 0])
    centre = geometry.apply_affine(out_of, geometry.apply_affine(into, np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]])))[0]
    half_w, half_h = (box[2] - box[0]) * scale / 2, (box[3] - box[1]) * scale / 2
    return (float(centre[0] - half_w), float(centre[1] - half_h), float(centre[0] + half_w), float(centre[1] + half_h))


def track_frame(image: np.ndarray, previous: list[FaceDetection],
                params: FaceTrackParams = FaceTrackParams()) -> list[FaceDetection] | None:
    """``previous`` (the last frame's faces) found again in ``image``, in the same order, each with
    ``tracked_from`` set and no descriptor; None when any of them is not found near where it was.
    The window search's box only seeds the landmark fit; the box reported is the previous one
    carried along with the landmarks (``carried_box``)."""
    image = _check_image(image)
    found = []
    for face in previous:
        again = _find_again(image, face, params)
        if again is None or again[1] < params.track_min_score:
            return None  # lost, or too doubtful to judge without the whole-frame search's score
        found.append(again)
    _, landmark_sets = _shapes(image, [box for box, _, _ in found], params)
    return [
        FaceDetection(box=carried_box(face.box, face.landmarks, points), score=score, landmarks=points,
                      descriptor=None, tracked_from=position, search_window=window)
        for position, (face, (_, score, window), points) in enumerate(zip(previous, found, landmark_sets))
    ]

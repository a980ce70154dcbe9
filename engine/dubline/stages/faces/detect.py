"""Per-frame face analysis: every face in one image, with landmarks and identity.

``detect_frame`` is the expensive part of the face track (HOG detection on a downscaled copy,
68-point landmarks and the 128-d descriptor at full resolution). Its results depend only on the
image and ``FaceTrackParams.detection_key()``, so track_faces caches them per frame index.
"""

from __future__ import annotations

import cv2
import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.stages.faces import models
from dubline.stages.faces.types import FaceDetection, FaceTrackParams


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InvalidInputError(f"expected an RGB uint8 image of shape (H, W, 3), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)  # dlib rejects strided views (e.g. decoded frames with padding)


def _detect_boxes(image: np.ndarray, params: FaceTrackParams) -> list[tuple[tuple[float, float, float, float], float]]:
    height, width = image.shape[:2]
    scale = min(1.0, params.detect_max_side / max(height, width))
    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    rects, scores, _ = models.hog_detector().run(small, params.detect_upsample, params.detect_threshold)
    found = []
    for rect, score in zip(rects, scores):
        box = (
            max(0.0, rect.left() / scale),
            max(0.0, rect.top() / scale),
            min(float(width), (rect.right() + 1) / scale),
            min(float(height), (rect.bottom() + 1) / scale),
        )
        if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
            found.append((box, float(score)))
    return found


def detect_frame(image: np.ndarray, params: FaceTrackParams = FaceTrackParams()) -> list[FaceDetection]:
    """All faces in an RGB uint8 image, largest first (an empty list when there is none)."""
    import dlib

    image = _check_image(image)
    boxes = _detect_boxes(image, params)
    if not boxes:
        return []
    rects = [dlib.rectangle(int(round(b[0])), int(round(b[1])), int(round(b[2])) - 1, int(round(b[3])) - 1) for b, _ in boxes]
    if params.landmark_backend == "fan":
        from dubline.stages.faces.fan import fan_landmarks

        landmark_sets = fan_landmarks(image, [b for b, _ in boxes], params.models_dir)
        shapes = [
            dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
            for rect, points in zip(rects, landmark_sets)
        ]
    else:
        predictor = models.shape_predictor_68()
        shapes = [predictor(image, rect) for rect in rects]
        landmark_sets = [np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32) for shape in shapes]
    recognizer = models.face_recognizer()
    detections = [
        FaceDetection(
            box=box,
            score=score,
            landmarks=points,
            descriptor=np.asarray(recognizer.compute_face_descriptor(image, shape), dtype=np.float32),
        )
        for (box, score), shape, points in zip(boxes, shapes, landmark_sets)
    ]
    return sorted(detections, key=lambda d: -d.area)

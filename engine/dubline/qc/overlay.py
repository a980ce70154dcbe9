"""Debug overlays: draw what the analysis saw on each frame so a person can check it."""

from __future__ import annotations

import cv2
import numpy as np

_GREEN, _RED, _YELLOW, _WHITE = (60, 220, 60), (230, 60, 60), (240, 220, 40), (255, 255, 255)


def draw_analysis(
    image: np.ndarray,
    box: np.ndarray | None,
    landmarks: np.ndarray | None,
    reason: str,
    caption: str,
) -> np.ndarray:
    """The frame with the speaker's box, 68 landmarks (lips highlighted) and a caption line
    (frame, phone, viseme, openness...). Unusable frames get a red label saying why."""
    out = np.ascontiguousarray(image.copy())
    scale = max(out.shape[0] / 720.0, 0.5)
    thickness = max(1, int(round(scale * 2)))
    if box is not None and np.all(np.isfinite(box)):
        x0, y0, x1, y1 = box.astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), _GREEN if not reason else _RED, thickness)
    if landmarks is not None and np.all(np.isfinite(landmarks)):
        for i, (x, y) in enumerate(landmarks.astype(int)):
            cv2.circle(out, (int(x), int(y)), thickness + 1, _YELLOW if i >= 48 else _GREEN, -1, cv2.LINE_AA)
        cv2.polylines(out, [landmarks[60:68].astype(np.int32)], True, _YELLOW, thickness, cv2.LINE_AA)
    lines = [caption] + ([f"passthrough: {reason}"] if reason else [])
    for row, text in enumerate(lines):
        origin = (int(10 * scale), int((30 + 30 * row) * scale))
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, _RED if row else _WHITE, thickness, cv2.LINE_AA)
    return out

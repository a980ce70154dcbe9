"""The expert discriminator's sync measure for ``dubline qc``, when the user has ``lipsync_expert.pth``.

``wav2lip_sync_report`` crops the rendered frames exactly as the wav2lip backend does (the face
track's boxes, padded downward and smoothed over 5 frames, resized to 96x96), pairs them with the
dub's per-frame mel windows and returns the LSE-style numbers of ``syncnet.sync_measures`` for the
longest run of consecutive frames with a face. The numbers are only comparable between renders
measured this way (see docs/WAV2LIP.md, "Sync measure").
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import numpy as np

from dubline.core.errors import InvalidInputError, ModelNotFoundError
from dubline.stages import media
from dubline.stages.backends.wav2lip.backend import dub_mel_windows
from dubline.stages.backends.wav2lip.checkpoint import resident_syncnet
from dubline.stages.backends.wav2lip.crops import crop_face, padded_boxes, smooth_boxes
from dubline.stages.backends.wav2lip.syncnet import (
    DEFAULT_MAX_OFFSET,
    SYNC_FRAMES,
    SyncNetColor,
    sync_measures,
)
from dubline.stages.speech.mel import SAMPLE_RATE

NOTE = "Wav2Lip expert (lipsync_expert.pth) embeddings; not comparable with published LSE-D/LSE-C figures"


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """[first, end) of the longest run of True in ``mask`` ((0, 0) when there is none)."""
    best, start = (0, 0), None
    for index, value in enumerate(list(mask) + [False]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            if index - start > best[1] - best[0]:
                best = (start, index)
            start = None
    return best


def wav2lip_sync_report(
    patch_frames_rgb: Iterable[np.ndarray],
    face_boxes: np.ndarray,
    dub_audio_16k: np.ndarray | media.AudioClip,
    rate: Fraction,
    *,
    model: SyncNetColor | None = None,
    device: str = "cpu",
    max_offset: int = DEFAULT_MAX_OFFSET,
) -> dict[str, Any] | None:
    """LSE-style sync numbers of a rendered span, or None when ``lipsync_expert.pth`` is absent.

    ``patch_frames_rgb``: the span's T output frames (H, W, 3) uint8, streamed (only 96x96 crops
    are kept). ``face_boxes``: (T, 4) face-track boxes x0, y0, x1, y1 of those frames, NaN where
    there is no face. ``dub_audio_16k``: the dub from the span's first frame, 16 kHz mono.
    ``model``: a loaded expert (default: the resident one from the model directory).
    """
    if model is None:
        try:
            model = resident_syncnet(device)
        except ModelNotFoundError:
            return None
    boxes = np.asarray(face_boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidInputError(f"wav2lip sync report needs face boxes of shape (T, 4), got {boxes.shape}")
    audio = dub_audio_16k if isinstance(dub_audio_16k, media.AudioClip) else media.AudioClip(
        np.asarray(dub_audio_16k, dtype=np.float32), SAMPLE_RATE
    )

    crops: dict[int, np.ndarray] = {}
    crop_boxes: np.ndarray | None = None
    count = 0
    for position, frame in enumerate(patch_frames_rgb):
        if position >= len(boxes):
            raise InvalidInputError(f"wav2lip sync report got more frames than the {len(boxes)} face boxes")
        if crop_boxes is None:
            crop_boxes = padded_boxes(smooth_boxes(boxes, np.all(np.isfinite(boxes), axis=1)), frame.shape)
        if crop_boxes[position, 0] >= 0:
            crops[position] = crop_face(frame, crop_boxes[position])
        count = position + 1
    if count != len(boxes):
        raise InvalidInputError(f"wav2lip sync report got {count} frames but {len(boxes)} face boxes")

    first, end = _longest_run(np.array([position in crops for position in range(count)], dtype=bool))
    report: dict[str, Any] = {
        "measure": "wav2lip_expert_lse",
        "frames": count,
        "frames_measured": end - first,
        "first_frame": first,
        "note": NOTE,
    }
    if end - first < SYNC_FRAMES:
        report.update(lse_distance=None, lse_confidence=None, best_offset=None, mean_cosine=None)
        report["note"] = f"fewer than {SYNC_FRAMES} consecutive frames with a face: nothing measured"
        return report
    windows = dub_mel_windows(audio, rate, count)[first:end]
    measures = sync_measures(model, np.stack([crops[p] for p in range(first, end)]), windows, max_offset)
    report.update(
        lse_distance=round(measures.lse_distance, 4),
        lse_confidence=round(measures.lse_confidence, 4),
        best_offset=measures.best_offset,
        mean_cosine=round(measures.mean_cosine, 4),
    )
    return report

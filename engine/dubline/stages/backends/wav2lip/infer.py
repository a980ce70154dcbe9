"""Batched Wav2Lip inference: 96x96 face crops + per-frame mel windows -> 96x96 generated faces.

The input is built as the official inference builds it: the target crop with its lower half
(rows 48..95) set to 0, concatenated on channels with a reference crop, divided by 255. The
official code works on frames as cv2 loads them, i.e. BGR, and the weights were trained that way;
callers here pass and get RGB, and the channel flip happens only at this boundary.

Where the official inference truncates (``astype(uint8)``) the output, we round to nearest.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dubline.core.errors import InvalidInputError
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.stages.backends.wav2lip.model import FACE_SIZE, MEL_BANDS, MEL_WINDOW

PROGRESS_STAGE = "wav2lip"


def _check_crops(name: str, crops: np.ndarray) -> None:
    if crops.ndim != 4 or crops.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or crops.dtype != np.uint8:
        raise InvalidInputError(
            f"wav2lip {name} must be [N, {FACE_SIZE}, {FACE_SIZE}, 3] uint8 RGB, got {crops.shape} {crops.dtype}"
        )


def generator_input(face_crops_rgb: np.ndarray, reference_crops_rgb: np.ndarray) -> np.ndarray:
    """[N, 6, 96, 96] float32 in [0, 1]: masked target (BGR) then reference (BGR), as officially built."""
    target = face_crops_rgb[..., ::-1].astype(np.float32)
    target[:, FACE_SIZE // 2 :] = 0.0
    reference = reference_crops_rgb[..., ::-1].astype(np.float32)
    six = np.concatenate((target, reference), axis=3) / 255.0
    return np.ascontiguousarray(six.transpose(0, 3, 1, 2))


class Wav2LipRunner:
    """Runs a Wav2Lip generator over many frames in batches.

    On CUDA the model runs in float16 when ``fp16`` is set, and always in channels-last layout;
    on CPU it runs in float32 whatever ``fp16`` says (half convolutions on CPU are slow or missing).
    The runner moves/converts ``model`` in place to that device and dtype and puts it in eval mode,
    so load it for the same (device, dtype) to make that a no-op.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", batch_size: int = 16, fp16: bool = True) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"wav2lip batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        on_cuda = self.device.type == "cuda"
        self.dtype = torch.float16 if (fp16 and on_cuda) else torch.float32
        self.memory_format = torch.channels_last if on_cuda else torch.contiguous_format
        self.model = model.to(device=self.device, dtype=self.dtype, memory_format=self.memory_format).eval()

    def run(
        self,
        face_crops: np.ndarray,
        reference_crops: np.ndarray,
        mel_windows: np.ndarray,
        cancel: CancelToken | None = None,
        progress: ProgressSink = no_progress,
    ) -> np.ndarray:
        """Generated faces [N, 96, 96, 3] uint8 RGB for target crops, references and mel windows."""
        _check_crops("face_crops", face_crops)
        _check_crops("reference_crops", reference_crops)
        if mel_windows.ndim != 4 or mel_windows.shape[1:] != (1, MEL_BANDS, MEL_WINDOW):
            raise InvalidInputError(
                f"wav2lip mel_windows must be [N, 1, {MEL_BANDS}, {MEL_WINDOW}], got {mel_windows.shape}"
            )
        count = len(face_crops)
        if len(reference_crops) != count or len(mel_windows) != count:
            raise InvalidInputError(
                f"wav2lip got {count} face crops, {len(reference_crops)} reference crops and "
                f"{len(mel_windows)} mel windows; they must be one per frame"
            )

        output = np.empty((count, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
        progress(PROGRESS_STAGE, 0, count)
        with torch.inference_mode():
            for start in range(0, count, self.batch_size):
                if cancel is not None:
                    cancel.check()
                stop = min(start + self.batch_size, count)
                faces = torch.from_numpy(generator_input(face_crops[start:stop], reference_crops[start:stop]))
                audio = torch.from_numpy(np.ascontiguousarray(mel_windows[start:stop], dtype=np.float32))
                faces = faces.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
                audio = audio.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
                generated = self.model(audio, faces).float().cpu().numpy()  # [B, 3, 96, 96] BGR in [0, 1]
                rgb = generated.transpose(0, 2, 3, 1)[..., ::-1]
                output[start:stop] = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
                progress(PROGRESS_STAGE, stop, count)
        return output

"""The ``wav2lip`` backend: an official Wav2Lip generator drives the mouth from the dub's mel.

prepare: resolve the options, load the generator once per (file, device, dtype) through the model
registry (a missing file fails here, before any frame is rendered), build the per-frame mel
windows of the dub, the crop boxes of the whole source (``crops``), and the reference frame of
every output frame; with ``reference="rest"`` the few reference frames are decoded now and kept as
96x96 crops.
patches: stream the span in chunks (``chunk_sizes``: small at both ends of the span, ``batch_size``
between): crop the usable faces, run the generator on the chunk (on a thread of its own, one chunk
ahead of the rest; in a process kept to one CPU, in the caller's thread), and place each generated
face into a full-frame copy of its frame. The shared compositor (``composite.paste``) blends it
inside the lower-face matte.

Options (``--backend-option`` / ``RenderRequest.backend_options``):

- ``checkpoint``: path of a generator file; default: ``wav2lip_gan.pth`` or ``wav2lip.pth`` in the
  model directory (``dubline.core.models.model_dir``).
- ``deterministic``: True uses the conformance kit's deterministic weights instead of a file:
  exercises the real architecture end to end, but the mouths are noise (tests, benchmarks).
- ``batch_size``: frames per generator call and per streamed chunk (default per device and frame
  size: ``default_batch_size``).
- ``device``: "cpu" or "cuda" (default: cuda when available); CUDA runs fp16 channels-last.
- ``reference``: "rest" (default): the upper-half/identity input is a frame of the speaker with a
  closed or resting mouth and a similar head pose; "same": the frame itself, as the official
  inference does, which shows the generator the original mouth (see docs/WAV2LIP.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dubline.core.errors import InvalidInputError
from dubline.core.models import registry
from dubline.core.prefetch import work_pool
from dubline.stages import media
from dubline.stages.backends.base import BackendInfo, BackendJob, MouthPatch
from dubline.stages.backends.generated_faces import torch_device
from dubline.stages.backends.references import reference_frames
from dubline.stages.backends.wav2lip.checkpoint import (
    GENERATOR_FILES,
    deterministic_generator,
    load_generator,
    resident_generator,
)
from dubline.stages.backends.wav2lip.crops import (
    crop_face,
    padded_boxes,
    paste_face,
    smooth_boxes,
)
from dubline.stages.backends.wav2lip.infer import Wav2LipRunner
from dubline.stages.faces import FaceTrack
from dubline.stages.speech.mel import (
    HOP_LENGTH,
    SAMPLE_RATE,
    WINDOW_COLUMNS,
    mel_windows,
    wav2lip_mel,
)

REFERENCES = ("rest", "same")
#: Frames per generator call when the options name none, per device. On a CPU the generator shares
#: the cores with decoding, compositing and encoding; a whole 1080p render there was fastest at 16
#: (2 quiet cores: 19.9-21.0 s and 38-40 CPU s at 16 against 22.5-23.7 s and 42-44 CPU s at 64),
#: though the generator alone, under load from other jobs, costs less CPU per frame at 64.
#: A GPU wants large batches to be kept busy.
DEFAULT_BATCH_SIZES = {"cpu": 16, "cuda": 128}
#: The first and last chunks of a span: the generator waits for the first chunk's frames to be
#: decoded, and the last chunk is composited and encoded after the generator is done, so both ends
#: start this small and double towards ``batch_size`` (outputs do not depend on the chunking).
SMALLEST_CHUNK = 8
#: ... within this many bytes of full frames per chunk: two chunks are held at once (one with the
#: generator, one being composited), so large frames get smaller default batches (CUDA: 1080p 64, 4K 16).
CHUNK_FRAME_BYTES = 512 * 2**20
_OPTION_NAMES = ("checkpoint", "deterministic", "batch_size", "device", "reference")


@dataclass(frozen=True)
class Wav2LipOptions:
    checkpoint: Path | None = None
    deterministic: bool = False
    batch_size: int | None = None  # None: default_batch_size(device, frame size)
    device: str = "cpu"
    reference: str = "rest"

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Wav2LipOptions:
        """Validated options; InvalidInputError naming the option for anything wrong."""
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise InvalidInputError(
                f"unknown wav2lip backend option(s) {', '.join(unknown)}; known: {', '.join(_OPTION_NAMES)}"
            )
        device = torch_device(options, "wav2lip")
        batch_size = None
        if options.get("batch_size") is not None:
            try:
                batch_size = int(options["batch_size"])
            except (TypeError, ValueError) as error:
                raise InvalidInputError(f"wav2lip option batch_size must be an integer, got {options['batch_size']!r}") from error
            if batch_size < 1:
                raise InvalidInputError(f"wav2lip option batch_size must be at least 1, got {batch_size}")
        reference = str(options.get("reference", "rest"))
        if reference not in REFERENCES:
            raise InvalidInputError(f"wav2lip option reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
        deterministic = options.get("deterministic", False)
        if isinstance(deterministic, str):
            deterministic = deterministic.strip().lower() in ("1", "true", "yes", "on")
        checkpoint = options.get("checkpoint")
        if checkpoint is not None and deterministic:
            raise InvalidInputError("wav2lip options checkpoint and deterministic exclude each other")
        return cls(
            checkpoint=Path(checkpoint).expanduser() if checkpoint is not None else None,
            deterministic=bool(deterministic),
            batch_size=batch_size,
            device=device,
            reference=reference,
        )


def default_batch_size(device: str, frame_shape: tuple[int, ...]) -> int:
    """The device's batch (DEFAULT_BATCH_SIZES), halved until a chunk of frames fits CHUNK_FRAME_BYTES."""
    batch = DEFAULT_BATCH_SIZES[device.split(":")[0]]
    frame_bytes = max(1, int(np.prod(frame_shape[:2])) * 3)
    while batch > 1 and batch * frame_bytes > CHUNK_FRAME_BYTES:
        batch //= 2
    return batch


def chunk_sizes(total: int, batch: int, smallest: int = SMALLEST_CHUNK) -> list[int]:
    """Frames per streamed chunk for a span of ``total`` frames: ``smallest``, doubling up to
    ``batch``, full batches, then halving back to ``smallest`` at the end (a short span takes its
    small chunks from both ends alike); they add up to ``total``."""
    head: list[int] = []
    tail: list[int] = []
    remaining = total
    size = min(smallest, batch)
    while size < batch and remaining:
        for side in (head, tail):
            take = min(size, remaining)
            if take:
                side.append(take)
                remaining -= take
        size *= 2
    middle = [batch] * (remaining // batch) + ([remaining % batch] if remaining % batch else [])
    return head + middle + tail[::-1]


def generator_for(options: Wav2LipOptions) -> nn.Module:
    """The generator the options name, resident in the process-wide model registry."""
    dtype = torch.float16 if options.device.startswith("cuda") else torch.float32
    if options.deterministic:
        return registry().get(
            ("wav2lip:deterministic", options.device, dtype),
            lambda: deterministic_generator().to(device=options.device, dtype=dtype),
        )
    if options.checkpoint is not None:
        path = options.checkpoint.resolve()
        return registry().get((f"wav2lip:{path}", options.device, dtype), lambda: load_generator(path, options.device, dtype))
    return resident_generator(None, options.device, dtype)


@dataclass
class Wav2LipPlan:
    runner: Wav2LipRunner
    reference: str
    crop_boxes: np.ndarray  # (N, 4) int64 crop box per source frame, -1 rows where there is none
    mel_windows: np.ndarray  # (T, 1, 80, 16) per output frame
    reference_frames: np.ndarray  # (T,) source frame index of each output frame's reference, -1: none
    reference_crops: dict[int, np.ndarray]  # "rest": 96x96 RGB crop per reference frame


def source_crop_boxes(faces: FaceTrack, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Crop boxes (int, padded, smoothed) for every frame of the track."""
    return padded_boxes(smooth_boxes(faces.boxes, faces.present), frame_shape)


def dub_mel_windows(dub_audio: media.AudioClip, rate: Fraction, frame_count: int) -> np.ndarray:
    """[T, 1, 80, 16] mel windows of the dub for the span's frames.

    The audio is cut (or silence-padded) to the span plus one window, so the last frames look at
    the dub's own continuation where there is one and at silence where it ended.
    """
    if dub_audio.sample_rate != SAMPLE_RATE:
        raise InvalidInputError(f"wav2lip needs the dub at {SAMPLE_RATE} Hz, got {dub_audio.sample_rate} Hz")
    rate = Fraction(rate)
    needed = math.ceil(frame_count / rate * SAMPLE_RATE) + WINDOW_COLUMNS * HOP_LENGTH
    samples = np.asarray(dub_audio.samples, dtype=np.float32)[:needed]
    samples = np.pad(samples, (0, needed - len(samples)))
    return mel_windows(wav2lip_mel(samples), rate, frame_count)




class Wav2LipBackend:
    info = BackendInfo(
        name="wav2lip",
        description="Wav2Lip generator (official wav2lip_gan.pth / wav2lip.pth) driven by the dub's mel",
        weights=(f"{GENERATOR_FILES[0]} or {GENERATOR_FILES[1]}",),
        prefers_gpu=True,
        options={
            "checkpoint": "path of a generator .pth (default: the model directory's)",
            "deterministic": "true: the conformance kit's weights, no file (tests; output is noise)",
            "batch_size": "frames per generator call (default: 16 on CPU, 128 on CUDA, fewer for large frames)",
            "device": "cpu | cuda (default cuda when available; fp16 on cuda)",
            "reference": "rest (default: a resting-mouth frame of the speaker) | same (the frame itself, official)",
        },
    )

    def preflight(self, options: Mapping[str, Any]) -> None:
        """Check the options and load the generator now (it stays resident for ``prepare``), so
        bad options or missing weights fail before the minutes of clip analysis, not after."""
        generator_for(Wav2LipOptions.parse(options))

    def prepare(self, job: BackendJob) -> Wav2LipPlan:
        options = Wav2LipOptions.parse(job.options)
        model = generator_for(options)
        video = job.source.info.video
        assert video is not None  # the pipeline checked it
        batch_size = options.batch_size or default_batch_size(options.device, (video.height, video.width))
        runner = Wav2LipRunner(model, options.device, batch_size, fp16=True)
        first, end = job.span
        view = job.source.view
        crop_boxes = source_crop_boxes(job.source.faces, view.display_shape)
        references = reference_frames(job.source.faces, job.span, options.reference, crop_boxes[:, 0] >= 0)
        crops: dict[int, np.ndarray] = {}
        if options.reference == "rest":
            for frame in media.read_frames(job.source.path, references[references >= 0], keep_coded=True):
                crops[frame.index] = crop_face(frame.image, crop_boxes[frame.index], view)
        return Wav2LipPlan(
            runner=runner,
            reference=options.reference,
            crop_boxes=crop_boxes,
            mel_windows=dub_mel_windows(job.dub_audio, video.rate, end - first),
            reference_frames=references,
            reference_crops=crops,
        )

    def frame_keys(self, job: BackendJob, plan: Wav2LipPlan) -> list[str]:
        """Per output frame, what its generated face depends on besides the frame's pixels: its
        crop box, its reference frame, the dub's mel window around it, the generator (an edit of
        the dub changes only the frames whose 0.2 s mel window overlaps it)."""
        first, _ = job.span
        faces = job.source.faces
        options = Wav2LipOptions.parse(job.options)
        generator = f"wav2lip:{options.checkpoint}:{options.device}:{plan.reference}:{options.deterministic}"
        keys = []
        for t in range(len(plan.reference_frames)):
            index = first + t
            digest = hashlib.blake2b(digest_size=16)
            for part in (f"{generator}:{index}:{faces.reason[index]}:{int(plan.reference_frames[t])}".encode(),
                         np.asarray(plan.crop_boxes[index]).tobytes(), np.asarray(plan.mel_windows[t]).tobytes(),
                         np.asarray(faces.landmarks[index], np.float64).tobytes()):
                digest.update(part)
            keys.append(digest.hexdigest())
        return keys

    def patches(
        self, job: BackendJob, plan: Wav2LipPlan, frames: Iterable[media.VideoFrame]
    ) -> Iterator[tuple[media.VideoFrame, MouthPatch]]:
        """Chunks of ``chunk_sizes`` frames; the generator works on the next chunk (on its own thread)
        while this one's faces are placed and handed on, so the generator rarely waits for the
        compositor or the encoder."""
        frames = iter(frames)
        first, end = job.span
        batch = plan.runner.batch_size
        sizes = chain(chunk_sizes(end - first, batch), repeat(batch))
        generating = work_pool(1, "render-wav2lip")  # in this thread in a process kept to one CPU
        try:
            done, pending = 0, None
            while True:
                if job.cancel is not None:
                    job.cancel.check()
                chunk = list(islice(frames, next(sizes)))
                following = (chunk, generating.submit(_generate, job, plan, chunk, done)) if chunk else None
                done += len(chunk)
                if pending is not None:
                    yield from _placed(job, plan, pending[0], pending[1].result())
                if following is None:
                    return
                pending = following
        finally:
            generating.shutdown(wait=True, cancel_futures=True)  # a batch in flight finishes first


def _generate(job: BackendJob, plan: Wav2LipPlan, chunk: list[media.VideoFrame], offset: int) -> dict[int, np.ndarray]:
    """Generated 96x96 faces of the chunk's rendered frames, by frame index."""
    first, end = job.span
    rendered = [frame for frame in chunk if plan.reference_frames[frame.index - first] >= 0]
    if not rendered:
        return {}
    targets = np.stack([crop_face(f.image, plan.crop_boxes[f.index], job.source.view) for f in rendered])
    if plan.reference == "same":
        references = targets
    else:
        references = np.stack([plan.reference_crops[int(plan.reference_frames[f.index - first])] for f in rendered])
    windows = plan.mel_windows[[f.index - first for f in rendered]]

    def progress(stage: str, count: int, _total: int) -> None:
        job.progress(stage, offset + count, end - first)

    faces_out = plan.runner.run(targets, references, windows, job.cancel, progress)
    return {frame.index: face for frame, face in zip(rendered, faces_out)}


def _placed(job: BackendJob, plan: Wav2LipPlan, chunk: list[media.VideoFrame],
            generated: dict[int, np.ndarray]) -> Iterator[tuple[media.VideoFrame, MouthPatch]]:
    faces = job.source.faces
    view = job.source.view
    for frame in chunk:
        face = generated.get(frame.index)
        if face is None:
            reason = str(faces.reason[frame.index]) or "face box outside the frame"
            yield frame, MouthPatch(None, None, reason)
            continue
        image = paste_face(frame.image, plan.crop_boxes[frame.index], face, view)
        yield frame, MouthPatch(image, view.to_stored(faces.landmarks[frame.index].astype(np.float64)))


BACKEND = Wav2LipBackend()

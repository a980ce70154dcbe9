"""The ``musetalk`` backend: MuseTalk 1.5 inpaints the lower face from the dub's whisper features.

preflight: check the options, find the model directory's files (a missing one is named with the
expected layout) and load the three models once per (file, device, dtype) through the model
registry, before any clip analysis.
prepare: the crop box of every source frame from the face track's smoothed 68 landmarks (the
official rule plus the v1.5 margin), whisper's hidden states of the dub over the span, and, for
``reference="rest"``, the reference latents (encoded once per chosen frame).
patches: stream the span in chunks of ``batch_size`` frames: crop, run the UNet/VAE on the chunk,
and put each generated face into a full-frame copy of its frame; the shared compositor blends it
inside the lower-face matte (not MuseTalk's face-parsing blend).

Options (``--backend-option`` / ``RenderRequest.backend_options``):

- ``model_dir``: a MuseTalk ``models/`` directory; default: the model directory
  (``dubline.core.models.model_dir``), which holds musetalkV15/, sd-vae/ and whisper/.
- ``batch_size``: frames per UNet/VAE call and per streamed chunk (default 8, as official).
- ``device``: "cpu" or "cuda" (default: cuda when available); fp16 on CUDA, fp32 on CPU.
- ``sample``: true draws the VAE latents as the official code does (seeded per frame by ``seed``);
  default false: the posterior mean, deterministic.
- ``seed``: the base seed of ``sample`` (default 0; frame f uses seed + f).
- ``extra_margin``: px added below the chin (default 10, the official v1.5 default).
- ``reference``: "same" (default, official): the reference latent is the frame's own unmasked crop;
  "rest": a resting-mouth frame of the speaker with a similar head pose (see docs/MUSETALK.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dubline.core import timing
from dubline.core.errors import InvalidInputError
from dubline.core.models import CONFIG_KEY, MODELS_ENV, config_path, model_dir
from dubline.stages import media
from dubline.stages.backends.base import BackendInfo, BackendJob, MouthPatch
from dubline.stages.backends.generated_faces import torch_device
from dubline.stages.backends.musetalk import layout
from dubline.stages.backends.musetalk.audio import (
    LEAD_STEPS,
    SAMPLE_RATE,
    SAMPLES_PER_STEP,
    WINDOW_STEPS,
    frame_windows,
    whisper_features,
)
from dubline.stages.backends.musetalk.faces import (
    EXTRA_MARGIN,
    crop_face,
    face_box,
    paste_face,
)
from dubline.stages.backends.references import reference_frames

if TYPE_CHECKING:
    from dubline.stages.backends.musetalk.infer import MuseTalkRunner
    from dubline.stages.backends.musetalk.loading import MuseTalkModels
    from dubline.stages.faces import FaceTrack

REFERENCES = ("same", "rest")
DEFAULT_BATCH_SIZE = 8
_OPTION_NAMES = ("model_dir", "batch_size", "device", "sample", "seed", "extra_margin", "reference")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _integer(options: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = options.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"musetalk option {name} must be an integer, got {value!r}") from error
    if number < minimum:
        raise InvalidInputError(f"musetalk option {name} must be at least {minimum}, got {number}")
    return number


@dataclass(frozen=True)
class MuseTalkOptions:
    model_dir: Path | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "cpu"
    sample: bool = False
    seed: int = 0
    extra_margin: int = EXTRA_MARGIN
    reference: str = "same"

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> MuseTalkOptions:
        """Validated options; InvalidInputError naming the option for anything wrong."""
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise InvalidInputError(
                f"unknown musetalk backend option(s) {', '.join(unknown)}; known: {', '.join(_OPTION_NAMES)}"
            )
        device = torch_device(options, "musetalk")
        reference = str(options.get("reference", "same"))
        if reference not in REFERENCES:
            raise InvalidInputError(f"musetalk option reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
        model_dir = options.get("model_dir")
        return cls(
            model_dir=Path(model_dir).expanduser() if model_dir not in (None, "") else None,
            batch_size=_integer(options, "batch_size", DEFAULT_BATCH_SIZE, 1),
            device=device,
            sample=_flag(options.get("sample", False)),
            seed=_integer(options, "seed", 0, 0),
            extra_margin=_integer(options, "extra_margin", EXTRA_MARGIN, 0),
            reference=reference,
        )

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.device.startswith("cuda") else torch.float32


def model_files(options: MuseTalkOptions) -> layout.ModelFiles:
    """The model directory's files; ModelNotFoundError naming the first missing one and the layout."""
    if options.model_dir is not None:
        return layout.locate(options.model_dir, "given by the model_dir option")
    return layout.locate(model_dir(), f"from ${MODELS_ENV}, '{CONFIG_KEY}' in {config_path()} or the default")


def models_for(options: MuseTalkOptions) -> MuseTalkModels:
    """The resident models the options name (loaded on first use)."""
    from dubline.stages.backends.musetalk.loading import (
        require_libraries,
        resident_models,
    )

    require_libraries()
    return resident_models(model_files(options), options.device, options.dtype)


@dataclass
class MuseTalkPlan:
    runner: MuseTalkRunner
    options: MuseTalkOptions
    crop_boxes: np.ndarray  # (N, 4) int64 crop box per source frame, -1 rows where there is none
    whisper_steps: np.ndarray  # [S, layers, D] whisper hidden states of the dub from the span's start
    reference_frames: np.ndarray  # (T,) source frame of each output frame's reference, -1: not rendered
    reference_latents: dict[int, torch.Tensor]  # "rest": [4, 32, 32] per reference frame


def source_crop_boxes(faces: FaceTrack, frame_shape: tuple[int, ...], extra_margin: int = EXTRA_MARGIN) -> np.ndarray:
    """(N, 4) int64 crop boxes from the track's smoothed landmarks; -1 rows without a face."""
    boxes = np.full((len(faces), 4), -1, dtype=np.int64)
    for row in np.flatnonzero(faces.present):
        box = face_box(faces.landmarks[row], frame_shape, extra_margin)
        if box is not None:
            boxes[row] = box
    return boxes


def dub_whisper_steps(models: MuseTalkModels, dub_audio: media.AudioClip, rate: Fraction, frame_count: int) -> np.ndarray:
    """Whisper steps of the dub over the span plus the last window's reach past it."""
    if dub_audio.sample_rate != SAMPLE_RATE:
        raise InvalidInputError(f"musetalk needs the dub at {SAMPLE_RATE} Hz, got {dub_audio.sample_rate} Hz")
    reach = (WINDOW_STEPS - LEAD_STEPS) * SAMPLES_PER_STEP
    needed = math.ceil(Fraction(frame_count) / Fraction(rate) * SAMPLE_RATE) + reach
    samples = np.asarray(dub_audio.samples, dtype=np.float32)[:needed]
    return whisper_features(models.feature_extractor, models.whisper_encoder, samples, models.device, models.dtype)




def _frames_at(path: Path, rate: Fraction, indices: Iterable[int]) -> Iterator[media.VideoFrame]:
    """The frames at ``indices``, one short decode per frame (references are few), converted to
    RGB where they are cropped."""
    for index in sorted(set(int(i) for i in indices)):
        for frame in media.read_span(path, timing.frames_to_range(index, index + 1, rate), keep_coded=True):
            if frame.index == index:
                yield frame


class MuseTalkBackend:
    info = BackendInfo(
        name="musetalk",
        description="MuseTalk 1.5 (official checkpoints): one UNet step in sd-vae latent space, whisper-tiny audio",
        weights=(layout.UNET_WEIGHTS, layout.UNET_CONFIG, "sd-vae/ (config.json + weights)", "whisper/ (whisper-tiny)"),
        prefers_gpu=True,
        options={
            "model_dir": "a MuseTalk models/ directory (default: the model directory)",
            "batch_size": f"frames per UNet/VAE call (default {DEFAULT_BATCH_SIZE})",
            "device": "cpu | cuda (default cuda when available; fp16 on cuda)",
            "sample": "true: sample the VAE latents like the official code (default: posterior mean, deterministic)",
            "seed": "base seed for sample (default 0)",
            "extra_margin": f"px below the chin inside the crop (default {EXTRA_MARGIN})",
            "reference": "same (default: the frame's own crop, official) | rest (a resting-mouth frame)",
        },
    )

    def preflight(self, options: Mapping[str, Any]) -> None:
        """Check the options and files and load the models now (they stay resident for
        ``prepare``), so bad options or missing weights fail before the clip analysis."""
        models_for(MuseTalkOptions.parse(options))

    def prepare(self, job: BackendJob) -> MuseTalkPlan:
        from dubline.stages.backends.musetalk.infer import MuseTalkRunner

        options = MuseTalkOptions.parse(job.options)
        models = models_for(options)
        runner = MuseTalkRunner(models, options.batch_size)
        video = job.source.info.video
        assert video is not None  # the pipeline checked it
        first, end = job.span
        view = job.source.view
        crop_boxes = source_crop_boxes(job.source.faces, view.display_shape, options.extra_margin)
        references = reference_frames(job.source.faces, job.span, options.reference, crop_boxes[:, 0] >= 0)
        latents: dict[int, torch.Tensor] = {}
        if options.reference == "rest":
            for frame in _frames_at(job.source.path, video.rate, references[references >= 0]):
                crop = crop_face(frame.image, crop_boxes[frame.index], view)[None]
                seeds = np.array([options.seed + frame.index]) if options.sample else None
                latents[frame.index] = runner.reference_latents(crop, seeds)[0]
        return MuseTalkPlan(
            runner=runner,
            options=options,
            crop_boxes=crop_boxes,
            whisper_steps=dub_whisper_steps(models, job.dub_audio, video.rate, end - first),
            reference_frames=references,
            reference_latents=latents,
        )

    def patches(
        self, job: BackendJob, plan: MuseTalkPlan, frames: Iterable[media.VideoFrame]
    ) -> Iterator[tuple[media.VideoFrame, MouthPatch]]:
        first, end = job.span
        faces = job.source.faces
        view = job.source.view
        rate = job.source.info.video.rate
        frames = iter(frames)
        done = 0

        def chunk_progress(offset: int) -> Any:
            return lambda stage, count, _total: job.progress(stage, offset + count, end - first)

        while True:
            if job.cancel is not None:
                job.cancel.check()
            chunk = list(islice(frames, plan.runner.batch_size))
            if not chunk:
                return
            rendered = [frame for frame in chunk if plan.reference_frames[frame.index - first] >= 0]
            generated: dict[int, np.ndarray] = {}
            if rendered:
                crops = np.stack([crop_face(f.image, plan.crop_boxes[f.index], view) for f in rendered])
                windows = frame_windows(plan.whisper_steps, rate, np.array([f.index - first for f in rendered]))
                references = None
                if plan.options.reference == "rest":
                    references = torch.stack(
                        [plan.reference_latents[int(plan.reference_frames[f.index - first])] for f in rendered]
                    )
                seeds = np.array([plan.options.seed + f.index for f in rendered]) if plan.options.sample else None
                faces_out = plan.runner.run(crops, windows, references, seeds, job.cancel, chunk_progress(done))
                generated = {frame.index: face for frame, face in zip(rendered, faces_out)}
            for frame in chunk:
                face = generated.get(frame.index)
                if face is None:
                    reason = str(faces.reason[frame.index]) or "face box outside the frame"
                    yield frame, MouthPatch(None, None, reason)
                    continue
                image = paste_face(frame.image, plan.crop_boxes[frame.index], face, view)
                yield frame, MouthPatch(image, view.to_stored(faces.landmarks[frame.index].astype(np.float64)))
            done += len(chunk)


BACKEND = MuseTalkBackend()

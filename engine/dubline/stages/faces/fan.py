"""Optional landmark backend: FAN from the face-alignment package, with the user's own weights.

face-alignment is not a dependency: it is imported only when this backend is asked for. It
must never download: its torch-hub cache is pointed at ``<model dir>/face_alignment`` (model dir
= the ``models_dir`` given, else ``dubline.core.models.model_dir()``, i.e. $DUBLINE_MODELS ...), the
2DFAN-4 weights file it would fetch must already be in ``<that>/checkpoints/``, and its download
helper is disabled while the model loads. Otherwise ModelNotFoundError names the expected file.
Face boxes come from our own detector; FAN's detector slot gets dlib's HOG (no weights).
"""

from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import numpy as np

from dubline.core.errors import DublineError, ModelNotFoundError
from dubline.core.models import model_dir, registry
from dubline.stages.faces.models import CNN_FACE_DETECTOR, embedded_model_path

HUB_SUBDIR = "face_alignment"
NETWORK = "2DFAN-4"


def _import_face_alignment(models_dir: str | Path | None = None) -> Any:
    try:
        import face_alignment
    except ImportError as error:
        raise ModelNotFoundError(
            "landmark backend 'fan' needs the face-alignment package, which is not installed "
            "(pip install face-alignment), and its 2DFAN-4 weights in the model directory "
            f"({fan_hub_dir(models_dir)}/checkpoints)"
        ) from error
    return face_alignment


def fan_hub_dir(models_dir: str | Path | None = None) -> Path:
    """The torch-hub directory face-alignment is pointed at."""
    return Path(models_dir).expanduser() / HUB_SUBDIR if models_dir else model_dir() / HUB_SUBDIR


def fan_weights_path(models_dir: str | Path | None = None) -> Path:
    """Where the installed face-alignment version expects its 2DFAN-4 weights (may not exist)."""
    import torch

    api = _import_face_alignment(models_dir).api
    # Older releases key their URL table by torch "major.minor" (falling back to
    # default_model_urls); newer ones have one flat table.
    version = torch.__version__.split("+")[0]
    version = version.rsplit(".", 2 if "dev" in version else 1)[0]
    urls = getattr(api, "models_urls", {})
    if NETWORK not in urls:
        urls = urls.get(version, getattr(api, "default_model_urls", {}))
    if NETWORK not in urls:
        raise ModelNotFoundError(
            f"this face-alignment version lists no {NETWORK} weights for torch {version}; "
            "use landmark_backend='dlib'"
        )
    return fan_hub_dir(models_dir) / "checkpoints" / os.path.basename(urlparse(urls[NETWORK]).path)


def _refuse_download(url: str, *args: Any, **kwargs: Any) -> None:
    raise ModelNotFoundError(f"face-alignment tried to download {url}; dubline never downloads weights")


@contextmanager
def _offline_hub(hub_dir: Path) -> Iterator[None]:
    """Point torch hub at hub_dir and disable face-alignment's downloader, restoring both after."""
    import torch.hub

    utils = _import_face_alignment().utils
    previous_dir = torch.hub.get_dir()
    previous_download = getattr(utils, "download_url_to_file", None)
    torch.hub.set_dir(str(hub_dir))
    if previous_download is not None:
        utils.download_url_to_file = _refuse_download
    try:
        yield
    finally:
        torch.hub.set_dir(previous_dir)
        if previous_download is not None:
            utils.download_url_to_file = previous_download


def load_fan(models_dir: str | Path | None = None) -> Any:
    """The FaceAlignment object (CPU), loaded once per process from local weights."""
    weights = fan_weights_path(models_dir)
    if not weights.is_file():
        raise ModelNotFoundError(
            f"landmark backend 'fan' needs the {NETWORK} weights file {weights}, which does not "
            f"exist. Copy {weights.name} there (or set $DUBLINE_MODELS); dubline never downloads weights."
        )
    face_alignment = _import_face_alignment()
    def build() -> Any:
        landmarks_type = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        options: dict[str, Any] = {}
        if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters:
            options["compile"] = False  # newer releases torch.compile and write a cache by default
        with _offline_hub(weights.parent.parent):
            return face_alignment.FaceAlignment(
                landmarks_type,
                device="cpu",
                flip_input=False,
                face_detector="dlib",
                face_detector_kwargs={"path_to_detector": str(embedded_model_path(CNN_FACE_DETECTOR))},
                **options,
            )

    return registry().get((f"face_alignment.{NETWORK}:{weights}", "cpu", "float32"), build, weights.stat().st_size)


def fan_landmarks(
    image: np.ndarray, boxes: list[tuple[float, float, float, float]], models_dir: str | Path | None = None
) -> list[np.ndarray]:
    """68-point landmarks (float32 (68, 2)) for each box of an RGB image, in box order."""
    if not boxes:
        return []
    model = load_fan(models_dir)
    found = model.get_landmarks_from_image(image, detected_faces=[np.asarray(b, dtype=np.float64) for b in boxes])
    if found is None or len(found) != len(boxes):
        raise DublineError(f"face-alignment returned landmarks for {0 if found is None else len(found)} of {len(boxes)} face boxes")
    return [np.asarray(points, dtype=np.float32)[:, :2] for points in found]

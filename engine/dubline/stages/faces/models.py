"""The embedded dlib models from face_recognition_models, loaded once per process.

The package is located with importlib and never imported (importing it pulls nothing useful and
may print warnings); its ``models/`` folder ships the 68-point shape predictor and the 128-d
face-recognition network. The HOG detector is built into dlib. Loaded models are held by the
process-wide ``dubline.core.models.registry()`` so every stage shares one copy.

Threads: dlib's shape predictor may be used from several threads at once; its HOG detector and its
networks may not (they keep working buffers). ``hog_detector_lease`` lends each thread a detector
of its own (kept for reuse); ``recognizer_lock`` serialises the descriptor network.
"""

from __future__ import annotations

import importlib.util
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from dubline.core.errors import ModelNotFoundError
from dubline.core.models import registry

SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
CNN_FACE_DETECTOR = "mmod_human_face_detector.dat"


@lru_cache(maxsize=1)
def embedded_models_dir() -> Path:
    """face_recognition_models' ``models/`` folder."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the face_recognition_models package is not installed; it ships the 68-point landmark "
            "and face-descriptor models dubline needs (pip install face_recognition_models==0.3.0)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def embedded_model_path(filename: str) -> Path:
    """Path of one file in the embedded models folder; ModelNotFoundError naming it if missing."""
    path = embedded_models_dir() / filename
    if not path.is_file():
        raise ModelNotFoundError(f"embedded model file {path} is missing; reinstall face_recognition_models")
    return path


def _load(name: str, filename: str | None, build: Any) -> Any:
    path = embedded_model_path(filename) if filename else None
    size = path.stat().st_size if path else 0
    return registry().get((name, "cpu", "float32"), lambda: build(str(path)) if path else build(), size)


def hog_detector() -> Any:
    """dlib's frontal-face HOG detector (built into dlib); one thread at a time (``hog_detector_lease``)."""
    import dlib

    return _load("dlib.hog_frontal_face", None, dlib.get_frontal_face_detector)


_spare_detectors: queue.SimpleQueue = queue.SimpleQueue()
_first_detector_lent = threading.Lock()


@contextmanager
def hog_detector_lease() -> Iterator[Any]:
    """A HOG detector no other thread uses until this one gives it back (the registry's first, then
    extra copies built when threads overlap; all kept for reuse)."""
    import dlib

    try:
        detector = _spare_detectors.get_nowait()
    except queue.Empty:
        detector = hog_detector() if _first_detector_lent.acquire(blocking=False) else dlib.get_frontal_face_detector()
    try:
        yield detector
    finally:
        _spare_detectors.put(detector)


#: dlib's descriptor network keeps per-call buffers: one call at a time in the process.
recognizer_lock = threading.Lock()


def shape_predictor_68() -> Any:
    """dlib's 68-point shape predictor."""
    import dlib

    return _load("dlib.shape_predictor_68", SHAPE_PREDICTOR_68, dlib.shape_predictor)


def face_recognizer() -> Any:
    """dlib's ResNet face-recognition model (128-d descriptors; same person below 0.6)."""
    import dlib

    return _load("dlib.face_recognition_resnet_v1", FACE_RECOGNITION, dlib.face_recognition_model_v1)

"""Render backends, found by name through a manifest of plain modules (as OTIO finds adapters).

Each module in ``MANIFEST`` exposes ``BACKEND``, an object implementing ``base.Backend``. Importing
this package imports no backend module, so listing capabilities never loads torch or weights.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dubline.core.errors import InvalidInputError

if TYPE_CHECKING:  # base imports the face and speech stages; listing names must stay light
    from dubline.stages.backends.base import Backend

#: How the mouth's expression is steered: as in the source, towards neutral, towards a smile.
EXPRESSIONS = ("as-source", "neutral", "smile")

MANIFEST: dict[str, str] = {
    "retrieval": "dubline.stages.backends.retrieval.backend",
    "wav2lip": "dubline.stages.backends.wav2lip.backend",
    "musetalk": "dubline.stages.backends.musetalk.backend",
}
#: The backend of a render that names none: needs no weights.
DEFAULT_BACKEND = "retrieval"

#: Backend options whose value names a file (weights), known without importing the backend: the
#: engine checks them like request paths (media roots, model directory) and no output may be one.
PATH_OPTIONS: dict[str, tuple[str, ...]] = {
    "wav2lip": ("checkpoint",),
    "musetalk": ("model_dir",),
}


def names() -> list[str]:
    return list(MANIFEST)


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; InvalidInputError naming the known ones otherwise."""
    try:
        module_name = MANIFEST[name]
    except KeyError:
        raise InvalidInputError(f"unknown backend {name!r}; known backends: {', '.join(MANIFEST)}") from None
    backend = importlib.import_module(module_name).BACKEND
    from dubline.stages.backends.base import (
        Backend,  # loaded by the backend module already
    )

    if not isinstance(backend, Backend):
        raise TypeError(f"{module_name}.BACKEND does not implement the Backend protocol (info, preflight, prepare, patches)")
    return backend

"""Render backends, found by name through a manifest of plain modules (as OTIO finds adapters).

Each module in ``MANIFEST`` exposes ``BACKEND``, an object implementing ``base.Backend``. Importing
this package imports no backend module, so listing capabilities never loads torch or weights.
"""

from __future__ import annotations

import importlib

from dubline.core.errors import InvalidInputError
from dubline.stages.backends.base import Backend

MANIFEST: dict[str, str] = {
    "retrieval": "dubline.stages.backends.retrieval.backend",
    "wav2lip": "dubline.stages.backends.wav2lip.backend",
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
    if not isinstance(backend, Backend):
        raise TypeError(f"{module_name}.BACKEND does not implement the Backend protocol (info, preflight, prepare, patches)")
    return backend

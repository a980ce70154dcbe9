"""Render backends, found by name through a manifest of plain modules (as OTIO finds adapters).

Each module in ``MANIFEST`` exposes ``BACKEND``: an object with an ``info`` (``BackendInfo``) and
the methods the pipeline calls (see ``dubline.pipeline``). Importing this package imports no
backend, so listing capabilities never loads torch or weights.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from dubline.errors import InvalidInputError

MANIFEST: dict[str, str] = {
    "retrieval": "dubline.backends.retrieval.backend",
    "wav2lip": "dubline.backends.wav2lip.backend",
    "musetalk": "dubline.backends.musetalk.backend",
}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    description: str
    #: files the backend needs in the user's model directory (empty: works offline as installed)
    weights: tuple[str, ...] = ()
    prefers_gpu: bool = False
    options: dict[str, str] = field(default_factory=dict)


def names() -> list[str]:
    return list(MANIFEST)


def get_backend(name: str) -> Any:
    """The backend registered as ``name``; InvalidInputError naming the known ones otherwise."""
    try:
        module_name = MANIFEST[name]
    except KeyError:
        raise InvalidInputError(f"unknown backend {name!r}; known backends: {', '.join(MANIFEST)}") from None
    return importlib.import_module(module_name).BACKEND

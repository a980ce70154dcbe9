"""The Backend and Codec menus, free of ``bpy``: what the engine offers, from its Capabilities.

An engine's answer is cached per engine address whenever one comes in: each render asks once the
engine answers, the panel asks in the background the first time it shows an address, and Refresh
asks at once. Until an engine has answered, the menus show the client library's fallback (the
engine's defaults and the codecs this release writes; ``dubline_client.choices``).

Blender stores an enum's chosen item as its number, so every item's number comes from its name
(0 for the engine's default): a choice survives an engine that lists its items in another order or
adds some, and an unset menu shows the default. A choice the engine no longer offers reads as ''.
"""

from __future__ import annotations

import threading
import zlib
from types import ModuleType
from typing import Any

from .engine import EngineSettings

BACKEND, CODEC = "backend", "codec"
#: Shown when the client library cannot be imported (the panel says why; Render is off).
NO_CLIENT_ITEM = ("NONE", "No Engine", "The dubline client library is not found: see the add-on preferences", 0)

_lock = threading.Lock()
_answers: dict[str, Any] = {}           # engine address -> its EngineChoices
_asked: set[str] = set()                # addresses asked in the background this session
_clients: dict[str, ModuleType | None] = {}
# Blender reads the strings of the last list an items callback returned after it returns: keep them.
_items: dict[str, list[tuple[str, str, str, int]]] = {}


def client_for(site_packages: str, load_client) -> ModuleType | None:
    """``dubline_client`` (through ``load_client(site_packages)``), or None; tried once per path."""
    if site_packages not in _clients:
        try:
            _clients[site_packages] = load_client(site_packages)
        except ImportError:
            _clients[site_packages] = None
    return _clients[site_packages]


def remember(address: str, choices: Any) -> None:
    with _lock:
        _answers[address] = choices


def forget() -> None:
    """Drop every answer and cached import (on unregister)."""
    with _lock:
        _answers.clear()
        _asked.clear()
    _clients.clear()
    _items.clear()


def choices_for(address: str, client: ModuleType | None) -> Any:
    """The engine's answer for ``address``, else the client library's fallback, else None."""
    with _lock:
        answer = _answers.get(address)
    if answer is not None or client is None:
        return answer
    from importlib import import_module

    return import_module(f"{client.__name__}.choices").FALLBACK


def ask(client: ModuleType, settings: EngineSettings, timeout: float = 30.0) -> Any:
    """Ask the engine at ``settings.address`` now and cache its answer; ``client.EngineError`` or
    ``ValueError`` (an answer without backends or codecs) when it cannot tell. An engine's first
    answer can take seconds (it imports each backend to describe it)."""
    from importlib import import_module

    with settings.client(client, timeout) as engine:
        choices = import_module(f"{client.__name__}.choices").from_capabilities(engine.capabilities())
    remember(settings.address, choices)
    return choices


def ask_in_background(client: ModuleType, settings: EngineSettings) -> None:
    """Ask once per address per session, on a thread; the menus change on the next redraw."""
    with _lock:
        if settings.address in _asked or settings.address in _answers:
            return
        _asked.add(settings.address)

    def run() -> None:
        try:
            ask(client, settings)
        except (client.EngineError, ValueError):
            pass  # no engine there yet: the fallback stays, and the first render asks again

    threading.Thread(target=run, name="dubline-capabilities", daemon=True).start()


def item_number(name: str, default: bool) -> int:
    return 0 if default else zlib.crc32(name.encode("utf-8")) % 0x7FFFFFFE + 1


def enum_items(kind: str, choices: Any) -> list[tuple[str, str, str, int]]:
    """EnumProperty items for ``kind`` (BACKEND or CODEC) from an EngineChoices (None: no client)."""
    if choices is None:
        items = [NO_CLIENT_ITEM]
    elif kind == BACKEND:
        items = [
            (b.name, b.label, b.description + ("" if b.weights_present else " (its weights are missing on the engine)"),
             item_number(b.name, b.name == choices.default_backend))
            for b in choices.backends
        ]
    else:
        items = [
            (c.name, c.label, f"{c.description}, {c.suffix}" if c.description else c.suffix,
             item_number(c.name, c.name == choices.default_codec))
            for c in choices.codecs
        ]
    _items[kind] = items
    return items

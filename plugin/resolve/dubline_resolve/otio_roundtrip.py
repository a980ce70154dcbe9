"""The OTIO path: ``Timeline.Export(EXPORT_OTIO)`` -> ``dubline otio`` -> ``MediaPool.ImportTimelineFromFile``.

The patched timeline comes back as a new timeline (the original is untouched) with the patch on a new
video track. Paths stay plain: Resolve 20 refuses ``file://`` URLs on import.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from dubline_resolve.engine import BridgeSettings
from dubline_resolve.errors import OtioRoundTripError, ResolveStateError
from dubline_resolve.selection import SourceSpan

Runner = Callable[..., subprocess.CompletedProcess]


def export_timeline_otio(resolve: object, timeline: object, path: Path) -> None:
    """``Timeline.Export(path, resolve.EXPORT_OTIO, resolve.EXPORT_NONE)`` (EXPORT_OTIO: Resolve 18.5+)."""
    export_type = getattr(resolve, "EXPORT_OTIO", None)
    if export_type is None:
        raise OtioRoundTripError("this Resolve has no EXPORT_OTIO (OTIO export needs Resolve 18.5 or later)")
    if path.exists():
        raise OtioRoundTripError(f"{path} exists; not overwriting it")
    if not timeline.Export(str(path), export_type, getattr(resolve, "EXPORT_NONE", 0)) or not path.is_file():
        raise OtioRoundTripError(f"Resolve did not export timeline {timeline.GetName()!r} to {path}")


def clip_argument(timeline: object, item_name: str, item: object) -> str:
    """``--clip`` for ``dubline otio``: the item's name when no other video item has it, else ``#N``
    (the N-th video clip from 1, V1 first, left to right), counted over the same tracks Resolve exports."""
    names: list[str] = []
    position = None
    for track in range(1, int(timeline.GetTrackCount("video")) + 1):
        for candidate in timeline.GetItemListInTrack("video", track) or []:
            names.append(candidate.GetName())
            if candidate == item:
                position = len(names)
    if position is None:
        raise ResolveStateError(f"{item_name!r} is not on any video track of {timeline.GetName()!r}")
    return item_name if names.count(item_name) == 1 else f"#{position}"


def dubline_otio_command(settings: BridgeSettings, timeline_in: Path, clip: str, span: SourceSpan,
                         dub_path: str, timeline_out: Path) -> list[str]:
    """The ``dubline otio`` argument list: the span in source frames, rendered on the configured engine."""
    command = [
        settings.dubline_cli, "otio", "--timeline", str(timeline_in), "--clip", clip,
        "--range", f"{span.source_first}-{span.source_end}", "--range-in", "source",
        "--audio", str(Path(dub_path).resolve()), "--out", str(timeline_out),
        "--engine", settings.engine_address, "--json",
    ]
    # Unset: the engine's defaults (`dubline otio` checks the names against the engine it renders on).
    if settings.codec:
        command += ["--codec", settings.codec]
    if settings.backend:
        command += ["--backend", settings.backend]
    if settings.token_file:
        command += ["--token-file", settings.token_file]
    if settings.tls_ca:
        command += ["--tls-ca", settings.tls_ca]
    for key, value in settings.backend_options.items():
        command += ["--backend-option", f"{key}={value}"]
    return command


def run_dubline_otio(command: Sequence[str], runner: Runner = subprocess.run) -> dict:
    """Run ``dubline otio`` and return its ``--json`` result; its error line on failure."""
    try:
        result = runner(list(command), capture_output=True, text=True)
    except FileNotFoundError:
        raise OtioRoundTripError(f"the dubline command {command[0]!r} is not on PATH: set DUBLINE_CLI to its full path") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        raise OtioRoundTripError(f"dubline otio failed: {lines[-1] if lines else f'exit status {result.returncode}'}")
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise OtioRoundTripError(f"dubline otio printed no JSON result: {result.stdout[-200:]!r}") from None


def _file_urls(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["target_url"]] if str(node.get("target_url", "")).startswith("file://") else []
        return found + [url for value in node.values() for url in _file_urls(value)]
    if isinstance(node, list):
        return [url for value in node for url in _file_urls(value)]
    return []


def import_timeline_otio(media_pool: object, path: Path, name: str) -> object:
    """``MediaPool.ImportTimelineFromFile(path, {"timelineName": name, "importSourceClips": True})``."""
    try:
        urls = _file_urls(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise OtioRoundTripError(f"cannot read the patched timeline {path}: {error}") from None
    if urls:
        raise OtioRoundTripError(f"{path} refers to media by file:// URL ({urls[0]}); Resolve 20 only imports plain paths")
    timeline = media_pool.ImportTimelineFromFile(str(path), {"timelineName": name, "importSourceClips": True})
    if not timeline:
        raise OtioRoundTripError(f"Resolve did not import {path} as a timeline (a timeline named {name!r} may exist)")
    return timeline

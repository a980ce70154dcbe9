"""Where the engine is, what it offers, and a render through it with progress (grpcio + protobuf via
dubline_client only).

Backends and patch codecs are the engine's (its Capabilities): ``settings_for_engine`` checks the
configured ones against the engine the script connected to and names the file suffix the engine
writes. Before any engine is asked, ``load_settings`` only refuses codec names this release of
dubline does not know, so a typo in the config is reported before connecting.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

from dubline_client import EngineClient, EngineError, frames_span, pb, render_spec
from dubline_client.choices import FALLBACK, EngineChoices, UnknownChoiceError, from_capabilities

from dubline_resolve.errors import EngineUnavailableError, MediaError, RenderError
from dubline_resolve.selection import SourceSpan

#: The address `dubline serve` listens on by default (kept equal to dubline.apps.cli.serve.DEFAULT_LISTEN by a test).
DEFAULT_ENGINE_ADDRESS = "127.0.0.1:50917"

Report = Callable[[str], None]


@dataclass(frozen=True)
class BridgeSettings:
    """Engine address and render choices: the config file, overridden by environment variables."""

    engine_address: str = DEFAULT_ENGINE_ADDRESS
    token: str | None = None
    token_file: str | None = None      # handed to `dubline otio --token-file`
    tls_ca: str | None = None          # PEM of a remote engine's certificate authority (TLS)
    tls_server_name: str | None = None  # the name in its certificate, when the address is not it
    codec: str = ""                    # empty: the engine's default
    backend: str = ""                  # empty: the engine's default
    patch_dir: str | None = None       # default: a dubline_patches folder beside the dub
    dubline_cli: str = "dubline"       # the command the OTIO path runs
    connect_timeout: float = 5.0
    backend_options: Mapping[str, str] = field(default_factory=dict)


def default_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """``$DUBLINE_RESOLVE_CONFIG``, else ``dubline/resolve.json`` in the user's config folder."""
    if environ.get("DUBLINE_RESOLVE_CONFIG"):
        return Path(environ["DUBLINE_RESOLVE_CONFIG"])
    if os.name == "nt" and environ.get("APPDATA"):
        return Path(environ["APPDATA"]) / "dubline" / "resolve.json"
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dubline" / "resolve.json"


def _read_token(path: str) -> str:
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise EngineUnavailableError(f"cannot read the engine token file {path}: {error.strerror}") from None
    if not token or not token[0].strip():
        raise EngineUnavailableError(f"the engine token file {path} is empty")
    return token[0].strip()


def load_settings(environ: Mapping[str, str] = os.environ, config_path: Path | None = None) -> BridgeSettings:
    """Settings from the JSON config file (keys: engine, token_file, tls_ca, tls_server_name, codec,
    backend, patch_dir, dubline_cli, connect_timeout), each overridden by ``DUBLINE_ENGINE``,
    ``DUBLINE_TOKEN_FILE``, ``DUBLINE_TLS_CA``, ``DUBLINE_CODEC``, ``DUBLINE_BACKEND``,
    ``DUBLINE_PATCH_DIR``, ``DUBLINE_CLI``."""
    path = config_path if config_path is not None else default_config_path(environ)
    config: dict = {}
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise EngineUnavailableError(f"the dubline config {path} is not readable JSON: {error}") from None
        if not isinstance(config, dict):
            raise EngineUnavailableError(f"the dubline config {path} must hold a JSON object")

    def pick(env_name: str, key: str, default):
        return environ.get(env_name) or config.get(key) or default

    token_file = pick("DUBLINE_TOKEN_FILE", "token_file", None)
    tls_ca = pick("DUBLINE_TLS_CA", "tls_ca", None)
    if tls_ca and not Path(tls_ca).expanduser().is_file():
        raise EngineUnavailableError(f"the engine's TLS certificate authority {tls_ca} is not a readable file")
    codec = pick("DUBLINE_CODEC", "codec", "")
    if codec:
        try:
            FALLBACK.codec(codec)
        except UnknownChoiceError as error:
            raise MediaError(str(error)) from None
    return BridgeSettings(
        engine_address=pick("DUBLINE_ENGINE", "engine", DEFAULT_ENGINE_ADDRESS),
        token=_read_token(token_file) if token_file else None,
        token_file=token_file,
        tls_ca=str(Path(tls_ca).expanduser()) if tls_ca else None,
        tls_server_name=config.get("tls_server_name") or None,
        codec=codec,
        backend=pick("DUBLINE_BACKEND", "backend", ""),
        patch_dir=pick("DUBLINE_PATCH_DIR", "patch_dir", None),
        dubline_cli=pick("DUBLINE_CLI", "dubline_cli", "dubline"),
        connect_timeout=float(config.get("connect_timeout", 5.0)),
        backend_options=dict(config.get("backend_options", {})),
    )


def connect(settings: BridgeSettings) -> EngineClient:
    """A client whose engine answered within ``connect_timeout``; otherwise a message saying how to start one."""
    client = EngineClient(settings.engine_address, token=settings.token, timeout=30.0, tls_ca=settings.tls_ca,
                          tls_server_name=settings.tls_server_name)
    try:
        client.wait_until_ready(timeout=settings.connect_timeout)
        status = client.health()
    except EngineError as error:
        client.close()
        raise EngineUnavailableError(
            f"no dubline engine answers at {settings.engine_address} ({error.message}). Start one with "
            f"`dubline serve --listen {settings.engine_address}`, or point DUBLINE_ENGINE at a running one") from None
    if status != "SERVING":
        client.close()
        raise EngineUnavailableError(f"the dubline engine at {settings.engine_address} is {status} (shutting down?)")
    return client


def engine_choices(client: EngineClient, settings: BridgeSettings) -> EngineChoices:
    """The backends and patch codecs the engine at ``settings.engine_address`` offers."""
    try:
        return from_capabilities(client.capabilities())
    except EngineError as error:
        raise EngineUnavailableError(f"the dubline engine at {settings.engine_address} did not say what it offers: "
                                     f"{error.message}") from None
    except UnknownChoiceError as error:
        raise EngineUnavailableError(f"the dubline engine at {settings.engine_address}: {error}") from None


def settings_for_engine(settings: BridgeSettings, choices: EngineChoices) -> BridgeSettings:
    """``settings`` with the backend and codec the engine will use (its defaults for empty ones);
    ``MediaError`` naming what the engine offers when it has no such backend or codec."""
    try:
        backend, codec = choices.backend(settings.backend), choices.codec(settings.codec)
    except UnknownChoiceError as error:
        raise MediaError(f"{error} (engine at {settings.engine_address}; set DUBLINE_BACKEND / DUBLINE_CODEC or the config)") from None
    return replace(settings, backend=backend.name, codec=codec.name)


def patch_path_for(span: SourceSpan, dub_path: str, settings: BridgeSettings, choices: EngineChoices = FALLBACK) -> Path:
    """A new file name for the patch (never an existing file): ``<clip>_<first>-<end>_<dub>.<ext>``, with the
    suffix the engine writes ``settings.codec`` into."""
    directory = Path(settings.patch_dir) if settings.patch_dir else Path(dub_path).resolve().parent / "dubline_patches"
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(span.media_path).stem}_{span.source_first}-{span.source_end}_{Path(dub_path).stem}"
    suffix = choices.codec(settings.codec).suffix
    candidate = directory / f"{stem}{suffix}"
    counter = 2
    while candidate.exists():
        candidate = directory / f"{stem}_{counter}{suffix}"
        counter += 1
    return candidate


def progress_line(event: pb.RenderEvent) -> str | None:
    """One printable line per queued/progress event."""
    kind = event.WhichOneof("event")
    if kind == "queued":
        return f"dubline: queued (position {event.queued.position})"
    if kind == "progress":
        progress = event.progress
        if progress.total > 0:
            return f"dubline: {progress.stage} {progress.done}/{progress.total}"
        return f"dubline: {progress.stage}"
    return None


_HINTS = {
    "FAILED_PRECONDITION": " (no usable face in the span, or the backend's weights are missing: see docs/RESOLVE.md)",
    "PERMISSION_DENIED": " (the engine only reads/writes under its --media-root folders)",
    "NOT_FOUND": " (the engine must see the same file paths as Resolve)",
}


def render_patch(client: EngineClient, span: SourceSpan, dub_path: str, out_path: Path,
                 settings: BridgeSettings, report: Report = print) -> pb.RenderDone:
    """Render the span through the engine, printing progress; the patch is written to ``out_path``."""
    spec = render_spec(
        span.media_path, os.path.abspath(dub_path), frames_span(span.source_first, span.source_end, span.rate),
        str(out_path), backend=settings.backend, codec=settings.codec, backend_options=settings.backend_options,
    )
    last_line: list[str] = []

    def on_event(event: pb.RenderEvent) -> None:
        line = progress_line(event)
        if line is not None and line != (last_line[-1] if last_line else None):
            last_line.append(line)
            report(line)

    try:
        done = client.render_and_wait(spec, on_event=on_event)
    except EngineError as error:
        if error.code == "UNAVAILABLE":
            raise EngineUnavailableError(f"the dubline engine at {settings.engine_address} went away: {error.message}") from None
        raise RenderError(error.code, f"the engine could not render {span.item_name!r}: {error.message}"
                                      f"{_HINTS.get(error.code, '')}") from None
    if done.frames_written != span.frame_count:
        raise RenderError("INTERNAL", f"the engine wrote {done.frames_written} frames for a {span.frame_count}-frame span")
    return done

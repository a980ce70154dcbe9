"""The bridge's errors: each names what is wrong and what the editor can do about it."""

from __future__ import annotations


class BridgeError(Exception):
    """Anything the Resolve script reports to the editor instead of a traceback."""


class ResolveStateError(BridgeError):
    """Resolve is not in a state to patch: no project, no timeline, no clip under the playhead, ..."""


class MediaError(BridgeError):
    """A file the bridge needs is missing or unusable (the source clip's file, the dub), or the patch
    codec or backend asked for is not one the engine offers."""


class EngineUnavailableError(BridgeError):
    """No dubline engine answers at the configured address."""


class RenderError(BridgeError):
    """The engine refused or failed the render; ``code`` is its gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PlacementError(BridgeError):
    """The patch could not be put on the timeline at the expected frames."""


class OtioRoundTripError(BridgeError):
    """Timeline export, ``dubline otio`` or the timeline import failed."""

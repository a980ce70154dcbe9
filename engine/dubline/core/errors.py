"""The one error hierarchy of the engine.

Every error is a ``DublineError`` and, like PyAV's, also the matching built-in
(``FileNotFoundError``, ``ValueError``, ...) so callers can catch either. The gRPC
server maps each class to one status code in one place (``status_code``).
"""

from __future__ import annotations


class DublineError(Exception):
    """Base of every error dubline raises on purpose."""

    #: gRPC status code name used by the server for this error class.
    status_code = "INTERNAL"


class InvalidInputError(DublineError, ValueError):
    """A request, argument or parameter that makes no sense."""

    status_code = "INVALID_ARGUMENT"


class InvalidRangeError(InvalidInputError):
    """A span that is empty, reversed, unparsable or outside the media."""


class InvalidRateError(InvalidInputError):
    """A frame or sample rate that is missing, non-positive or unparsable."""


class MediaError(DublineError):
    """Base for problems with a media file."""

    status_code = "INVALID_ARGUMENT"


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The media path does not exist (or is a directory)."""

    status_code = "NOT_FOUND"


class MediaDecodeError(MediaError, ValueError):
    """The file is not media, is corrupt or truncated, or a frame cannot be decoded."""


class NoStreamError(MediaError, ValueError):
    """The file has no stream of the needed kind (video or audio)."""


class MediaTooLargeError(MediaError, ValueError):
    """The file declares frames larger than dubline handles (a damaged or hostile header)."""


class OutputExistsError(DublineError, FileExistsError):
    """The output file exists and overwriting was not asked for."""

    status_code = "ALREADY_EXISTS"


class OutputIsInputError(InvalidInputError):
    """An output path names an input file (same path, a link to it, or the same inode)."""


class OutputPathError(DublineError, FileNotFoundError):
    """The output's directory does not exist or cannot be written."""

    status_code = "INVALID_ARGUMENT"


class OutputWriteError(DublineError, OSError):
    """The operating system refused to write an output (read-only, full, no permission, I/O
    error); nothing was left under the output's name."""

    status_code = "FAILED_PRECONDITION"


class NoFaceError(DublineError, ValueError):
    """No usable face of the speaker where one is required."""

    status_code = "FAILED_PRECONDITION"


class ModelNotFoundError(DublineError, FileNotFoundError):
    """Weights a backend needs are not in the configured model directory."""

    status_code = "FAILED_PRECONDITION"


class MissingDependencyError(DublineError, ModuleNotFoundError):
    """An optional part of dubline is used without its extra installed (e.g. ``dubline[demo]``)."""

    status_code = "FAILED_PRECONDITION"


class CancelledError(DublineError):
    """The job was cancelled; nothing was left under the output names."""

    status_code = "CANCELLED"


class AccessDeniedError(InvalidInputError):
    """A request names a path outside the engine's media roots (directly, via ``..`` or a symlink)."""

    status_code = "PERMISSION_DENIED"


class UnknownJobError(InvalidInputError):
    """A job id the engine does not know (never issued, or forgotten after it finished long ago)."""

    status_code = "NOT_FOUND"


class EngineBusyError(DublineError):
    """The engine's job queue is full; try again when running jobs finish."""

    status_code = "RESOURCE_EXHAUSTED"


class FrameUnavailableError(DublineError):
    """The one-frame RPC cannot answer: the span's render failed or lacks the matte it needs."""

    status_code = "FAILED_PRECONDITION"

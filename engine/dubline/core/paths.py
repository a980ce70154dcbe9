"""Inputs are never written: the one check every output path goes through.

An output may not be the same file as any input, whatever ``--overwrite`` says: not the same
path, not a symlink to it, not a hard link to it (same device and inode), not reached through a
symlinked directory. Outputs may not name each other either (a patch written over its own matte).
The check runs before any work and again just before an output is published.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from dubline.core.errors import (
    DublineError,
    OutputExistsError,
    OutputIsInputError,
    OutputPathError,
    OutputWriteError,
)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: equal resolved paths, or one inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def check_not_input(output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], label: str = "output") -> None:
    """Raise ``OutputIsInputError`` naming both paths when ``output`` is one of ``inputs``
    (a mapping of what each input is, e.g. ``{"--video": path}``)."""
    for what, path in inputs.items():
        if path is not None and same_file(output, path):
            shown = f"{output}" if os.path.realpath(output) == os.fspath(output) else f"{output} (-> {os.path.realpath(output)})"
            raise OutputIsInputError(
                f"{label} {shown} is the same file as the {what} input {path}; dubline never writes over its inputs"
                " (with or without --overwrite): choose another output name"
            )


def check_outputs(outputs: Mapping[str, str | os.PathLike | None], inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Every output against every input, and the outputs against each other."""
    named = [(label, path) for label, path in outputs.items() if path is not None]
    for label, path in named:
        check_not_input(path, inputs, label)
    for i, (label, path) in enumerate(named):
        for other_label, other in named[i + 1 :]:
            if same_file(path, other):
                raise OutputIsInputError(f"{label} and {other_label} are the same file ({path}); give each output its own name")


def labelled(label: str, paths: Iterable[str | os.PathLike]) -> dict[str, str | os.PathLike]:
    """``{"--library[0]": p0, ...}`` for a list-valued input."""
    return {f"{label}[{i}]": path for i, path in enumerate(paths)}


def publish(temporary: Path, path: Path, overwrite: bool = False,
            inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Move a finished ``temporary`` file (beside ``path``) into place: an input is never replaced
    (checked again, the path may have become a link to one meanwhile); without ``overwrite`` a file
    that appeared at ``path`` meanwhile is never clobbered (a hard link fails where it exists)."""
    if inputs:
        check_not_input(path, inputs)
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} appeared while writing; pass --overwrite to replace it") from None
    except OSError:
        # A file system without hard links: fall back to the rename, after a last look.
        if path.exists():
            raise OutputExistsError(f"{path} appeared while writing; pass --overwrite to replace it") from None
        os.replace(temporary, path)
        return
    temporary.unlink()


def os_reason(error: OSError) -> str:
    """What the system said, in words (``read-only file system``), without the traceback's
    ``[Errno 30]`` noise; PyAV's errors carry the same errno."""
    code = error.errno if isinstance(error.errno, int) else None
    if code is not None:
        return os.strerror(code).lower()
    return str(error) or type(error).__name__


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn any OS error while producing ``path`` (EROFS, ENOSPC, EACCES, EIO, a path under
    /proc...) into one ``OutputWriteError`` naming the file; the caller removes its temporary."""
    try:
        yield
    except DublineError:
        raise
    except OSError as error:
        hint = " (the disk is full)" if error.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise OutputWriteError(f"cannot write {path}: {os_reason(error)}{hint}") from error


def check_writable(path: str | os.PathLike) -> None:
    """Fail before any work when no file can be created beside ``path`` (a read-only file system,
    no permission, a directory under /proc), with the error ``writing`` gives."""
    path = Path(path)
    with writing(path):
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".probe")
        try:
            os.close(fd)
        finally:
            os.unlink(name)


def publish_file(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    overwrite: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Write a file atomically: ``write(temporary)`` fills a temporary file beside ``path``, which
    is then renamed into place. Nothing is left under either name when ``write`` fails; an existing
    ``path`` is kept unless ``overwrite``; an input is never replaced."""
    path = Path(path)
    if inputs:
        check_not_input(path, inputs)
    if not path.parent.is_dir():
        raise OutputPathError(f"output directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    with writing(path):
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
        os.close(fd)
        temporary = Path(name)
        try:
            write(temporary)
            publish(temporary, path, overwrite, inputs)
        finally:
            temporary.unlink(missing_ok=True)
    return path

"""Opening input files: the one place PyAV containers are opened for reading."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import av

from dubline.core.errors import MediaDecodeError, MediaNotFoundError, NoStreamError


def check_input(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise MediaNotFoundError(f"{path} is a directory, not a media file")
    if not path.exists():
        raise MediaNotFoundError(f"media file {path} does not exist")
    return path


def open_input(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), metadata_errors="replace")
    except av.error.FileNotFoundError as error:
        raise MediaNotFoundError(f"media file {path} does not exist") from error
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise MediaDecodeError(f"{path} is not a readable media file ({error})") from error
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise MediaDecodeError(f"{path} has no audio or video streams (not media, or truncated)")
    return container


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise NoStreamError(f"{path} has no video stream")
    return container.streams.video[0]



T = TypeVar("T")
_MEMO: OrderedDict[tuple, object] = OrderedDict()
_MEMO_SIZE = 64
_MEMO_LOCK = threading.Lock()


def file_memo(path: Path, what: str, build: Callable[[], T]) -> T:
    """``build()`` remembered per file identity (resolved path, size, mtime) and ``what``: facts
    that cost a decode or a whole-file scan, which every ``read_span`` of the file needs again."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, what)
    with _MEMO_LOCK:
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]  # type: ignore[return-value]
    value = build()
    with _MEMO_LOCK:
        _MEMO[key] = value
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return value

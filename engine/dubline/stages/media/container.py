"""Opening input files: the one place PyAV containers are opened for reading."""

from __future__ import annotations

from pathlib import Path

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


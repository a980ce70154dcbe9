"""On-disk analysis cache.

Entries are keyed by a cheap content fingerprint of the media (size, sampled blocks and the
stream layout, not a full read of a 10 GB file) plus a hash of the stage's parameters, so an
edit of either gives a new key and stale results are never served.

``FrameCache`` stores per-frame results in chunks of ``CHUNK`` frames, so a span that overlaps
an analysed one only computes its new frames. ``BlobCache`` stores one value per key.

Every file carries a checksum of its payload; a file that fails it (truncated write from a
killed process, disk trouble, a different format) is treated as absent and recomputed. Writes go
to a temporary file that is renamed into place under an exclusive ``flock``, so two processes
analysing the same file at once merge their results instead of losing or corrupting them.

The cache never harms a file that is not its own: a file under an entry's name that is not a
dubline cache file (a symlink, a directory, anything without the cache's magic header) is neither
replaced nor removed, and the root may not be one of a render's inputs (``check_root``). The cache
is an optimisation, so a cache that cannot be written (read-only, full) is logged and skipped,
never a failed render.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from dubline.core.errors import InvalidInputError
from dubline.core.paths import same_file

log = logging.getLogger(__name__)

#: Frames per chunk file: small enough that a short span reads little, large enough to keep
#: the file count low for long clips.
CHUNK = 256
_MAGIC = b"DUBLINE-CACHE-1\n"
_DIGEST_SIZE = 32


def default_root() -> Path:
    """$DUBLINE_CACHE, else ~/.cache/dubline."""
    configured = os.environ.get("DUBLINE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "dubline"


def check_root(root: Path | None, inputs: Mapping[str, str | os.PathLike | None]) -> Path:
    """The cache root to use (``root`` or the default), refused when it is an input file or any
    other file that is not a directory."""
    root = Path(root) if root is not None else default_root()
    for what, path in inputs.items():
        if path is not None and same_file(root, path):
            raise InvalidInputError(f"the analysis cache {root} is the same file as the {what} input {path}; "
                                    "point --cache / $DUBLINE_CACHE at a directory of its own")
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"the analysis cache {root} is a file, not a directory; point --cache /"
                                " $DUBLINE_CACHE at a directory of its own")
    return root


def is_own_file(path: Path) -> bool:
    """True when ``path`` is a regular file (not a link) that starts like a dubline cache file."""
    try:
        if not path.is_file() or path.is_symlink():
            return False
        with open(path, "rb") as handle:
            return handle.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def array_fingerprint(*arrays: Any) -> str:
    """Fingerprint of in-memory data (e.g. decoded audio samples): a hash of its bytes."""
    digest = hashlib.blake2b(digest_size=20)
    for array in arrays:
        data = memoryview(array).cast("B") if not isinstance(array, bytes) else array
        digest.update(str(len(data)).encode())
        digest.update(data)
    return digest.hexdigest()


def params_key(**params: Any) -> str:
    """A stable hash of a stage's parameters (include the stage's own version among them)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _encode(value: Any) -> bytes:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _MAGIC + hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() + payload


def _decode(data: bytes) -> Any:
    """The stored value; raises ValueError when the file is not an intact cache file."""
    head = len(_MAGIC) + _DIGEST_SIZE
    if len(data) < head or not data.startswith(_MAGIC):
        raise ValueError("not a dubline cache file")
    digest, payload = data[len(_MAGIC) : head], data[head:]
    if hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() != digest:
        raise ValueError("checksum mismatch")
    return pickle.loads(payload)


class _EntryDir:
    """The directory of one (stage, fingerprint, params) entry and its file operations."""

    def __init__(self, stage: str, fingerprint: str, params: Mapping[str, Any], root: Path | None):
        self.key = f"{fingerprint}-{params_key(stage=stage, **params)}"
        self.path = (root or default_root()) / stage / fingerprint[:2] / self.key

    @contextmanager
    def locked(self, name: str) -> Iterator[bool]:
        """Hold the entry's lock for ``name``; yields False (nothing locked) when the cache
        cannot be written here, and the caller skips its write."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = open(self.path / f"{name}.lock", "a+b")
        except OSError as error:
            _skipped(self.path, error)
            yield False
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self, name: str, lock_held: bool = False) -> Any | None:
        """The value stored under ``name``, or None when absent or damaged (then removed, when it
        is a damaged cache file; anything else under the name is left alone)."""
        target = self.path / name
        if not target.exists() and not target.is_symlink():
            return None
        if not is_own_file(target):
            log.warning("%s is not a dubline cache file; leaving it alone and recomputing", target)
            return None
        try:
            data = target.read_bytes()
        except OSError:
            return None
        try:
            return _decode(data)
        except Exception as error:  # any damage means "recompute", never a crash
            log.warning("cache file %s is damaged (%s); recomputing", target, error)
            if lock_held:
                self._remove_own(target)
            else:
                with self.locked(name):
                    self._remove_own(target)
            return None

    @staticmethod
    def _remove_own(target: Path) -> None:
        if is_own_file(target):
            try:
                target.unlink(missing_ok=True)
            except OSError as error:
                _skipped(target, error)

    def write(self, name: str, value: Any) -> None:
        """Atomically replace ``name`` (the caller holds the lock), unless something that is not
        a cache file sits under that name."""
        target = self.path / name
        if (target.exists() or target.is_symlink()) and not is_own_file(target):
            log.warning("%s is not a dubline cache file; not replacing it", target)
            return
        tmp: str | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(_encode(value))
            os.replace(tmp, target)
            tmp = None
        except OSError as error:
            _skipped(target, error)
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


_warned_unwritable = False


def _skipped(path: Path, error: OSError) -> None:
    """Log (once per process at warning level: a read-only cache fails every write) and go on."""
    global _warned_unwritable
    level = logging.DEBUG if _warned_unwritable else logging.WARNING
    _warned_unwritable = True
    log.log(level, "cannot write the analysis cache at %s (%s); going on without caching",
            path, os.strerror(error.errno).lower() if error.errno else error)


class _CacheEntry:
    """One (stage, fingerprint, params) entry on disk."""

    def __init__(
        self,
        stage: str,
        fingerprint: str,
        params: Mapping[str, Any],
        root: Path | None = None,
    ) -> None:
        self._entry = _EntryDir(stage, fingerprint, params, root)

    @property
    def path(self) -> Path:
        return self._entry.path


class FrameCache(_CacheEntry):
    """Per-frame results of one stage over one media file with one set of parameters."""

    def get_many(self, indices: Iterable[int]) -> dict[int, Any]:
        """Cached results for those of ``indices`` that are present and intact."""
        wanted: dict[int, list[int]] = {}
        for index in indices:
            wanted.setdefault(index // CHUNK, []).append(index)
        found: dict[int, Any] = {}
        for chunk, chunk_indices in wanted.items():
            stored = self._entry.read(f"chunk_{chunk:06d}.pkl") or {}
            found.update({i: stored[i] for i in chunk_indices if i in stored})
        return found

    def put_many(self, items: Mapping[int, Any]) -> None:
        """Store results, merging with what another process may have written meanwhile."""
        by_chunk: dict[int, dict[int, Any]] = {}
        for index, value in items.items():
            by_chunk.setdefault(index // CHUNK, {})[index] = value
        for chunk, values in by_chunk.items():
            name = f"chunk_{chunk:06d}.pkl"
            with self._entry.locked(name) as held:
                if held:
                    merged = self._entry.read(name, lock_held=True) or {}
                    merged.update(values)
                    self._entry.write(name, merged)


class BlobCache(_CacheEntry):
    """One cached value per (stage, fingerprint, params)."""

    def get(self) -> Any | None:
        return self._entry.read("blob.pkl")

    def put(self, value: Any) -> None:
        with self._entry.locked("blob.pkl") as held:
            if held:
                self._entry.write("blob.pkl", value)

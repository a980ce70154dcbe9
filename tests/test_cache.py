"""The analysis cache: hits, partial overlap, damage detection, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
from dubline.core.cache import (
    CHUNK,
    BlobCache,
    FrameCache,
    array_fingerprint,
    params_key,
)


def test_frame_cache_round_trip_and_partial_overlap(tmp_path: Path) -> None:
    cache = FrameCache("faces", "abcdef", {"version": 1}, root=tmp_path)
    assert cache.get_many(range(10)) == {}
    cache.put_many({i: np.full(3, i) for i in range(0, 300)})
    found = cache.get_many(range(250, 400))
    assert sorted(found) == list(range(250, 300))
    assert np.array_equal(found[299], np.full(3, 299))


def test_parameters_and_content_give_separate_entries(tmp_path: Path) -> None:
    FrameCache("faces", "abcdef", {"version": 1}, root=tmp_path).put_many({0: "a"})
    assert FrameCache("faces", "abcdef", {"version": 2}, root=tmp_path).get_many([0]) == {}
    assert FrameCache("faces", "abcdeg", {"version": 1}, root=tmp_path).get_many([0]) == {}
    assert FrameCache("speech", "abcdef", {"version": 1}, root=tmp_path).get_many([0]) == {}
    assert params_key(a=1, b=2) == params_key(b=2, a=1)


def test_damaged_chunk_is_dropped_and_recomputed(tmp_path: Path) -> None:
    cache = FrameCache("faces", "abcdef", {}, root=tmp_path)
    cache.put_many({1: "one", 2: "two"})
    chunk = next(cache.path.glob("chunk_*.pkl"))
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) - 5])  # a truncated write
    assert cache.get_many([1, 2]) == {}
    assert not chunk.exists()
    cache.put_many({1: "again"})
    assert cache.get_many([1]) == {1: "again"}


def test_garbage_file_is_not_a_hit(tmp_path: Path) -> None:
    blob = BlobCache("speech", array_fingerprint(np.arange(5, dtype=np.float32)), {}, root=tmp_path)
    blob.put({"phones": [("AA", 0.0, 0.1)]})
    assert blob.get() == {"phones": [("AA", 0.0, 0.1)]}
    (blob.path / "blob.pkl").write_bytes(b"not a cache file")
    assert blob.get() is None


def _writer(root: str, start: int) -> None:
    cache = FrameCache("faces", "shared", {}, root=Path(root))
    for i in range(start, start + 40):
        cache.put_many({i: i * 10})


def test_two_processes_writing_the_same_chunk_keep_both(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), s)) for s in (0, 40)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    found = FrameCache("faces", "shared", {}, root=tmp_path).get_many(range(80))
    assert found == {i: i * 10 for i in range(80)}
    assert 80 < CHUNK  # all in one chunk: the test exercises the merge under the lock

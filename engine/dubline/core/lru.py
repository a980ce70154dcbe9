"""One least-recently-used store for everything the engine keeps resident (models, clip analyses,
rendered spans): load each key at most once, evict the least recently used past a budget.

Concurrent callers of one key wait for its single loader; callers of other keys proceed (the store's
lock is never held while loading). The budget is a total of ``size(value)``: bytes for models and
spans, 1 per entry for a count. The entry just loaded is always kept, even if it alone exceeds the
budget: the caller that asked for it needs it. Evicted values stay alive while someone holds them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class Entry(Generic[V]):
    value: V
    size: int
    load_seconds: float
    last_used: float  # time.time() of the last get


class LruStore(Generic[K, V]):
    def __init__(self, budget: int | None, size: Callable[[V], int] = lambda value: 1) -> None:
        if budget is not None and budget <= 0:
            raise ValueError(f"an LRU budget must be positive, got {budget}")
        self.budget = budget
        self._size = size
        self._lock = threading.Lock()  # guards _entries and _key_locks; never held while loading
        self._entries: OrderedDict[K, Entry[V]] = OrderedDict()  # least recently used first
        self._key_locks: dict[K, threading.Lock] = {}

    def get(self, key: K) -> V | None:
        entry = self._touch(key)
        return None if entry is None else entry.value

    def get_or_load(self, key: K, loader: Callable[[], V], size: int | None = None) -> tuple[V, list[K]]:
        """The value of ``key``, calling ``loader()`` only if it is not resident; also the keys
        evicted to make room (empty when nothing was loaded)."""
        entry = self._touch(key)
        if entry is not None:
            return entry.value, []
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            entry = self._touch(key)  # another caller may have loaded it while we waited
            if entry is not None:
                return entry.value, []
            started = time.perf_counter()
            value = loader()
            return value, self._insert(key, value, size, time.perf_counter() - started)

    def put(self, key: K, value: V, size: int | None = None) -> list[K]:
        """Store ``value`` under ``key`` (replacing any); returns the keys evicted."""
        return self._insert(key, value, size, 0.0)

    def _insert(self, key: K, value: V, size: int | None, load_seconds: float) -> list[K]:
        measured = self._size(value) if size is None else int(size)
        with self._lock:
            self._entries[key] = Entry(value, measured, load_seconds, time.time())
            self._entries.move_to_end(key)
            return self._evict_over_budget(keep=key)

    def _touch(self, key: K) -> Entry[V] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = time.time()
                self._entries.move_to_end(key)
            return entry

    def _evict_over_budget(self, keep: K) -> list[K]:
        # Caller holds self._lock.
        if self.budget is None:
            return []
        evicted: list[K] = []
        while sum(e.size for e in self._entries.values()) > self.budget:
            oldest = next((k for k in self._entries if k != keep), None)
            if oldest is None:
                break
            del self._entries[oldest]
            evicted.append(oldest)
        return evicted

    def evict(self, key: K) -> bool:
        """Drop ``key`` if resident; True when something was dropped."""
        with self._lock:
            return self._entries.pop(key, None) is not None

    def entries(self) -> list[tuple[K, Entry[V]]]:
        """(key, entry) pairs, least recently used first."""
        with self._lock:
            return list(self._entries.items())

    def total(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

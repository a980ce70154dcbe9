"""Items produced ahead on a thread, and work handed to a pool, or both in the caller's thread in a
process kept to one CPU."""

from __future__ import annotations

import threading

import pytest

from conftest import set_cpu_budget
from dubline.core.prefetch import prefetched, work_pool


def _items(count: int, threads: list[str], closed: threading.Event):
    try:
        for item in range(count):
            threads.append(threading.current_thread().name)
            yield item
    finally:
        closed.set()


@pytest.mark.parametrize("budget, producer", [("1", "consumer"), (None, "dubline-prefetch")])
def test_items_come_in_order_from_a_thread_unless_kept_to_one_cpu(monkeypatch, budget, producer) -> None:
    set_cpu_budget(monkeypatch, budget, needs_cores=True)
    threads: list[str] = []
    closed = threading.Event()
    consumer = threading.current_thread().name
    ahead = prefetched(_items(5, threads, closed), depth=2)
    assert list(ahead) == [0, 1, 2, 3, 4]
    assert set(threads) == {consumer if producer == "consumer" else producer}
    assert closed.wait(10)


@pytest.mark.parametrize("budget", ["1", None])
def test_closing_early_closes_the_items(monkeypatch, budget) -> None:
    set_cpu_budget(monkeypatch, budget)
    closed = threading.Event()
    ahead = prefetched(_items(100, [], closed), depth=2)
    assert next(ahead) == 0
    ahead.close()
    assert closed.wait(10)


@pytest.mark.parametrize("budget, worker", [("1", "caller"), (None, "dubline-test")])
def test_work_runs_on_the_pool_unless_kept_to_one_cpu(monkeypatch, budget, worker) -> None:
    set_cpu_budget(monkeypatch, budget, needs_cores=True)
    caller = threading.current_thread().name
    with work_pool(2, "dubline-test") as pool:
        futures = [pool.submit(lambda n: (n * n, threading.current_thread().name), n) for n in range(4)]
        results = [future.result() for future in futures]
        failed = pool.submit(lambda: 1 / 0)
    assert [value for value, _ in results] == [0, 1, 4, 9]
    names = {name for _, name in results}
    if worker == "caller":
        assert names == {caller}
    else:
        assert all(name.startswith(worker) for name in names)
    with pytest.raises(ZeroDivisionError):  # a failure reaches whoever asks for the result
        failed.result()

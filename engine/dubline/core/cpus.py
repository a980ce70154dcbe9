"""The number of CPUs this process may keep busy, which every stage sizes its threads by.

Left alone, each library starts a thread per core (OpenCV, torch, FFmpeg's codecs) and so do our
own pools (clip analysis, the retrieval backend's transfer threads). That suits one render on a
machine of its own. A batch worker is one of several on a machine, given ``num_cpus`` by Ray: it
must stay within that share, or N workers each start threads for every core and fight for them.
"""

from __future__ import annotations

import os
import sys

#: Environment variable a process inherits its budget from (a Ray worker, a render started by a
#: pipeline that shares the machine).
ENVIRONMENT = "DUBLINE_CPUS"


def machine_cpus() -> int:
    """The CPUs this process may be scheduled on (its affinity mask, not the whole machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_budget() -> int:
    """The CPUs this process may keep busy: ``DUBLINE_CPUS`` when set, else all it may run on."""
    value = os.environ.get(ENVIRONMENT, "").strip()
    if value.isdigit() and int(value) > 0:
        return min(int(value), machine_cpus())
    return machine_cpus()


def limit_cpus(count: int) -> None:
    """Keep this process (and processes it starts) to ``count`` CPUs from now on: our own pools
    read the budget when they start, OpenCV's and torch's pools are resized here."""
    if count < 1:
        raise ValueError(f"a CPU budget must be at least 1, not {count}")
    os.environ[ENVIRONMENT] = str(count)
    budget = cpu_budget()
    import cv2

    cv2.setNumThreads(budget)
    # torch is imported only where a backend needs it; resize its pool only if it is here already
    # (a backend that imports it later sizes it from the budget itself).
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(budget)


def codec_threads() -> int:
    """FFmpeg's ``thread_count`` for a decoder or encoder: 0 (its own choice, from the core count)
    unless the budget is smaller than the machine."""
    budget = cpu_budget()
    return 0 if budget >= machine_cpus() else budget

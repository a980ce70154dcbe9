"""Where a batch's workers run: Ray actors (a local Ray started in this process, or a cluster
joined by address), or this process alone (``--workers 0``, for debugging and small jobs).

Both pools offer the same calls: ``call(index, method, *args)`` returns a handle, ``ready(handles,
timeout)`` those finished, ``result(handle)`` the method's return value (``WorkerLost`` when the
worker died more often than Ray retries), ``states()``, ``cancel(index)``, ``replace(index)``.

Ray is started so that it never reaches the network: no dashboard, no usage statistics, and a
local Ray binds to the loopback address only. Workers are actors with restarts and task retries,
so a shot whose worker dies is rendered again by the restarted actor.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from dubline.apps.batch.worker import ShotWorker, WorkerRecipe, WorkerState
from dubline.core.cpus import machine_cpus
from dubline.core.errors import InvalidInputError
from dubline.pipeline.batch import ShotSettings

log = logging.getLogger(__name__)

#: Threads per actor: one renders, the others answer ``state`` and ``cancel`` meanwhile.
ACTOR_CONCURRENCY = 3


class WorkerLost(Exception):
    """The worker process died and Ray's retries are spent."""


@dataclass(frozen=True)
class RayPlace:
    """Where the actors run, as the report says it."""

    where: str  # "local Ray (4 CPUs)" / "Ray cluster at ADDR (3 nodes, 48 CPUs, 8 GPUs)"
    cpus: int
    gpus: int
    nodes: int
    started_here: bool
    largest_node_cpus: int = 0


def local_ray_cpus(workers: int | None, cpus_per_worker: int | None, analysis_workers: int = 0) -> int:
    """CPUs a local Ray advertises: this machine's, or more when the workers asked for need more
    (``--workers 4`` on two cores still starts four workers; they share the cores)."""
    return max(machine_cpus(), (workers or 0) * (cpus_per_worker or 1) + analysis_workers)


def start_ray(address: str | None, cpus: int | None = None) -> RayPlace:
    """Join the Ray at ``address``, or start a local one in this process (reusing one this
    process already runs). Nothing is fetched from the network, nothing needs starting by hand."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        # Read by Ray when it is imported: a local Ray advertises 127.0.0.1, not this host's
        # network address, so it opens nothing beyond loopback.
        if "ray" in sys.modules and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ:
            log.warning("ray was imported before dubline started it: the local Ray may listen beyond loopback")
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Ray runs its workers at nice 15; a batch is the job the user asked for, as a plain
        # `dubline render` is, so a local Ray's workers run at normal priority (override by setting it).
        os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    started = False
    if not ray.is_initialized():
        common = dict(include_dashboard=False, configure_logging=False, log_to_driver=False, namespace="dubline")
        try:
            if address is None:
                ray.init(num_cpus=cpus or machine_cpus(), **common)
            else:
                ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise InvalidInputError(f"--ray-address {address}: cannot join the Ray cluster there: {error}") from None
        started = True
    resources = ray.cluster_resources()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = len(alive)
    largest = max((int(n.get("Resources", {}).get("CPU", 0)) for n in alive), default=0)
    cpus_total, gpus_total = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    where = f"local Ray ({cpus_total} CPUs)" if address is None else \
        f"Ray cluster at {address} ({nodes} nodes, {cpus_total} CPUs, {gpus_total} GPUs)"
    return RayPlace(where, cpus_total, gpus_total, nodes, started, largest)


def stop_ray(place: RayPlace) -> None:
    if place.started_here:
        import ray

        ray.shutdown()


class RayPool:
    """``count`` ShotWorker actors, each with ``cpus`` CPUs (its threads sized to them) and ``gpus``
    GPUs, restarted (and their calls retried) up to ``retries`` times when their process dies."""

    def __init__(self, count: int, settings: ShotSettings, recipe: WorkerRecipe, cpus: int = 1, gpus: float = 0,
                 retries: int = 2) -> None:
        import ray

        self._ray = ray
        self._remote = ray.remote(ShotWorker).options(
            num_cpus=cpus, num_gpus=gpus, max_restarts=retries, max_task_retries=retries,
            max_concurrency=ACTOR_CONCURRENCY,
        )
        self._args = (settings, recipe, cpus)
        self.actors = [self._remote.remote(*self._args) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.actors)

    def call(self, index: int, method: str, *args: Any) -> Any:
        return getattr(self.actors[index], method).remote(*args)

    def ready(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        if not handles:
            return []
        done, rest = self._ray.wait(list(handles), num_returns=1, timeout=timeout, fetch_local=False)
        if done and rest:  # and whatever else finished meanwhile
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
            done += more
        return done

    def result(self, handle: Any) -> Any:
        try:
            return self._ray.get(handle)
        except (self._ray.exceptions.RayActorError, self._ray.exceptions.WorkerCrashedError) as error:
            raise WorkerLost(" ".join(str(error).split())[:300]) from None

    def states(self, timeout: float = 1.0) -> dict[int, WorkerState]:
        """What each worker is doing (workers that do not answer in time are left out)."""
        handles = {actor.state.remote(): index for index, actor in enumerate(self.actors)}
        done, _ = self._ray.wait(list(handles), num_returns=len(handles), timeout=timeout)
        states = {}
        for handle in done:
            try:
                states[handles[handle]] = self._ray.get(handle)
            except self._ray.exceptions.RayError:
                continue  # restarting: it answers next time
        return states

    def cancel(self, index: int) -> None:
        self.actors[index].cancel.remote()

    def replace(self, index: int) -> None:
        """A fresh actor in place of one that died for good."""
        self._ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._remote.remote(*self._args)

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        self.actors = []


class InlinePool:
    """One ShotWorker in this process, run on a background thread (so progress and Ctrl-C work)."""

    def __init__(self, settings: ShotSettings, recipe: WorkerRecipe) -> None:
        self.worker = ShotWorker(settings, recipe)
        self._executor = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dubline-shot")
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return 1

    def call(self, index: int, method: str, *args: Any) -> futures.Future:
        return self._executor.submit(getattr(self.worker, method), *args)

    def ready(self, handles: Sequence[futures.Future], timeout: float) -> list[futures.Future]:
        if not handles:
            return []
        done, _ = futures.wait(handles, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: futures.Future) -> Any:
        return handle.result()

    def states(self, timeout: float = 1.0) -> dict[int, WorkerState]:
        return {0: self.worker.state()}

    def cancel(self, index: int) -> None:
        self.worker.cancel()

    def replace(self, index: int) -> None:
        raise WorkerLost("the in-process worker cannot be replaced")

    def close(self) -> None:
        self._executor.shutdown(wait=True)

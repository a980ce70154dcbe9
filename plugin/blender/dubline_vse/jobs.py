"""Renders on worker threads, free of ``bpy``: Blender's UI never waits on the engine.

A worker submits through ``dubline_client.EngineClient.render`` and puts plain ``JobEvent``s on a
queue; the main thread drains it (``JobRunner.drain``) from a ``bpy.app.timers`` callback and is
the only one that touches Blender data.
"""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from types import ModuleType

from . import menus
from .engine import EngineSettings, EngineUnavailable, LocalEngine

#: Event kinds, in the order a job goes through them (the last is one of done/failed/cancelled).
STARTING, QUEUED, PROGRESS, DONE, FAILED, CANCELLED = "STARTING", "QUEUED", "PROGRESS", "DONE", "FAILED", "CANCELLED"
FINAL = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class RenderOrder:
    """One patch to render; paths are absolute on the engine's machine."""

    video: str
    audio: str
    span_text: str
    out: str
    backend: str = ""  # empty: the engine's default
    codec: str = ""
    audio_offset: Fraction = Fraction(0)


@dataclass(frozen=True)
class JobEvent:
    key: str
    kind: str
    job_id: str = ""
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    out: str = ""
    frames: int = 0
    preview_jpeg: bytes = b""  # PROGRESS: a small picture of the latest patched frame, when the engine sent one
    preview_frame: int = 0  # which patch frame it shows
    flags: tuple[tuple[int, int, str, str], ...] = ()  # DONE: (first, end, kind, note) of patch frames to look at

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total > 0 else 0.0


@dataclass
class _Job:
    key: str
    order: RenderOrder
    settings: EngineSettings
    job_id: str = ""
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class JobRunner:
    """Owns the worker threads and the local engine the add-on may have started."""

    def __init__(self, client_module: ModuleType, engine: LocalEngine | None = None) -> None:
        self.client = client_module
        self.engine = engine or LocalEngine()
        self.events: queue.Queue[JobEvent] = queue.Queue()
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def submit(self, order: RenderOrder, settings: EngineSettings) -> str:
        """Start a render on a worker thread; returns the key its events carry."""
        job = _Job(key=uuid.uuid4().hex, order=order, settings=settings)
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"dubline-{job.key[:8]}", daemon=True)
        with self._lock:
            self._jobs[job.key] = job
        job.thread.start()
        return job.key

    def active(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def cancel(self, key: str) -> bool:
        """Ask the engine to cancel; the job's CANCELLED event follows. False if the job is unknown."""
        with self._lock:
            job = self._jobs.get(key)
        if job is None:
            return False
        job.cancel_requested.set()
        if job.job_id:
            # A unary call with a deadline, on its own thread so the UI does not wait for it.
            threading.Thread(target=self._send_cancel, args=(job.job_id, job.settings), daemon=True).start()
        return True

    def drain(self) -> list[JobEvent]:
        """Events that arrived since the last call (main thread)."""
        events = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every job, wait for the workers, stop the engine this add-on started."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_requested.set()
            if job.job_id:
                self._send_cancel(job.job_id, job.settings)
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)
        self.engine.stop()

    def _send_cancel(self, job_id: str, settings: EngineSettings) -> None:
        client = settings.client(self.client, 5.0)
        try:
            client.cancel(job_id)
        except self.client.EngineError:
            pass  # the job ended already, or the engine is gone: either way the stream ends
        finally:
            client.close()

    def _put(self, job: _Job, kind: str, **values) -> None:
        self.events.put(JobEvent(key=job.key, kind=kind, job_id=job.job_id, **values))

    def _run(self, job: _Job) -> None:
        settings = job.settings
        try:
            self._put(job, STARTING, stage="connecting", message=f"connecting to {settings.address}")
            self.engine.ensure(self.client, settings, stop=job.cancel_requested)
            self._learn_choices(settings)
            self._stream(job, settings)
        except EngineUnavailable as error:
            self._put(job, CANCELLED if job.cancel_requested.is_set() else FAILED, message=str(error))
        except self.client.EngineError as error:
            if error.code == "CANCELLED" and job.cancel_requested.is_set():
                self._put(job, CANCELLED, message="cancelled")
            else:
                self._put(job, FAILED, message=_engine_message(error.code, error.message))
        except Exception as error:  # noqa: BLE001 - a worker must report, never die silently
            self._put(job, FAILED, message=f"{type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._jobs.pop(job.key, None)

    def _learn_choices(self, settings: EngineSettings) -> None:
        """Refresh the menus from the engine that is about to render (it may have just started)."""
        try:
            menus.ask(self.client, settings)
        except (self.client.EngineError, ValueError):
            pass  # the render itself reports a dead engine; the menus keep what they had

    def _stream(self, job: _Job, settings: EngineSettings) -> None:
        order = job.order
        spec = self.client.render_spec(
            order.video, order.audio, order.span_text, order.out,
            backend=order.backend, codec=order.codec, audio_offset=order.audio_offset,
        )
        with settings.client(self.client, 30.0) as client:
            for event in client.render(spec):
                first_id = not job.job_id and event.job_id
                job.job_id = event.job_id or job.job_id
                if first_id and job.cancel_requested.is_set():
                    self._send_cancel(job.job_id, settings)  # Cancel pressed before the engine named the job
                kind = event.WhichOneof("event")
                if kind == "queued":
                    self._put(job, QUEUED, stage="queued", message=f"{event.queued.position} job(s) ahead")
                elif kind == "progress":
                    progress = event.progress
                    self._put(job, PROGRESS, stage=progress.stage, done=progress.done, total=progress.total,
                              preview_jpeg=bytes(progress.preview_jpeg), preview_frame=int(progress.preview_frame))
                elif kind == "done":
                    self._put(job, DONE, out=event.done.out, frames=event.done.frames_written,
                              message="; ".join(event.done.warnings),
                              flags=tuple((f.first, f.end, f.kind, f.note) for f in event.done.flags))
                    return
                elif kind == "error":
                    if event.error.code == "CANCELLED" or job.cancel_requested.is_set():
                        self._put(job, CANCELLED, message="cancelled")
                    else:
                        self._put(job, FAILED, message=_engine_message(event.error.code, event.error.message))
                    return
        if job.cancel_requested.is_set():
            self._put(job, CANCELLED, message="cancelled")
        else:
            self._put(job, FAILED, message="the engine ended the render without a result")


def _engine_message(code: str, message: str) -> str:
    """The engine's message with a hint for the failures editors meet most."""
    hints = {
        "UNAVAILABLE": "is the engine running? (Preferences > Add-ons > dubline)",
        "UNAUTHENTICATED": "the engine wants a token: set it in the add-on preferences",
        "PERMISSION_DENIED": "the engine's --media-root does not include this path",
    }
    hint = hints.get(code, "")
    return f"{message} ({code}{'; ' + hint if hint else ''})"

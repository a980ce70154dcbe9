"""Engine soak: many clients x short renders on loopback, with random cancels, clients killed by
pid mid-render and stalled frame-socket connections; prints what happened and what it cost.

    python benchmarks/soak_engine.py [--clients 8] [--renders 25] [--stalled 4] [--seed 1]
    python benchmarks/soak_engine.py --short      # 3 clients x 3 renders: what CI runs (tests/test_soak.py)

One engine subprocess (``dubline serve`` on 127.0.0.1, a frame socket, 2 workers) renders 3-8 frame
spans of a 30-frame excerpt of the shared ``speaker_b`` clip. Each client is its own process; a
client cancels about one render in five after its first progress event, and the driver kills about
one client render in eight with SIGKILL (the client is restarted for its remaining renders). While
the clients run, ``--stalled`` connections to the frame socket each declare the largest body and
send nothing. Printed: completed / cancelled / killed / failed counts (failures that are not
cancellations), the engine's RSS (current and peak, after the warm-up render and at the end),
stalled connections answered, and files left behind beside the outputs (must be 0). ``--json``
prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))  # mediagen: the clip excerpt

from dubline.apps.server import frame_protocol  # noqa: E402
from dubline_client import EngineClient, frames_span, pb, render_spec  # noqa: E402

DEFAULT_MEDIA = REPOSITORY.parent / "shared" / "media"
EXCERPT_FRAMES = 30

CLIENT = r"""
import json, sys
from dubline_client import EngineClient, EngineError, frames_span, render_spec
address, tasks = sys.argv[1], json.loads(sys.argv[2])
def say(**fields):
    print(json.dumps(fields), flush=True)
with EngineClient(address, timeout=60) as engine:
    for task in tasks:
        spec = render_spec(task["video"], task["audio"], frames_span(task["first"], task["end"], 25), task["out"],
                           codec="h264")
        events = engine.render(spec)
        job_id, result, message = "", "failed", ""
        try:
            for event in events:
                if not job_id and event.job_id:
                    job_id = event.job_id
                    say(task=task["index"], event="started", job_id=job_id)
                kind = event.WhichOneof("event")
                if kind == "progress" and task["cancel"]:
                    events.close()  # ends the call: the engine cancels the job
                    result = "cancelled"
                    break
                if kind == "done":
                    result = "done"
                elif kind == "error":
                    result, message = ("cancelled" if event.error.code == "CANCELLED" else "failed"), event.error.message
        except EngineError as error:
            result, message = "failed", f"{error.code}: {error.message}"
        say(task=task["index"], event="end", job_id=job_id, result=result, message=message)
"""


@dataclass
class Task:
    index: int
    client: int
    first: int
    end: int
    out: Path
    cancel: bool
    kill: bool
    result: str = ""  # done | cancelled | killed | failed
    message: str = ""
    job_id: str = ""


@dataclass
class Figures:
    clients: int
    renders: int
    completed: int = 0
    cancelled: int = 0
    killed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    engine_jobs: dict[str, int] = field(default_factory=dict)
    stalled_answered: int = 0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    peak_rss_start_mb: float = 0.0
    peak_rss_end_mb: float = 0.0
    rss_trace_mb: list[float] = field(default_factory=list)
    files_left: list[str] = field(default_factory=list)
    serving_at_end: bool = False
    seconds: float = 0.0


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def start_engine(work: Path) -> tuple[subprocess.Popen, str, Path]:
    frames = work / "frames.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "dubline.apps.cli.main", "serve", "--listen", "127.0.0.1:0", "--frame-socket",
         f"unix:{frames}", "--cache", str(work / "cache"), "--workers", "2", "--max-queued", "256", "--grace", "5"],
        stdout=subprocess.PIPE, stderr=open(work / "engine.log", "w"), text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("dubline engine listening on "):
        raise SystemExit(f"the engine did not start: {line!r} (see {work / 'engine.log'})")
    process.stdout.readline()  # the frame socket's line
    return process, line.removeprefix("dubline engine listening on ").strip(), frames


class StalledClients:
    """``count`` frame-socket connections that each declare the largest body and send nothing,
    reopened each time the engine answers one (at its read deadline), until ``stop``."""

    def __init__(self, path: Path, count: int) -> None:
        self.path, self.answered = path, 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with socket.socket(socket.AF_UNIX) as stream:
                stream.connect(str(self.path))
                stream.sendall(frame_protocol.HEADER.pack(frame_protocol.MAGIC, frame_protocol.VERSION,
                                                        frame_protocol.KIND_FRAME_REQUEST, frame_protocol.MAX_BODY_BYTES))
                stream.settimeout(1.0)
                while not self._stop.is_set():
                    try:
                        if stream.recv(1 << 16) == b"":
                            break
                    except TimeoutError:
                        continue
                    with self._lock:
                        self.answered += 1
                    break

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def warm_up(address: str, clip: Path, dub: Path, directory: Path) -> None:
    """What a working engine has done before it is measured: the clip analysed, and both workers
    busy at once (each thread's first render grows its allocator's arena once)."""
    directory.mkdir()
    with EngineClient(address, timeout=60) as engine:
        engine.wait_until_ready(60)
        engine.render_and_wait(render_spec(str(clip), str(dub), frames_span(0, 5, 25), str(directory / "first.mov"),
                                           codec="h264"))
        spans = [(0, 8), (10, 18), (20, 28), (5, 13)]
        threads = [threading.Thread(target=engine.render_and_wait, args=(render_spec(
            str(clip), str(dub), frames_span(first, end, 25), str(directory / f"w{first}.mov"), codec="h264"),))
            for first, end in spans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


class RssSampler:
    """The engine's RSS every half second while the clients run."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples = pid, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append(memory_mb(self.pid)[0])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def trace(self) -> list[float]:
        """RSS (MB) at each quarter of the run."""
        if not self.samples:
            return []
        return [round(self.samples[min(len(self.samples) - 1, len(self.samples) * q // 4)]) for q in (1, 2, 3, 4)]


def run_clients(address: str, clip: Path, dub: Path, tasks: list[Task], clients: int, rng: random.Random) -> None:
    """Each client's tasks in its own process; a task marked ``kill`` has its process killed by
    pid soon after the engine names its job, and the client restarts for the rest."""
    by_client = {c: [t for t in tasks if t.client == c] for c in range(clients)}

    def client(index: int) -> None:
        remaining = by_client[index]
        while remaining:
            payload = [dict(index=t.index, video=str(clip), audio=str(dub), first=t.first, end=t.end, out=str(t.out),
                            cancel=t.cancel) for t in remaining]
            process = subprocess.Popen([sys.executable, "-c", CLIENT, address, json.dumps(payload)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            by_index = {t.index: t for t in remaining}
            killed = None
            for line in process.stdout:
                event = json.loads(line)
                task = by_index[event["task"]]
                task.job_id = event.get("job_id") or task.job_id
                if event["event"] == "started" and task.kill:
                    time.sleep(rng.uniform(0.0, 0.5))
                    os.kill(process.pid, signal.SIGKILL)
                    killed = task
                    break
                if event["event"] == "end":
                    task.result, task.message = event["result"], event["message"]
            process.wait()
            process.stdout.close()
            process.stderr.close()
            if killed is not None:
                killed.result = killed.result or "killed"
            done = {t.index for t in remaining if t.result}
            unfinished = [t for t in remaining if t.index not in done]
            if killed is None and unfinished:  # the client died on its own: a failure, not a kill
                for task in unfinished:
                    task.result, task.message = "failed", f"client exited {process.returncode}"
                unfinished = []
            remaining = unfinished

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def soak(media_dir: Path, clients: int, renders: int, stalled: int, seed: int, scale: int) -> Figures:
    from mediagen import excerpt

    rng = random.Random(seed)
    figures = Figures(clients, renders)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dubline-soak-") as temp:
        work = Path(temp)
        (work / "media").mkdir()
        clip = excerpt(media_dir / "speaker_b.mp4", work / "media" / "clip.mp4", EXCERPT_FRAMES, scale=scale)
        dub = media_dir / "dub_en_16k.wav"
        process, address, frames_path = start_engine(work)
        try:
            warm_up(address, clip, dub, work / "warm")
            figures.rss_start_mb, figures.peak_rss_start_mb = memory_mb(process.pid)
            sampler = RssSampler(process.pid)

            tasks = []
            for c in range(clients):
                (work / f"client{c}").mkdir()
                for r in range(renders):
                    length = rng.randint(3, 8)
                    first = rng.randint(0, EXCERPT_FRAMES - length)
                    roll = rng.random()
                    tasks.append(Task(len(tasks), c, first, first + length, work / f"client{c}" / f"r{r}.mov",
                                      cancel=roll < 0.2, kill=0.2 <= roll < 0.325))
            # However few the renders (--short), at least one of each.
            if not any(t.cancel for t in tasks):
                tasks[0].cancel = True
            if not any(t.kill for t in tasks):
                tasks[-1].kill, tasks[-1].cancel = True, False
            # A render to be cancelled or killed covers the whole excerpt: a few frames on a warm
            # engine often finish before the cancel arrives (then counted as completed).
            for task in tasks:
                if task.cancel or task.kill:
                    task.first, task.end = 0, EXCERPT_FRAMES
            stalls = StalledClients(frames_path, stalled) if stalled else None
            try:
                run_clients(address, clip, dub, tasks, clients, rng)
            finally:
                if stalls is not None:
                    stalls.stop()
                    figures.stalled_answered = stalls.answered

            sampler.stop()
            figures.rss_trace_mb = sampler.trace()
            with EngineClient(address, timeout=60) as engine:
                jobs = engine.list_jobs()
                while any(j.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING) for j in jobs):
                    time.sleep(0.2)  # killed clients' jobs are being cancelled by the engine
                    jobs = engine.list_jobs()
                figures.serving_at_end = engine.health() == "SERVING"
            states = {pb.JobState.Name(j.state).removeprefix("JOB_STATE_").lower(): 0 for j in jobs}
            for job in jobs:
                states[pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()] += 1
                if job.state == pb.JOB_STATE_FAILED and job.error.code != "CANCELLED":
                    figures.failures.append(f"engine job {job.job_id}: {job.error.code}: {job.error.message}")
            figures.engine_jobs = states
            figures.rss_end_mb, figures.peak_rss_end_mb = memory_mb(process.pid)

            by_id = {job.job_id: job.state for job in jobs}
            for task in tasks:
                if task.result in ("cancelled", "killed") and by_id.get(task.job_id) == pb.JOB_STATE_DONE:
                    task.result = "done"  # it finished before the cancel arrived: its patch is a real output
                if task.result == "done":
                    figures.completed += 1
                elif task.result == "cancelled":
                    figures.cancelled += 1
                elif task.result == "killed":
                    figures.killed += 1
                else:
                    figures.failed += 1
                    figures.failures.append(f"render {task.index}: {task.result or 'no result'} {task.message}")
            expected = {t.out for t in tasks if t.result == "done"}
            for c in range(clients):
                for path in sorted((work / f"client{c}").iterdir()):
                    if path not in expected:
                        figures.files_left.append(str(path.relative_to(work)))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    figures.seconds = time.monotonic() - started
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--renders", type=int, default=25, help="renders per client")
    parser.add_argument("--stalled", type=int, default=4, help="stalled frame-socket connections held meanwhile")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true", help="3 clients x 3 renders, 1 stalled connection (CI)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.short:
        args.clients, args.renders, args.stalled = 3, 3, 1
    figures = soak(args.media, args.clients, args.renders, args.stalled, args.seed, scale=3 if args.short else 2)
    if args.json:
        print(json.dumps(figures.__dict__))
    else:
        total = figures.clients * figures.renders
        print(f"{figures.clients} clients x {figures.renders} renders = {total} in {figures.seconds:.0f} s")
        print(f"completed {figures.completed}, cancelled {figures.cancelled}, killed {figures.killed}, "
              f"failed {figures.failed} (not cancellations)")
        print(f"engine jobs: {figures.engine_jobs}; SERVING at the end: {figures.serving_at_end}")
        print(f"stalled frame-socket connections answered: {figures.stalled_answered}")
        growth = (figures.rss_end_mb / figures.rss_start_mb - 1) * 100 if figures.rss_start_mb else 0.0
        print(f"engine RSS after warm-up {figures.rss_start_mb:.0f} MB (peak {figures.peak_rss_start_mb:.0f} MB), "
              f"at the end {figures.rss_end_mb:.0f} MB (peak {figures.peak_rss_end_mb:.0f} MB): {growth:+.1f} %")
        print(f"engine RSS at each quarter of the run: {figures.rss_trace_mb} MB")
        print(f"files left behind: {len(figures.files_left)}")
        for line in figures.failures + figures.files_left:
            print(f"  {line}")
    return 0 if not figures.failed and not figures.files_left and figures.serving_at_end else 1


if __name__ == "__main__":
    sys.exit(main())

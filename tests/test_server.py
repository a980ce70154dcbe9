"""Engine server without real renders: codegen, client isolation, job queue, security, validation.

Real servers run in-process on port 0 or a unix socket; work that would take long is a fake slow
function injected into the job queue.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from dubline.apps.server.app import create_server
from dubline.apps.server.jobs import JobQueue, JobState
from dubline.apps.server.security import MediaRoots, parse_listen
from dubline.core.errors import (
    AccessDeniedError,
    CancelledError,
    EngineBusyError,
    InvalidInputError,
    UnknownJobError,
)
from dubline_client import (
    EngineClient,
    EngineError,
    frames_span,
    image_message,
    pb,
    rational,
    render_spec,
)

REPOSITORY = Path(__file__).resolve().parents[1]


# -- generated code and the client's isolation ---------------------------------------------------


def test_committed_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPOSITORY / "proto" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    committed = REPOSITORY / "plugin" / "dubline_client" / "_generated"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for relative in fresh:
        assert filecmp.cmp(tmp_path / relative, committed / relative, shallow=False), f"{relative} differs: run proto/generate.py"


def test_client_imports_without_torch_or_the_engine() -> None:
    code = (
        "import sys, dubline_client\n"
        "from dubline_client._generated.dubline.v1 import engine_pb2_grpc\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m == 'dubline' or m.startswith(('torch.', 'dubline.')))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_rational_is_exact() -> None:
    from fractions import Fraction

    assert rational(Fraction("0.48")) == pb.RationalTime(value=12, rate_num=25, rate_den=1)
    assert rational(7, Fraction(24000, 1001)) == pb.RationalTime(value=7, rate_num=24000, rate_den=1001)


# -- job queue -----------------------------------------------------------------------------------


def _slow(frames: int, step_s: float = 0.02, result: str = "ok"):
    def work(progress, cancel):
        for done in range(1, frames + 1):
            cancel.check()
            time.sleep(step_s)
            progress("render", done, frames)
        return result

    return work


def test_job_events_arrive_in_order() -> None:
    queue = JobQueue(max_workers=1)
    job = queue.submit("render", _slow(20, 0.001))
    events = list(job.events_from(0, stop_waiting=lambda: False))
    assert events[0].kind == "queued" and events[-1].kind == "done" and events[-1].payload == "ok"
    done_counts = [e.payload[1] for e in events if e.kind == "progress"]
    assert done_counts == sorted(done_counts) and done_counts[-1] == 20
    queue.shutdown(1)


def test_cancel_stops_a_running_job_within_a_step() -> None:
    queue = JobQueue(max_workers=1)
    job = queue.submit("render", _slow(1000, 0.01))
    while job.progress[1] < 3:  # running and past its first steps
        time.sleep(0.01)
    queue.cancel(job.id)
    steps_at_cancel = job.progress[1]
    assert job.wait(30)
    assert job.state is JobState.CANCELLED and isinstance(job.error, CancelledError)
    assert job.progress[1] <= steps_at_cancel + 1  # the step under way finished, no further one began
    queue.shutdown(1)


def test_concurrency_is_bounded_and_device_jobs_serialise() -> None:
    queue = JobQueue(max_workers=3)
    running, peak, device_peak, device_running = [0], [0], [0], [0]
    lock = threading.Lock()

    def work(on_device: bool):
        def run(progress, cancel):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                device_running[0] += on_device
                device_peak[0] = max(device_peak[0], device_running[0])
            time.sleep(0.1)
            with lock:
                running[0] -= 1
                device_running[0] -= on_device

        return run

    jobs = [queue.submit("render", work(True), device="cuda:0") for _ in range(3)]
    jobs += [queue.submit("render", work(False)) for _ in range(3)]
    for job in jobs:
        assert job.wait(5)
        assert job.state is JobState.DONE
    assert peak[0] <= 3 and device_peak[0] == 1
    queue.shutdown(1)


def test_a_full_queue_refuses_new_jobs() -> None:
    queue = JobQueue(max_workers=1, max_queued=2)
    blocker = queue.submit("render", _slow(1000, 0.01))
    while blocker.state is not JobState.RUNNING:
        time.sleep(0.01)
    queue.submit("render", _slow(1))
    queue.submit("render", _slow(1))
    with pytest.raises(EngineBusyError, match="already queued"):
        queue.submit("render", _slow(1))
    with pytest.raises(UnknownJobError, match="nope"):
        queue.get("nope")
    queue.shutdown(0)
    assert blocker.state is JobState.CANCELLED


def test_failing_work_reports_its_error() -> None:
    queue = JobQueue(max_workers=1)

    def bad(progress, cancel):
        raise InvalidInputError("span frames 5-900 is outside clip.mov")

    job = queue.submit("render", bad)
    job.wait(2)
    assert job.state is JobState.FAILED and "outside clip.mov" in str(job.error)
    queue.shutdown(1)


# -- security ------------------------------------------------------------------------------------


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:0").local and parse_listen("[::1]:5000").local and parse_listen("localhost:1").local
    assert not parse_listen("0.0.0.0:5000").local and not parse_listen("example.org:5000").local
    unix = parse_listen("unix:/tmp/x.sock")
    assert unix.local and unix.unix_path == Path("/tmp/x.sock")
    with pytest.raises(InvalidInputError, match="neither"):
        parse_listen("nowhere")
    with pytest.raises(InvalidInputError, match="token"):
        create_server("0.0.0.0:0")


def test_media_roots_reject_dot_dot_and_symlink_escapes(tmp_path: Path) -> None:
    root, outside = tmp_path / "media", tmp_path / "secret"
    root.mkdir(), outside.mkdir()
    (outside / "clip.mov").write_bytes(b"x")
    (root / "link.mov").symlink_to(outside / "clip.mov")
    (root / "linkdir").symlink_to(outside)
    roots = MediaRoots([root])
    assert roots.check(str(root / "a" / ".." / "b.mov"), "spec.out") == root / "b.mov"
    for escape in (root / ".." / "secret" / "clip.mov", root / "link.mov", root / "linkdir" / "out.mov"):
        with pytest.raises(AccessDeniedError, match="outside the engine's media roots"):
            roots.check(str(escape), "spec.video")
    with pytest.raises(InvalidInputError, match="absolute"):
        roots.check("relative/clip.mov", "spec.video")
    with pytest.raises(InvalidInputError, match="spec.video is required"):
        roots.check("", "spec.video")


# -- a real server -------------------------------------------------------------------------------


@pytest.fixture()
def media_root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture(params=["tcp", "unix"])
def engine(request, tmp_path: Path, media_root: Path):
    address = "127.0.0.1:0" if request.param == "tcp" else f"unix:{tmp_path / 'engine.sock'}"
    server, port = create_server(address, media_roots=[media_root], cache_root=tmp_path / "cache",
                                 work_dir=tmp_path / "work")
    server.start()
    client = EngineClient(f"127.0.0.1:{port}" if port else address, timeout=10)
    yield server, client
    client.close()
    server.stop(1)


def test_health_capabilities_and_reflection(engine, media_root: Path) -> None:
    server, client = engine
    assert client.health() == "SERVING"
    capabilities = client.capabilities()
    assert capabilities.api == "dubline.v1" and capabilities.version
    assert {"retrieval", "wav2lip"} <= {b.name for b in capabilities.backends}
    retrieval = next(b for b in capabilities.backends if b.name == "retrieval")
    assert retrieval.weights_present and not retrieval.missing_weights
    assert "prores" in capabilities.codecs and "h264" in capabilities.codecs
    assert capabilities.media_roots == [str(media_root.resolve())]
    assert capabilities.limits.max_frame_width > 0 and capabilities.limits.max_message_bytes > 0

    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(client._channel)
    answer = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert "dubline.v1.Engine" in {s.name for s in answer.list_services_response.service}


def _spec(media_root: Path, **changes) -> pb.RenderSpec:
    spec = render_spec(str(media_root / "clip.mp4"), str(media_root / "dub.wav"), frames_span(0, 5, 25),
                       str(media_root / "out.mov"))
    for name, value in changes.items():
        if isinstance(value, pb.Span):
            spec.span.CopyFrom(value)
        elif isinstance(value, list):
            del getattr(spec, name)[:]
            getattr(spec, name).extend(value)
        else:
            setattr(spec, name, value)
    return spec


def _render_error(client: EngineClient, spec: pb.RenderSpec) -> EngineError:
    with pytest.raises(EngineError) as caught:
        list(client.render(spec))
    return caught.value


def test_malformed_render_requests_are_invalid_argument(engine, media_root: Path) -> None:
    _, client = engine
    zero_rate = pb.Span(range=pb.TimeRange(start=pb.RationalTime(value=0, rate_num=0, rate_den=0),
                                           duration=pb.RationalTime(value=5, rate_num=25, rate_den=1)))
    cases = {
        "spec.video is required": _spec(media_root, video=""),
        "spec.span is required": _spec(media_root, span=pb.Span()),
        "rate 0/0": _spec(media_root, span=zero_rate),
        "duration must be positive": _spec(media_root, span=frames_span(5, 5, 25)),
        "must be an absolute path": _spec(media_root, audio="dub.wav"),
        "unknown-backend": _spec(media_root, backend="unknown-backend"),
        "spec.codec": _spec(media_root, codec="mpeg1"),
        "spec.library has 65 files": _spec(media_root, library=[str(media_root / "x.mp4")] * 65),
    }
    for expected, spec in cases.items():
        error = _render_error(client, spec)
        assert error.code == "INVALID_ARGUMENT", (expected, error)
        assert expected in error.message, (expected, error.message)
    with pytest.raises(grpc.RpcError) as missing_spec:
        list(client._stub.Render(pb.RenderRequest(), timeout=10))
    assert missing_spec.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec is required" in missing_spec.value.details()


def test_path_escape_is_permission_denied(engine, media_root: Path, tmp_path: Path) -> None:
    _, client = engine
    error = _render_error(client, _spec(media_root, video=str(media_root / ".." / "elsewhere.mp4")))
    assert error.code == "PERMISSION_DENIED" and "spec.video" in error.message and "elsewhere.mp4" in error.message
    (media_root / "escape").symlink_to(tmp_path)
    error = _render_error(client, _spec(media_root, out=str(media_root / "escape" / "out.mov")))
    assert error.code == "PERMISSION_DENIED" and "spec.out" in error.message


def test_malformed_frame_requests_are_invalid_argument(engine, media_root: Path) -> None:
    _, client = engine
    time_25 = pb.RationalTime(value=3, rate_num=25, rate_den=1)
    clip = _spec(media_root)
    cases = [
        ("source_frame is 100000x10", dict(time=time_25, clip=clip, source_frame=pb.Image(
            width=100000, height=10, row_bytes=400000, format=pb.PIXEL_FORMAT_RGBA8))),
        ("row_bytes 8 is less", dict(time=time_25, clip=clip,
                                     source_frame=image_message(b"\0" * 32, 4, 2, row_bytes=8))),
        ("has 31 bytes", dict(time=time_25, clip=clip, source_frame=image_message(b"\0" * 31, 4, 2))),
        ("time has rate 25/0", dict(time=pb.RationalTime(value=3, rate_num=25, rate_den=0), clip=clip)),
        ("job_id", dict(time=time_25)),
    ]
    for expected, fields in cases:
        request = pb.RenderFrameRequest(**fields)
        with pytest.raises(grpc.RpcError) as caught:
            client._stub.RenderFrame(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, expected
        assert expected in caught.value.details(), (expected, caught.value.details())
    with pytest.raises(EngineError) as unknown:
        client.render_frame(time_25, job_id="0123456789abcdef")
    assert unknown.value.code == "NOT_FOUND"


def test_wrong_token_is_unauthenticated(tmp_path: Path) -> None:
    token = "s3cret-token-of-enough-length"
    server, port = create_server("127.0.0.1:0", token=token, cache_root=tmp_path)
    server.start()
    try:
        for given in (None, "wrong-token-of-enough-length"):
            with EngineClient(f"127.0.0.1:{port}", token=given, timeout=5) as client:
                with pytest.raises(EngineError) as caught:
                    client.capabilities()
                assert caught.value.code == "UNAUTHENTICATED"
                with pytest.raises(EngineError) as caught:
                    list(client.render(render_spec("/a.mp4", "/b.wav", "0-5", "/c.mov")))
                assert caught.value.code == "UNAUTHENTICATED"
                assert client.health() == "SERVING"  # probes need no token
        with EngineClient(f"127.0.0.1:{port}", token=token, timeout=5) as client:
            assert client.capabilities().api == "dubline.v1"
    finally:
        server.stop(1)


def test_queued_jobs_are_listed_and_cancelled_through_the_api(engine) -> None:
    server, client = engine
    job = server.jobs.submit("render", _slow(1000, 0.01), label="/media/clip.mp4")
    listed = {j.job_id: j for j in client.list_jobs()}
    assert job.id in listed and listed[job.id].video == "/media/clip.mp4"
    status = client.cancel(job.id)
    assert status.job_id == job.id
    assert job.wait(2)
    final = client.get_job(job.id)
    assert final.state == pb.JOB_STATE_CANCELLED and final.error.code == "CANCELLED"


def test_a_second_engine_cannot_take_a_live_socket(tmp_path: Path) -> None:
    address = f"unix:{tmp_path / 'engine.sock'}"
    first, _ = create_server(address, cache_root=tmp_path)
    first.start()
    try:
        with pytest.raises(InvalidInputError, match="already listening"):
            create_server(address, cache_root=tmp_path)
    finally:
        first.stop(1)
    assert not (tmp_path / "engine.sock").exists()


def test_a_clip_key_is_the_clip_as_resolved(tmp_path: Path) -> None:
    """The OFX frame socket sends resolved paths and may leave the backend empty; a gRPC client may
    name the same clip through a symlink and the default backend by name: one clip, one render."""
    from dubline.apps.server import convert
    from dubline.apps.server.servicer import EngineServicer

    (tmp_path / "media").mkdir()
    for name in ("clip.mp4", "dub.wav"):
        (tmp_path / "media" / name).write_bytes(b"x")
    (tmp_path / "linked").symlink_to(tmp_path / "media")
    roots = MediaRoots([])

    def key(folder: str, backend: str) -> str:
        spec = render_spec(str(tmp_path / folder / "clip.mp4"), str(tmp_path / folder / "dub.wav"), "0-10", backend=backend)
        outputs = (tmp_path / "work" / "p.mkv", tmp_path / "work" / "m.mkv")
        return EngineServicer._clip_key(spec, convert.render_request(spec, roots, frame_outputs=outputs))

    assert key("media", "") == key("linked", "retrieval") == key("media", "retrieval")
    assert key("media", "wav2lip") != key("media", "retrieval")

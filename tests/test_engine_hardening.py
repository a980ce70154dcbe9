"""The engine's promises under abuse: a bounded payload budget with stalled frame-socket clients,
read deadlines, TLS and where the token may travel, model paths and media roots that answer the
same for existing and missing files, the cache that never touches a file not its own, OS errors
while writing, and the editor bridges receiving the engine's refusal as one message.

In-process engines on unix sockets or loopback; no waiting on the clock: every wait is for an
answer, a closed connection or a job state.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import socket
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from dubline.apps.server import frame_protocol
from dubline.apps.server.app import create_server
from dubline.apps.server.frame_socket import FrameSocketServer
from dubline.apps.server.limits import PayloadBudget
from dubline.apps.server.security import MediaRoots, read_tls
from dubline.core.cache import BlobCache, FrameCache, check_root
from dubline.core.errors import (
    AccessDeniedError,
    EngineBusyError,
    InvalidInputError,
    OutputWriteError,
)
from dubline_client import EngineClient, EngineError, frames_span, pb, render_spec

REPOSITORY = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def engine(tmp_path: Path):
    media = tmp_path / "media"
    media.mkdir()
    server, _ = create_server(f"unix:{tmp_path / 'g.sock'}", media_roots=[media], cache_root=tmp_path / "cache",
                              work_dir=tmp_path / "work", payload_budget_bytes=256 * 1024**2)
    server.start()
    client = EngineClient(f"unix:{tmp_path / 'g.sock'}", timeout=20)
    yield server, client, media
    client.close()
    server.stop(1)


# -- the payload budget --------------------------------------------------------------------------------

def test_a_budget_smaller_than_one_message_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="payload budget"):
        create_server(f"unix:{tmp_path / 'g.sock'}", payload_budget_bytes=64 * 1024**2)


def test_budget_reserves_waits_and_refuses() -> None:
    budget = PayloadBudget(100, wait_s=0.05)
    held = budget.reserve(60, "a")
    with pytest.raises(EngineBusyError, match="refused unread"):
        budget.reserve(50, "b")
    with pytest.raises(EngineBusyError, match="larger than"):
        budget.reserve(101, "c")
    budget.release(held)
    assert budget.reserve(100, "d") == 100 and budget.peak == 100


def _declare(stream: socket.socket, length: int) -> None:
    stream.sendall(frame_protocol.HEADER.pack(frame_protocol.MAGIC, frame_protocol.VERSION, frame_protocol.KIND_FRAME_REQUEST, length))


def _answer(stream: socket.socket) -> frame_protocol.FrameAnswer:
    message = frame_protocol.read_message(stream)
    assert message is not None, "the engine closed the connection without an answer"
    return frame_protocol.decode_answer(bytes(message[1]))


def test_stalled_frame_clients_cannot_grow_the_engine_past_its_budget(engine, tmp_path: Path) -> None:
    server, client, _ = engine
    budget = PayloadBudget(2 * frame_protocol.MAX_BODY_BYTES, wait_s=0.2)
    listener = FrameSocketServer(f"unix:{tmp_path / 'f.sock'}", server.servicer, budget=budget,
                                 message_deadline_s=30, idle_timeout_s=30)
    listener.start()
    stalled = []
    try:
        for _ in range(2):  # two clients declare the largest body and send none of it
            stream = socket.socket(socket.AF_UNIX)
            stream.connect(str(tmp_path / "f.sock"))
            _declare(stream, frame_protocol.MAX_BODY_BYTES)
            stalled.append(stream)
        for _ in range(3000):  # hang guard only: the listener threads reserve as they read the headers
            if budget.used == budget.limit:
                break
            threading.Event().wait(0.01)
        # The third is refused at once, unread, and told why; the budget never went past its limit.
        with socket.socket(socket.AF_UNIX) as third:
            third.connect(str(tmp_path / "f.sock"))
            _declare(third, frame_protocol.MAX_BODY_BYTES)
            answer = _answer(third)
        assert answer.status == frame_protocol.STATUS_ERROR and answer.code == "RESOURCE_EXHAUSTED", answer
        assert budget.peak <= budget.limit
        assert client.health() == "SERVING"
        # A stalled client that goes away gives its bytes back.
        stalled.pop().close()
        with socket.socket(socket.AF_UNIX) as fourth:
            fourth.connect(str(tmp_path / "f.sock"))
            fourth.sendall(frame_protocol.encode_request(frame_protocol.FrameRequest(
                0, 0, 10, 0, 1, 1, False, 0, 0, "/outside/a.mp4", "/outside/b.wav", "", "", b"")))
            answer = _answer(fourth)
        assert answer.code == "PERMISSION_DENIED"  # served (and refused on its merits), not RESOURCE_EXHAUSTED
    finally:
        for stream in stalled:
            stream.close()
        listener.stop()


def test_a_message_that_does_not_arrive_in_time_is_answered_and_closed(engine, tmp_path: Path) -> None:
    server, _, _ = engine
    budget = PayloadBudget(frame_protocol.MAX_BODY_BYTES)
    listener = FrameSocketServer(f"unix:{tmp_path / 'f.sock'}", server.servicer, budget=budget,
                                 message_deadline_s=0.3, idle_timeout_s=0.3)
    listener.start()
    try:
        with socket.socket(socket.AF_UNIX) as slow:
            slow.connect(str(tmp_path / "f.sock"))
            _declare(slow, 1000)
            slow.sendall(b"x" * 10)  # and then nothing
            answer = _answer(slow)
            assert answer.code == "INVALID_ARGUMENT" and "in time" in answer.message
            assert slow.recv(1) == b""  # closed
        assert budget.wait_idle(30)
        with socket.socket(socket.AF_UNIX) as idle:
            idle.connect(str(tmp_path / "f.sock"))
            assert idle.recv(1) == b""  # an idle connection is closed quietly
    finally:
        listener.stop()


def test_frame_socket_connections_are_capped(engine, tmp_path: Path) -> None:
    server, _, _ = engine
    listener = FrameSocketServer(f"unix:{tmp_path / 'f.sock'}", server.servicer, max_connections=1, idle_timeout_s=30)
    listener.start()
    try:
        with socket.socket(socket.AF_UNIX) as first, socket.socket(socket.AF_UNIX) as second:
            first.connect(str(tmp_path / "f.sock"))
            _declare(first, 10)  # holds its connection slot, mid-message
            second.connect(str(tmp_path / "f.sock"))
            answer = _answer(second)
        assert answer.code == "RESOURCE_EXHAUSTED" and "at most 1" in answer.message
    finally:
        listener.stop()


def test_grpc_calls_wait_for_budget_and_are_refused_unread_when_none_comes(engine) -> None:
    server, client, media = engine
    budget = server.payload_budget
    budget.wait_s = 0.2
    held = budget.reserve(budget.limit, "the test")
    try:
        with pytest.raises(EngineError) as refused:
            client.capabilities()
        assert refused.value.code == "RESOURCE_EXHAUSTED" and "refused unread" in refused.value.message
        assert client.health() == "SERVING"  # probes are exempt
    finally:
        budget.release(held)
    assert client.capabilities().api == "dubline.v1"
    assert budget.wait_idle(30)  # each call gives its bytes back when it has ended


def test_a_connection_with_no_call_open_is_closed_when_idle(tmp_path: Path) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = f"unix:{tmp_path / 'idle.sock'}"
    server, _ = create_server(address, cache_root=tmp_path / "cache", idle_connection_seconds=0.5)
    server.start()
    states, closed = [], threading.Event()

    def watch(state) -> None:
        states.append(state)
        if state != grpc.ChannelConnectivity.READY and grpc.ChannelConnectivity.READY in states:
            closed.set()  # was connected, and the engine let the connection go

    channel = grpc.insecure_channel(address)
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        channel.subscribe(watch, try_to_connect=False)
        assert closed.wait(30), states
    finally:
        channel.close()
        server.stop(1)


# -- TLS and the token ---------------------------------------------------------------------------------

TOKEN = "a-token-of-sixteen-plus"


def test_a_network_engine_needs_tls_and_a_token(certificate, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--tls-cert"):
        create_server("0.0.0.0:0", token=TOKEN)
    with pytest.raises(InvalidInputError, match="token"):
        create_server("0.0.0.0:0", tls=read_tls(*certificate))
    server, port = create_server("0.0.0.0:0", token=TOKEN, tls=read_tls(*certificate), cache_root=tmp_path)
    server.start()
    try:
        with EngineClient(f"127.0.0.1:{port}", token=TOKEN, tls_ca=certificate[0], timeout=10) as engine:
            assert engine.capabilities().api == "dubline.v1"
        with EngineClient(f"127.0.0.1:{port}", token="wrong-token-of-sixteen", tls_ca=certificate[0], timeout=10) as engine:
            with pytest.raises(EngineError, match="UNAUTHENTICATED"):
                engine.capabilities()
        with EngineClient(f"127.0.0.1:{port}", timeout=5) as plain:  # no TLS: no conversation at all
            with pytest.raises(EngineError, match="UNAVAILABLE"):
                plain.capabilities()
    finally:
        server.stop(1)


def test_the_client_never_sends_a_token_in_clear_beyond_this_machine() -> None:
    with pytest.raises(EngineError) as refused:
        EngineClient("engine.example.invalid:50917", token=TOKEN)
    assert refused.value.code == "FAILED_PRECONDITION" and "in clear" in refused.value.message
    EngineClient("127.0.0.1:50917", token=TOKEN).close()  # loopback and unix sockets are fine
    EngineClient("unix:/tmp/none.sock", token=TOKEN).close()


def test_status_command_over_tls(certificate, tmp_path: Path) -> None:
    server, port = create_server("127.0.0.1:0", token=TOKEN, tls=read_tls(*certificate), cache_root=tmp_path)
    server.start()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    try:
        result = subprocess.run([sys.executable, "-m", "dubline.apps.cli.main", "status", "--engine", f"127.0.0.1:{port}",
                                 "--token-file", str(token_file), "--tls-ca", str(certificate[0])],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "SERVING" in result.stdout, result.stderr
    finally:
        server.stop(1)


def test_a_key_that_is_not_pem_is_refused(tmp_path: Path, certificate) -> None:
    (tmp_path / "key.pem").write_text("nope")
    with pytest.raises(InvalidInputError, match="--tls-key .* is not a PEM file"):
        read_tls(certificate[0], tmp_path / "key.pem")


# -- media roots and model paths -----------------------------------------------------------------------

def _refusal(client: EngineClient, spec: pb.RenderSpec) -> EngineError:
    with pytest.raises(EngineError) as refused:
        client.render_and_wait(spec)
    return refused.value


def test_outside_the_roots_answers_the_same_for_existing_and_missing_files(engine, tmp_path: Path) -> None:
    _, client, media = engine
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "there.mov").write_bytes(b"x")

    def spec(**changes) -> pb.RenderSpec:
        fields = dict(video=str(media / "clip.mov"), audio=str(media / "dub.wav"), out=str(media / "p.mov"))
        fields.update(changes)
        return render_spec(fields.pop("video"), fields.pop("audio"), frames_span(0, 5, 25), fields.pop("out"), **fields)

    for field in ("video", "audio", "out"):
        there = _refusal(client, spec(**{field: str(secret / "there.mov")}))
        missing = _refusal(client, spec(**{field: str(secret / "missing.mov")}))
        assert there.code == missing.code == "PERMISSION_DENIED"
        assert there.message.replace("there.mov", "X") == missing.message.replace("missing.mov", "X")
    for name in ("there.mov", "missing.mov"):  # a model path is a path like any other
        answer = _refusal(client, spec(backend="wav2lip", backend_options={"checkpoint": str(secret / name)}))
        assert answer.code == "PERMISSION_DENIED" and "spec.backend_options.checkpoint" in answer.message
    escape = _refusal(client, spec(backend="wav2lip", backend_options={"checkpoint": "../secret/there.mov"}))
    assert escape.code == "PERMISSION_DENIED" and "model directory" in escape.message


def test_model_names_resolve_in_the_engines_model_directory(tmp_path: Path, monkeypatch) -> None:
    from dubline.apps.server import convert

    models, media = tmp_path / "models", tmp_path / "media"
    models.mkdir(), media.mkdir()
    monkeypatch.setenv("DUBLINE_MODELS", str(models))
    roots = MediaRoots([media])
    spec = render_spec(str(media / "a.mov"), str(media / "b.wav"), "0-5", str(media / "p.mov"), backend="wav2lip",
                       backend_options={"checkpoint": "wav2lip_gan.pth", "device": "cpu"})
    request = convert.render_request(spec, roots)
    assert request.backend_options["checkpoint"] == str(models / "wav2lip_gan.pth")
    spec.backend_options["checkpoint"] = str(media / "mine.pth")  # inside a root: the client's own file
    assert convert.render_request(spec, roots).backend_options["checkpoint"] == str(media / "mine.pth")
    with pytest.raises(AccessDeniedError):
        roots.check_model("/etc/hostname", "spec.backend_options.checkpoint", models)


def test_serve_takes_its_model_directory(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "dubline.apps.cli.main", "serve", "--listen",
                                f"unix:{tmp_path / 's.sock'}", "--models-dir", str(models), "--cache", str(tmp_path / "c")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("dubline engine listening on")
        with EngineClient(f"unix:{tmp_path / 's.sock'}", timeout=20) as client:
            assert client.capabilities().model_dir == str(models.resolve())
    finally:
        process.terminate()
        assert process.wait(30) == 0


# -- the analysis cache never touches a file that is not its own ----------------------------------------

def test_cache_leaves_foreign_files_alone(tmp_path: Path, caplog) -> None:
    blob = BlobCache("stage", "ab" * 10, {"v": 1}, root=tmp_path)
    blob.put({"x": 1})
    target = blob.path / "blob.pkl"
    assert blob.get() == {"x": 1}
    target.unlink()
    precious = tmp_path / "precious.mov"
    precious.write_bytes(b"the editor's media")
    target.symlink_to(precious)  # an entry's name that leads to someone's file
    assert blob.get() is None
    blob.put({"x": 2})
    assert target.is_symlink() and _sha(precious) == hashlib.sha256(b"the editor's media").hexdigest()
    target.unlink()
    target.write_bytes(b"not a cache file")  # a foreign file under the name: neither replaced nor removed
    assert blob.get() is None
    blob.put({"x": 3})
    assert target.read_bytes() == b"not a cache file"
    target.write_bytes(b"DUBLINE-CACHE-1\n" + b"\0" * 40)  # our own file, damaged: removed and recomputed
    assert blob.get() is None and not target.exists()


def test_an_unwritable_cache_is_skipped_not_fatal(tmp_path: Path, monkeypatch) -> None:
    chunks = FrameCache("thumbs", "cd" * 10, {}, root=tmp_path / "cache")

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    chunks.put_many({1: "a"})  # logged, not raised
    assert chunks.get_many([1]) == {}


def test_the_cache_root_may_not_be_an_input(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="same file as the --video input"):
        check_root(video, {"--video": video})
    with pytest.raises(InvalidInputError, match="not a directory"):
        check_root(tmp_path / "clip.mp4", {})
    assert check_root(tmp_path / "new", {"--video": video}) == tmp_path / "new"


# -- OS errors while writing ------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_an_os_error_while_encoding_names_the_patch_and_leaves_nothing(tmp_path: Path, monkeypatch, code: int) -> None:
    import numpy as np
    from dubline.stages import media
    from dubline.stages.media import write

    real_encode = write._encode

    def failing(temporary, *args, **kwargs):
        temporary.write_bytes(b"half a patch")
        raise OSError(code, "injected")

    monkeypatch.setattr(write, "_encode", failing)
    frames = [np.zeros((16, 16, 3), np.uint8)] * 3
    with pytest.raises(OutputWriteError, match=f"cannot write {tmp_path / 'p.mov'}") as raised:
        media.write_patch(frames, tmp_path / "p.mov", "prores", 25)
    assert isinstance(raised.value, OSError) and list(tmp_path.iterdir()) == []
    assert real_encode is not failing


# -- the editor bridges hear the engine's refusal as one message -------------------------------------------

def test_bridges_get_the_engines_refusal_to_write_over_an_input(engine) -> None:
    _, client, media = engine
    video = media / "clip.mov"
    video.write_bytes(b"the source")
    (media / "dub.wav").write_bytes(b"the dub")
    before = _sha(video)
    address = client.address

    sys.path.insert(0, str(REPOSITORY / "plugin" / "resolve"))
    sys.path.insert(0, str(REPOSITORY / "plugin" / "blender"))
    import dubline_client
    from dubline_resolve import BridgeSettings, RenderError
    from dubline_resolve.engine import render_patch
    from dubline_resolve.selection import SourceSpan
    from dubline_vse import engine as vse_engine
    from dubline_vse import jobs

    # Resolve: render_patch raises RenderError with the engine's words (and a hint), one line.
    span = SourceSpan(media_path=str(video), item_name="shot", rate=Fraction(25), drop_frame=False, source_first=0,
                      source_end=5, record_first=0, from_marks=False)
    with pytest.raises(RenderError) as refused:
        render_patch(client, span, str(media / "dub.wav"), video, BridgeSettings(engine_address=address))
    assert "same file" in str(refused.value) and "\n" not in str(refused.value)

    # Blender: the job runner's FAILED event carries the engine's message.
    runner = jobs.JobRunner(dubline_client)
    order = jobs.RenderOrder(video=str(video), audio=str(media / "dub.wav"), span_text="0-5", out=str(video))
    runner.submit(order, vse_engine.EngineSettings(address=address, auto_start=False))
    events = [runner.events.get(timeout=60)]
    while events[-1].kind not in jobs.FINAL:
        events.append(runner.events.get(timeout=60))
    runner.shutdown()
    assert events[-1].kind == jobs.FAILED and "same file" in events[-1].message, events[-1]
    assert "\n" not in events[-1].message
    assert _sha(video) == before


def test_warnings_do_not_reach_stderr_of_a_failing_command(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    result = subprocess.run([sys.executable, "-m", "dubline.apps.cli.main", "probe", str(tmp_path / "none.mov")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


# -- memory: finished jobs keep their error, not the render behind it ------------------------------------

def test_a_cancelled_job_does_not_keep_its_render_alive() -> None:
    """The soak found the engine growing ~1 MB per cancelled render: each remembered job's error
    held its traceback, whose frames held the render's frames, audio and plan."""
    import gc
    import weakref

    import numpy as np
    from dubline.apps.server.jobs import JobQueue
    from dubline.core.errors import CancelledError

    queue = JobQueue(max_workers=1)
    alive = []

    def work(progress, cancel):
        frames = np.zeros((64, 64, 3))  # stands for what a render holds
        alive.append(weakref.ref(frames))
        try:
            raise RuntimeError("inside the backend")
        except RuntimeError:
            raise CancelledError("the client went away")  # chained, like a real cancel

    job = queue.submit("render", work)
    job.wait()
    gc.collect()
    assert job.error is not None and job.error.__traceback__ is None and job.error.__context__.__traceback__ is None
    assert alive[0]() is None
    queue.shutdown(1)

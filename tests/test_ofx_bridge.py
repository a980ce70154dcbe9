"""The OpenFX plug-in, built with CMake and driven by tests/ofx_host.py (a ctypes host), against a
real engine: describe, passthrough when the engine is down or hangs, protocol errors, the backend
list and name checks coming from the engine, and frames equal to the engine's gRPC RenderFrame
answer for the same request."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dubline_client import (
    EngineClient,
    frames_span,
    image_message,
    pb,
    rational,
    render_spec,
)
from ofx_host import ERR_UNSUPPORTED, OfxHost

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = ROOT / "ofx_bridge"
BINARY = Path("Dubline.ofx.bundle/Contents/Linux-x86-64/Dubline.ofx")
CLIP, DUB = "speaker_b.mp4", "dub_en_16k.wav"
SPAN = (20, 30)  # source frames [20, 30) of speaker_b (25 fps)


def _sources() -> list[Path]:
    return [BRIDGE / "CMakeLists.txt", *BRIDGE.glob("src/*"), *BRIDGE.glob("include/*")]


@pytest.fixture(scope="session")
def plugin_binary(tmp_path_factory) -> Path:
    """ofx_bridge/build's bundle when it is newer than the sources, else a fresh CMake build."""
    built = BRIDGE / "build" / BINARY
    if built.exists() and built.stat().st_mtime >= max(p.stat().st_mtime for p in _sources()):
        return built
    if shutil.which("cmake") is None:
        pytest.fail("cmake is needed to build the OpenFX plug-in")
    build = tmp_path_factory.mktemp("ofx_build")
    for command in (["cmake", "-S", str(BRIDGE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                    ["cmake", "--build", str(build), "-j2"]):
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    return build / BINARY


@pytest.fixture()
def host(plugin_binary: Path) -> OfxHost:
    host = OfxHost(plugin_binary)
    host.load()
    host.describe()
    assert host.describe_in_context() == 0
    return host


def _synthetic(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8)


def test_the_plugin_holds_no_backend_names(plugin_binary: Path) -> None:
    from dubline.stages.backends import names

    binary = plugin_binary.read_bytes()
    assert names() and not [name for name in names() if name.encode() in binary]


def test_bundle_exports_only_the_two_entry_points(plugin_binary: Path) -> None:
    assert plugin_binary.parent.name == "Linux-x86-64" and plugin_binary.parents[2].name == "Dubline.ofx.bundle"
    if shutil.which("nm") is None:
        pytest.skip("nm is not installed")
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(plugin_binary)], capture_output=True, text=True, check=True)
    exported = sorted(line.split()[-1] for line in symbols.stdout.splitlines() if " T " in line)
    assert exported == ["OfxGetNumberOfPlugins", "OfxGetPlugin"]


def test_describe_declares_a_filter_on_8bit_and_float_rgba(host: OfxHost) -> None:
    props = host.descriptor.props.values
    assert props["OfxImageEffectPropSupportedContexts"] == ["OfxImageEffectContextFilter"]
    assert props["OfxImageEffectPropSupportedPixelDepths"] == ["OfxBitDepthByte", "OfxBitDepthFloat"]
    assert props["OfxImageEffectPluginRenderThreadSafety"] == ["OfxImageEffectRenderInstanceSafe"]
    assert props["OfxImageEffectPropSupportsTiles"] == [0]
    assert set(host.descriptor.clips) == {"Source", "Output"}
    params = host.descriptor.params
    assert {"engineAddress", "sourceMedia", "sourceFrameOffset", "dubAudio", "dubOffset", "backendName", "engineBackends",
            "askEngine", "mix", "showMatte", "status"} <= set(params)
    # The backend is a name the engine checks (empty: its default); the list shown is the engine's.
    assert params["backendName"].kind == "OfxParamTypeString" and params["backendName"].props.values["OfxParamPropDefault"] == [""]
    assert params["askEngine"].kind == "OfxParamTypePushButton"
    for label in ("status", "engineBackends"):
        assert params[label].props.values["OfxParamPropStringMode"] == ["OfxParamStringIsLabel"]
        assert params[label].props.values["OfxParamPropPersistant"] == [0]
    assert params["mix"].props.values["OfxParamPropMax"] == [1.0]
    assert host.describe_in_context("OfxImageEffectContextGenerator") == ERR_UNSUPPORTED
    assert set(host.fetched) <= {"OfxPropertySuite", "OfxParameterSuite", "OfxImageEffectSuite"}


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_passthrough_when_no_engine_listens(host: OfxHost, tmp_path: Path, dtype) -> None:
    instance = host.create_instance({"sourceMedia": "/media/a.mov", "dubAudio": "/media/dub.wav",
                                     "engineAddress": f"unix:{tmp_path / 'absent.sock'}"})
    source = _synthetic()
    source = source if dtype == np.uint8 else source.astype(np.float32) / 255
    for negative_row_bytes in (False, True):
        out = instance.render(source, 5, negative_row_bytes=negative_row_bytes)
        assert out.dtype == source.dtype and np.array_equal(out, source)
    assert "no dubline engine" in instance.status
    # A partial render window is filled from the source; the rest of the output is untouched.
    out = instance.render(source, 5, window=(8, 4, 40, 30))
    rows = slice(48 - 30, 48 - 4)  # OpenFX y runs upwards
    assert np.array_equal(out[rows, 8:40], source[rows, 8:40]) and not out[:rows.start].any()


def test_render_time_is_bounded_when_the_engine_hangs(host: OfxHost) -> None:
    silent = socket.socket()  # accepts connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        instance = host.create_instance({"sourceMedia": "/media/a.mov", "dubAudio": "/media/dub.wav", "timeoutMs": 300,
                                         "engineAddress": f"127.0.0.1:{silent.getsockname()[1]}"})
        source = _synthetic()
        out = instance.render(source, 5)  # an unbounded wait would hang here: the engine never answers
    finally:
        silent.close()
    # The plug-in gave up through its own timeout (bench_ofx.py measures how long the wait is).
    assert np.array_equal(out, source) and "did not answer in time" in instance.status


def test_missing_parameters_pass_through_with_a_message(host: OfxHost) -> None:
    instance = host.create_instance({})
    source = _synthetic()
    assert np.array_equal(instance.render(source, 0), source)
    assert "Source Media" in instance.status


# -- against an in-process engine (no media needed) ----------------------------------------------


@pytest.fixture()
def bare_engine(tmp_path: Path):
    from dubline.apps.server.app import create_server

    server, _ = create_server(f"unix:{tmp_path / 'g.sock'}", cache_root=tmp_path / "cache", work_dir=tmp_path / "work",
                              frame_socket=f"unix:{tmp_path / 'f.sock'}")
    server.start()
    yield server
    server.stop(1)


def test_engine_errors_reach_the_status_parameter(host: OfxHost, bare_engine, tmp_path: Path) -> None:
    assert (tmp_path / "f.sock").stat().st_mode & 0o777 == 0o600
    instance = host.create_instance({"sourceMedia": str(tmp_path / "missing.mp4"), "dubAudio": str(tmp_path / "dub.wav"),
                                     "engineAddress": bare_engine.frame_socket.address, "spanStart": 0, "spanEnd": 10})
    source = _synthetic()
    assert np.array_equal(instance.render(source, 3), source)
    assert instance.status.startswith("engine error NOT_FOUND") and "missing.mp4" in instance.status


def test_engine_backends_are_the_engines(host: OfxHost, extra_backend: str, bare_engine, tmp_path: Path) -> None:
    from dubline.apps.server import frame_protocol

    # The frame socket's capabilities message carries the Capabilities RPC's backends.
    with EngineClient(f"unix:{tmp_path / 'g.sock'}") as client:
        rpc = client.capabilities()
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(tmp_path / "f.sock"))
        raw.sendall(frame_protocol.encode_capabilities_request())
        kind, body = frame_protocol.read_message(raw)
    assert kind == frame_protocol.KIND_CAPABILITIES_ANSWER
    listed = frame_protocol.decode_capabilities(body)
    assert (listed.version, listed.default_backend) == (rpc.version, rpc.default_backend) == (rpc.version, "retrieval")
    assert [(b.name, b.description, b.weights_present, b.prefers_gpu) for b in listed.backends] == \
           [(b.name, b.description, b.weights_present, b.prefers_gpu) for b in rpc.backends]
    assert extra_backend in [b.name for b in listed.backends]

    # The first edit fills Engine Backends from the engine, extra backend included.
    instance = host.create_instance({"engineAddress": bare_engine.frame_socket.address})
    assert instance.value("engineBackends") == ""
    instance.change("dubAudio", str(tmp_path / "dub.wav"))
    shown = instance.value("engineBackends")
    expected = [b.name + (" (default)" if b.name == rpc.default_backend else "") + ("" if b.weights_present else " (weights missing)")
                for b in rpc.backends]
    assert shown == ", ".join(expected) and f"{extra_backend}" in shown
    assert "retrieval (default)" in shown

    # A name the engine does not offer is flagged at once, and refused by the engine when rendering.
    instance.change("backendName", "nonesuch")
    assert instance.value("engineBackends") == "no backend 'nonesuch' on this engine; it offers " + ", ".join(expected)
    video, dub = _tiny_clip_and_dub(tmp_path)
    instance.change("sourceMedia", str(video))
    instance.change("dubAudio", str(dub))
    source = _synthetic()
    assert np.array_equal(instance.render(source, 3), source)
    assert instance.status.startswith("engine error INVALID_ARGUMENT") and "'nonesuch'" in instance.status
    assert extra_backend in instance.status  # the engine's message lists its own backends
    instance.change("backendName", extra_backend)
    assert instance.value("engineBackends") == ", ".join(expected)


def _tiny_clip_and_dub(folder: Path) -> tuple[Path, Path]:
    from mediagen import AudioSpec, make_audio, make_video, spec_for

    return (make_video(folder / "clip.mp4", spec_for("h264", frames=10)),
            make_audio(folder / "dub.wav", AudioSpec(rate=16000, seconds=0.5)))


def test_engine_backends_say_why_when_no_engine_answers(host: OfxHost, tmp_path: Path) -> None:
    instance = host.create_instance({"engineAddress": f"unix:{tmp_path / 'absent.sock'}"})
    instance.change("askEngine")
    shown = instance.value("engineBackends")
    assert shown.startswith("no dubline engine at the address") and shown.endswith("(then press Ask the Engine)")
    silent = socket.socket()  # accepts connections but never answers: the question is bounded
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        instance.change("engineAddress", f"127.0.0.1:{silent.getsockname()[1]}")
    finally:
        silent.close()
    assert instance.value("engineBackends").startswith("the dubline engine did not answer in time")
    # The plug-in's own label writes come back as plug-in edits and ask nothing.
    sets = len(instance.effect.params["engineBackends"].sets)
    instance.change("engineBackends", "x", reason="OfxChangePluginEdited")
    assert len(instance.effect.params["engineBackends"].sets) == sets


def test_frame_socket_answers_malformed_messages_with_an_error(bare_engine, tmp_path: Path) -> None:
    from dubline.apps.server import frame_protocol

    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(tmp_path / "f.sock"))
        raw.sendall(b"XXXX" + struct.pack("<HHQ", 1, 1, 0))
        kind, body = frame_protocol.read_message(raw)
    answer = frame_protocol.decode_answer(body)
    assert kind == frame_protocol.KIND_FRAME_ANSWER and answer.status == frame_protocol.STATUS_ERROR
    assert answer.code == "INVALID_ARGUMENT" and "DBLF" in answer.message

    request = frame_protocol.FrameRequest(5, 0, 10, 0, 1, 1, True, 4, 4, "/a.mp4", "/b.wav", "", "", b"\0" * 63)
    with pytest.raises(frame_protocol.ProtocolError, match="pixel bytes"):
        frame_protocol.decode_request(frame_protocol.encode_request(request)[frame_protocol.HEADER.size:])
    request.pixels, request.audio_offset = b"\0" * 64, 1.5
    decoded = frame_protocol.decode_request(frame_protocol.encode_request(request)[frame_protocol.HEADER.size:])
    assert decoded.audio_offset == 1.5 and decoded.video == "/a.mp4" and decoded.bottom_up


def test_a_dubbed_frame_shows_as_soon_as_it_is_rendered(host: OfxHost, tmp_path: Path, monkeypatch) -> None:
    """The engine renders the asked frame first: the plug-in passes the source through (NOT_READY)
    until that frame is in, then shows it while the rest of the span still renders; a frame not in
    yet still passes through. The render is held after the asked frame by an event, not timed."""
    import threading

    from dubline.apps.server.app import create_server
    from fakes import BACKEND as FAKE
    from fakes import FakeAnalyses, register_fake_backend, write_clip

    from dubline.core import timing
    from dubline.stages import media

    register_fake_backend(monkeypatch)
    release, holding = threading.Event(), threading.Event()
    real = type(FAKE).patches

    def held_after_frame_6(backend, job, plan, frames):
        for frame, mouth in real(backend, job, plan, frames):
            if frame.index == 7:
                holding.set()
                assert release.wait(60)
            yield frame, mouth

    monkeypatch.setattr(type(FAKE), "patches", held_after_frame_6)
    clip = write_clip(tmp_path / "clip.mkv", frames=12)
    dub = media.write_audio(media.AudioClip(np.zeros(8000, np.float32), 16000), tmp_path / "dub.wav")
    server, _ = create_server(f"unix:{tmp_path / 'g.sock'}", cache_root=tmp_path / "cache", work_dir=tmp_path / "work",
                              frame_socket=f"unix:{tmp_path / 'f.sock'}", idle_analysis=False)
    server.servicer.analyses = FakeAnalyses()
    server.start()
    try:
        instance = host.create_instance({"engineAddress": server.frame_socket.address, "sourceMedia": str(clip),
                                         "dubAudio": str(dub), "spanStart": 2, "spanEnd": 10, "backendName": "fake",
                                         "timeoutMs": 10000})
        frames = {f.index: np.dstack([f.image, np.full(f.image.shape[:2], 255, np.uint8)])
                  for f in media.read_span(clip, timing.frames_to_range(0, 12, 25))}
        deadline = time.monotonic() + 60  # a guard against hanging, not a measurement
        while True:
            out = instance.render(frames[6], 6)
            if instance.status.startswith("dubbed"):
                break
            assert instance.status.startswith("rendering") and np.array_equal(out, frames[6]), instance.status
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert instance.status == "dubbed frame 6" and not np.array_equal(out, frames[6])
        assert holding.is_set() and server.servicer.jobs.busy()  # the rest of the span is still rendering
        later = instance.render(frames[8], 8)
        assert instance.status.startswith("rendering") and np.array_equal(later, frames[8])
        release.set()
        while not instance.status.startswith("dubbed frame 8"):
            later = instance.render(frames[8], 8)
            assert time.monotonic() < deadline, instance.status
            time.sleep(0.05)
        assert not np.array_equal(later, frames[8])
    finally:
        release.set()
        server.stop(1)


# -- against a real engine subprocess on shared media --------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory, shared_media: Path):
    root = tmp_path_factory.mktemp("ofx_engine")
    env = dict(os.environ, DUBLINE_CACHE=str(root / "cache"))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dubline"), "serve", "--listen", f"unix:{root / 'grpc.sock'}",
         "--frame-socket", f"unix:{root / 'frames.sock'}", "--cache", str(root / "cache"), "--grace", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines = [process.stdout.readline(), process.stdout.readline()]
    assert lines[1].startswith("dubline frame socket listening on unix:"), (lines, process.poll())
    client = EngineClient(lines[0].removeprefix("dubline engine listening on ").strip(), timeout=60)
    yield client, f"unix:{root / 'frames.sock'}", shared_media
    client.close()
    process.terminate()
    process.wait(30)


def _host_frame(media_dir: Path, frame: int) -> np.ndarray:
    """The source frame as the host would hold it, with a synthetic alpha ramp."""
    from dubline.core import timing
    from dubline.stages import media

    rgb = next(media.read_span(media_dir / CLIP, timing.frames_to_range(frame, frame + 1, 25))).image
    height, width = rgb.shape[:2]
    alpha = np.tile(np.linspace(64, 255, width).astype(np.uint8), (height, 1))
    return np.dstack([rgb, alpha])


def _engine_frame(client: EngineClient, media_dir: Path, host_frame: np.ndarray, frame: int, output=pb.FRAME_OUTPUT_COMPOSITED):
    """The gRPC RenderFrame answer for the request the plug-in makes (same clip key)."""
    height, width = host_frame.shape[:2]
    fmt = pb.PIXEL_FORMAT_RGBA8 if host_frame.dtype == np.uint8 else pb.PIXEL_FORMAT_RGBA_F32
    spec = render_spec(str(media_dir / CLIP), str(media_dir / DUB), frames_span(*SPAN, 25))
    answer = client.render_frame(rational(frame, 25), clip=spec, output=output, format=fmt,
                                 source_frame=image_message(host_frame[::-1].tobytes(), width, height, fmt, bottom_up=True))
    assert answer.status == pb.FRAME_STATUS_READY, answer
    image = np.frombuffer(answer.image.data, host_frame.dtype).reshape(height, width, 4)[::-1]
    matte_type = np.uint8 if host_frame.dtype == np.uint8 else np.float32
    matte = np.frombuffer(answer.matte.data, matte_type).reshape(height, width)[::-1] if answer.matte.width else None
    return image, matte


def _wait_for_the_engine(client: EngineClient, media_dir: Path, source: np.ndarray, frame: int) -> None:
    """Until the engine says the span's render has finished: ask for a frame of the clip key the
    plug-in uses (the engine starts the render once and names its job), then follow that job.
    No clock decides: however loaded the machine, the wait ends on the engine's answer."""
    height, width = source.shape[:2]
    spec = render_spec(str(media_dir / CLIP), str(media_dir / DUB), frames_span(*SPAN, 25))
    answer = client.render_frame(rational(frame, 25), clip=spec, output=pb.FRAME_OUTPUT_COMPOSITED,
                                 source_frame=image_message(source[::-1].tobytes(), width, height, bottom_up=True))
    while answer.status == pb.FRAME_STATUS_NOT_READY:
        job = client.get_job(answer.job_id)
        if job.state not in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING):
            assert job.state == pb.JOB_STATE_DONE, job
            return
        time.sleep(0.2)  # between questions only; the engine's answer ends the wait


def _render_until_ready(instance, source: np.ndarray, time_: float, client: EngineClient, media_dir: Path) -> np.ndarray:
    out = instance.render(source, time_)  # starts the engine's render of the span
    if instance.status.startswith("rendering the span") or "did not answer" in instance.status:
        assert np.array_equal(out, source)  # the source shows while the engine works
        _wait_for_the_engine(client, media_dir, source, int(time_))
        out = instance.render(source, time_)
    assert not instance.status.startswith("rendering the span"), instance.status
    return out


@pytest.mark.slow
def test_frames_equal_the_engines_answer(host: OfxHost, engine) -> None:
    client, frames_address, media_dir = engine
    params = {"engineAddress": frames_address, "sourceMedia": str(media_dir / CLIP), "dubAudio": str(media_dir / DUB),
              "spanStart": SPAN[0], "spanEnd": SPAN[1], "timeoutMs": 10000}
    instance = host.create_instance(params)
    source = _host_frame(media_dir, 25)
    out = _render_until_ready(instance, source, 25, client, media_dir)
    assert instance.status == "dubbed frame 25"
    expected, _ = _engine_frame(client, media_dir, source, 25)
    assert np.array_equal(out, expected)
    changed = (out != source).any(axis=2)
    assert 0 < changed.mean() < 0.3 and np.array_equal(out[..., 3], source[..., 3])  # the mouth only; alpha kept

    # Float RGBA: the same composite in float.
    as_float = source.astype(np.float32) / 255
    out_float = instance.render(as_float, 25, negative_row_bytes=True)
    expected_float, _ = _engine_frame(client, media_dir, as_float, 25)
    assert out_float.dtype == np.float32 and np.array_equal(out_float, expected_float)

    # The source frame offset maps host time to source frames; outside the span: passthrough.
    shifted = host.create_instance({**params, "sourceFrameOffset": 20})
    assert np.array_equal(shifted.render(source, 5), expected)
    elsewhere = _host_frame(media_dir, 40)
    assert np.array_equal(shifted.render(elsewhere, 20), elsewhere) and shifted.status.startswith("outside the span")

    # No span parameters: the effect's frame range (inclusive) is the span.
    ranged = host.create_instance({**params, "spanStart": 0, "spanEnd": 0}, frame_range=(SPAN[0], SPAN[1] - 1))
    assert np.array_equal(ranged.render(source, 25), expected)

    # Mix blends towards the source; show matte shows the engine's matte.
    half = host.create_instance({**params, "mix": 0.5}).render(source, 25)
    assert np.abs(half.astype(int) - (source + 0.5 * (expected.astype(int) - source))).max() <= 0.5 + 1e-9
    matte_view = host.create_instance({**params, "showMatte": 1}).render(source, 25)
    _, matte = _engine_frame(client, media_dir, source, 25, pb.FRAME_OUTPUT_PATCH_AND_MATTE)
    assert np.array_equal(matte_view[..., 0], matte) and (matte_view[..., 3] == 255).all() and matte.max() == 255

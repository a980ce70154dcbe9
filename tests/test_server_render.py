"""Real renders through the engine: in-process and as a subprocess, on TCP and a unix socket.

One analysis cache is shared by the module, so only the first render pays for face tracking of
speaker_b.mp4; the rest pay for their span.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dubline.apps.server.app import create_server
from dubline.core import timing
from dubline.stages import media
from dubline_client import EngineClient, frames_span, image_message, pb, render_spec

CLIP = "speaker_b.mp4"
DUB = "dub_en_16k.wav"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, shared_media: Path) -> Path:
    root = tmp_path_factory.mktemp("engine")
    (root / "media").mkdir()
    for name in (CLIP, DUB):
        shutil.copy(shared_media / name, root / "media" / name)
    return root


@pytest.fixture(scope="module")
def engine(workspace: Path):
    server, port = create_server("127.0.0.1:0", media_roots=[workspace / "media"], cache_root=workspace / "cache",
                                 work_dir=workspace / "work", max_workers=2)
    server.start()
    client = EngineClient(f"127.0.0.1:{port}", timeout=60)
    yield server, client
    client.close()
    server.stop(5)


def _spec(workspace: Path, out: str, first: int = 10, end: int = 18, **options) -> pb.RenderSpec:
    media_dir = workspace / "media"
    return render_spec(str(media_dir / CLIP), str(media_dir / DUB), frames_span(first, end, 25),
                       str(media_dir / out), codec="ffv1", **options)


def _frames(path: Path) -> np.ndarray:
    info = media.probe(path)
    return np.stack([f.image for f in media.read_span(path, timing.frames_to_range(0, info.video.frame_count, info.video.rate))])


def _parts(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if ".part" in p.name]


@pytest.mark.slow
def test_render_through_the_engine_equals_the_pipeline(engine, workspace: Path) -> None:
    from dubline.pipeline import RenderRequest, render

    _, client = engine
    events = list(client.render(_spec(workspace, "served.mkv")))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "done" and set(kinds[1:-1]) == {"progress"}
    assert len({e.job_id for e in events}) == 1
    by_stage: dict[str, list[int]] = {}
    for event in events[1:-1]:
        by_stage.setdefault(event.progress.stage, []).append(event.progress.done)
    for stage, counts in by_stage.items():
        assert counts == sorted(counts), stage
    assert by_stage["render"][-1] == 8
    done = events[-1].done
    assert (done.frames_written, done.span_first, done.span_end) == (8, 10, 18)
    assert done.start_timecode and "seconds.render_and_encode" in done.qc
    for stage in ("decode", "backend", "composite", "matte", "encode"):  # the frame loop's stages
        assert f"seconds.render.{stage}" in done.qc and f"share.render.{stage}" in done.qc
    assert done.qc["seconds.render.encode"] > 0 and 0 < done.qc["share.render.encode"] <= 1

    media_dir = workspace / "media"
    direct = render(
        RenderRequest(video=media_dir / CLIP, audio=media_dir / DUB, span=timing.frames_to_range(10, 18, 25),
                      out=workspace / "direct.mkv", codec="ffv1"),
        cache_root=workspace / "cache",
    )
    assert np.array_equal(_frames(Path(done.out)), _frames(direct.out))


@pytest.mark.slow
def test_cancel_mid_render_leaves_nothing(engine, workspace: Path) -> None:
    _, client = engine
    out = workspace / "media" / "cancelled.mkv"
    stream = client.render(_spec(workspace, out.name, 0, 120))
    job_id = None
    for event in stream:
        job_id = event.job_id
        if event.WhichOneof("event") == "progress" and event.progress.stage == "render" and event.progress.done >= 2:
            client.cancel(job_id)
        if event.WhichOneof("event") in ("done", "error"):
            break
    assert event.WhichOneof("event") == "error" and event.error.code == "CANCELLED"
    status = client.get_job(job_id)
    assert status.state == pb.JOB_STATE_CANCELLED and status.progress.done < 120
    assert not out.exists() and not _parts(out.parent)


@pytest.mark.slow
@pytest.mark.parametrize("clients", [2, 4])
def test_concurrent_clients(engine, workspace: Path, clients: int) -> None:
    address = engine[1].address  # each client thread opens its own channel
    results: dict[int, pb.RenderDone] = {}
    errors: list[BaseException] = []

    def submit(index: int) -> None:
        try:
            with EngineClient(address, timeout=60) as client:
                results[index] = client.render_and_wait(_spec(workspace, f"c{clients}_{index}.mkv", 20, 26, overwrite=True))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and len(results) == clients
    reference = _frames(Path(results[0].out))
    assert len(reference) == 6
    for done in results.values():
        assert np.array_equal(_frames(Path(done.out)), reference)


@pytest.mark.slow
def test_render_frame_from_a_clip_key_and_a_job(engine, workspace: Path) -> None:
    _, client = engine
    clip = _spec(workspace, "", 30, 36)
    time_33 = pb.RationalTime(value=33, rate_num=25, rate_den=1)
    first = client.render_frame(time_33, clip=clip)
    assert first.status in (pb.FRAME_STATUS_NOT_READY, pb.FRAME_STATUS_READY)
    deadline = time.monotonic() + 60
    answer = first
    while answer.status == pb.FRAME_STATUS_NOT_READY and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = client.render_frame(time_33, clip=clip)
    assert answer.status == pb.FRAME_STATUS_READY and answer.frame_index == 33
    assert answer.job_id == first.job_id  # the same clip key reuses its render

    # The host sends its source frame (RGBA8, bottom-up like OpenFX): outside the matte it comes
    # back untouched; inside, the patch shows.
    source = next(media.read_span(workspace / "media" / CLIP, timing.frames_to_range(33, 34, 25))).image
    height, width = source.shape[:2]
    host = np.dstack([source, np.full((height, width), 200, np.uint8)])
    sent = image_message(host[::-1].tobytes(), width, height, bottom_up=True)
    split = client.render_frame(time_33, clip=clip, source_frame=sent, output=pb.FRAME_OUTPUT_PATCH_AND_MATTE)
    matte = np.frombuffer(split.matte.data, np.uint8).reshape(height, width)[::-1]
    patch = np.frombuffer(split.image.data, np.uint8).reshape(height, width, 4)[::-1]
    composed = client.render_frame(time_33, clip=clip, source_frame=sent)
    out = np.frombuffer(composed.image.data, np.uint8).reshape(height, width, 4)[::-1]
    assert composed.image.bottom_up and matte.max() == 255 and (matte == 0).mean() > 0.5
    assert np.array_equal(out[matte == 0], host[matte == 0])
    assert np.array_equal(out[matte == 255][:, :3], patch[matte == 255][:, :3])
    assert np.array_equal(out[..., 3], host[..., 3])

    # Float host frames come back float, outside the span the host is told to pass through.
    as_float = (host.astype(np.float32) / 255).tobytes()
    floated = client.render_frame(time_33, clip=clip, source_frame=image_message(as_float, width, height, pb.PIXEL_FORMAT_RGBA_F32))
    assert floated.image.format == pb.PIXEL_FORMAT_RGBA_F32 and len(floated.image.data) == width * height * 16
    outside = client.render_frame(pb.RationalTime(value=50, rate_num=25, rate_den=1), clip=clip)
    assert outside.status == pb.FRAME_STATUS_OUTSIDE_SPAN

    # A finished job with a matte answers by its id too.
    done = client.render_and_wait(_spec(workspace, "framejob.mkv", 30, 36, matte=str(workspace / "media" / "framejob_matte.mkv")))
    job = [e for e in client.list_jobs() if e.result.out == done.out][0]
    by_job = client.render_frame(time_33, job_id=job.job_id)
    assert by_job.status == pb.FRAME_STATUS_READY
    assert np.array_equal(np.frombuffer(by_job.image.data, np.uint8).reshape(height, width, 4)[..., :3],
                          _frames(Path(done.out))[3])


def _start_engine(workspace: Path, listen: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dubline.apps.cli.main", "serve", "--listen", listen, "--cache", str(workspace / "cache"),
         "--media-root", str(workspace / "media"), "--grace", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("dubline engine listening on "), (line, process.stderr.read() if process.poll() is not None else "")
    return process, line.removeprefix("dubline engine listening on ").strip()


@pytest.mark.slow
def test_subprocess_engine_on_a_unix_socket_survives_a_killed_client(workspace: Path) -> None:
    socket = workspace / "engine.sock"
    process, address = _start_engine(workspace, f"unix:{socket}")
    try:
        client_script = textwrap.dedent(f"""
            import sys
            from dubline_client import EngineClient, frames_span, render_spec
            client = EngineClient({address!r})
            spec = render_spec({str(workspace / 'media' / CLIP)!r}, {str(workspace / 'media' / DUB)!r},
                               frames_span(0, 120, 25), {str(workspace / 'media' / 'killed.mkv')!r}, codec="ffv1")
            for event in client.render(spec):
                if event.WhichOneof("event") == "progress" and event.progress.stage == "render":
                    print(event.job_id, flush=True)
                    sys.stdin.readline()  # wait to be killed mid-stream
        """)
        doomed = subprocess.Popen([sys.executable, "-c", client_script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        job_id = doomed.stdout.readline().strip()
        assert job_id, "the client never saw render progress"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()

        with EngineClient(address, timeout=30) as client:
            deadline = time.monotonic() + 30
            while client.get_job(job_id).state not in (pb.JOB_STATE_CANCELLED, pb.JOB_STATE_DONE) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.get_job(job_id).state == pb.JOB_STATE_CANCELLED
            assert not (workspace / "media" / "killed.mkv").exists()
            assert client.health() == "SERVING"
            done = client.render_and_wait(_spec(workspace, "after_kill.mkv", 40, 45))
            assert done.frames_written == 5

        status = subprocess.run([sys.executable, "-m", "dubline.apps.cli.main", "status", "--engine", address],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert "SERVING" in status.stdout and "retrieval" in status.stdout and job_id in status.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert not socket.exists()


@pytest.mark.slow
def test_submit_command_through_a_tcp_subprocess_engine(workspace: Path) -> None:
    process, address = _start_engine(workspace, "127.0.0.1:0")
    try:
        out = workspace / "media" / "submitted.mov"
        result = subprocess.run(
            [sys.executable, "-m", "dubline.apps.cli.main", "submit", "--engine", address,
             "--video", str(workspace / "media" / CLIP), "--audio", str(workspace / "media" / DUB),
             "--range", "50-56", "--out", str(out), "--codec", "h264", "--audio-offset", "0.48s"],
            capture_output=True, text=True, timeout=120, cwd=workspace,
        )
        assert result.returncode == 0, result.stderr
        assert f"wrote {out}" in result.stdout and media.probe(out).video.frame_count == 6
        refused = subprocess.run(
            [sys.executable, "-m", "dubline.apps.cli.main", "submit", "--engine", address,
             "--video", "/etc/passwd", "--audio", str(workspace / "media" / DUB), "--range", "0-5", "--out", str(out)],
            capture_output=True, text=True, timeout=60,
        )
        assert refused.returncode == 2 and "PERMISSION_DENIED" in refused.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_analyse_warms_the_resident_cache(engine, workspace: Path) -> None:
    _, client = engine
    video = str(workspace / "media" / CLIP)
    first = client.analyse(video, speaker="262,200@10")
    again = client.analyse(video, speaker="262,200@10")
    assert not first.cached and again.cached
    assert first.frame_count == again.frame_count == media.probe(workspace / "media" / CLIP).video.frame_count
    assert 0 < first.frames_with_face <= first.frame_count
    assert (first.frame_rate.value, first.frame_rate.rate_num, first.frame_rate.rate_den) == (1, 25, 1)
    assert client.capabilities().resident_analyses >= 1

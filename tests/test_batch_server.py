"""The engine hands a batch to ``dubline batch``'s runner: ``RenderBatch`` streams planned, each
shot's events and done; ``dubline_client`` starts "dub the whole timeline". Shots run inside the
engine (``in_process``) with the fake analysis and backend; paths outside the media roots are
refused per shot, and for the request's own files, as for every RPC."""

from __future__ import annotations

import json
from pathlib import Path

import opentimelineio as otio
import pytest
from dubline_client import EngineClient, EngineError, batch_request, render_spec

from fakes import FakeAnalyses, register_fake_backend
from test_batch import _timeline

from dubline.apps.batch import WorkerRecipe
from dubline.apps.server.app import create_server
from dubline.stages import media


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


@pytest.fixture()
def engine(tmp_path: Path):
    """An engine whose batch workers use the fake analysis; media root: tmp_path/root."""
    root = tmp_path / "root"
    root.mkdir()
    address = f"unix:{tmp_path / 'engine.sock'}"
    server, _ = create_server(address, media_roots=[root], cache_root=tmp_path / "cache", work_dir=tmp_path / "work",
                              batch_recipe=WorkerRecipe(analyses=FakeAnalyses))
    server.start()
    with EngineClient(address, timeout=30) as client:
        client.wait_until_ready(30)
        yield client, root
    server.stop(1)


def _defaults():
    return render_spec("", "", "0-1", backend="fake", codec="ffv1")


def test_dub_the_whole_timeline_through_the_engine(engine) -> None:
    client, root = engine
    timeline = _timeline(root)
    out = root / "reel.dubbed.otio"
    events = []
    done = client.render_batch_and_wait(
        batch_request(timeline=str(timeline), out=str(out), in_process=True, defaults=_defaults()), events.append)
    assert (done.done, done.failed, done.pending) == (4, 0, 0)
    assert done.timeline == str(out) and Path(done.report).is_file() and done.where == "this process"
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "planned" and kinds[-1] == "done"
    assert list(events[0].planned.shots) == ["shot_001", "shot_002", "shot_003", "shot_004"]
    states = [(e.shot.shot, e.shot.state) for e in events if e.WhichOneof("event") == "shot"]
    for shot in events[0].planned.shots:
        assert (shot, "started") in states and (shot, "done") in states
        assert states.index((shot, "started")) < states.index((shot, "done"))
    finished = {e.shot.shot: e.shot.out for e in events if e.WhichOneof("event") == "shot" and e.shot.state == "done"}
    assert all(Path(path).parent == root / "reel.dubbed_patches" and media.probe(Path(path)).video for path in finished.values())
    written = otio.adapters.read_from_file(str(out))
    assert written.tracks[-1].name == "dubline" and len(list(written.tracks[-1].find_clips())) == 4

    # Again: every shot skipped, nothing rendered.
    again = client.render_batch_and_wait(
        batch_request(timeline=str(timeline), out=str(out), in_process=True, defaults=_defaults()))
    assert (again.done, again.skipped) == (0, 4)


def test_paths_outside_the_media_roots_are_refused(engine, tmp_path: Path) -> None:
    client, root = engine
    _timeline(root)  # media inside the root
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "clip.mkv").write_bytes((root / "media" / "a.mkv").read_bytes())
    jobs = [{"id": "inside", "video": "media/a.mkv", "audio": "media/dub.wav", "range": "1-6", "out": "a.mkv"},
            {"id": "outside", "video": str(outside / "clip.mkv"), "audio": "media/dub.wav", "range": "1-6",
             "out": "b.mkv"}]
    (root / "jobs.json").write_text(json.dumps(jobs))
    events = []
    done = client.render_batch_and_wait(batch_request(job_list=str(root / "jobs.json"), in_process=True,
                                                      defaults=_defaults()), events.append)
    assert (done.done, done.failed) == (1, 1)
    failed = [e.shot for e in events if e.WhichOneof("event") == "shot" and e.shot.state == "failed"]
    assert failed[0].shot == "outside" and "outside the engine's media roots" in failed[0].message
    (outside / "jobs.json").write_text(json.dumps(jobs[:1]))
    with pytest.raises(EngineError) as error:
        client.render_batch_and_wait(batch_request(job_list=str(outside / "jobs.json"), in_process=True))
    assert error.value.code == "PERMISSION_DENIED" and "job_list" in error.value.message
    with pytest.raises(EngineError) as error:
        client.render_batch_and_wait(batch_request(timeline=str(root / "reel.otio"), in_process=True))
    assert error.value.code == "INVALID_ARGUMENT" and "--out" in error.value.message

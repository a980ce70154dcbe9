"""``dubline batch`` on a real local Ray with 2 worker actors: a worker process killed mid-shot
(by pid) is restarted and its shot rendered again, frame for frame what an uninterrupted render
gives, with no partial file left; and a real render of short shots of the shared clips, whose
speakers cluster into two persons; and shots analysed by an analysis worker ahead of the render
worker that renders them, which finds the analysis in the shared cache.

One Ray is started for the module (workers find ``fakes`` through PYTHONPATH, as a cluster's
nodes find dubline through their installation). Nothing here waits on a clock: the killed shot
pauses at a known frame and says so in a file (``fakes.FakeBackend``'s ``pause_once``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

# What dubline batch sets before Ray is imported (ray reads it then): the local Ray on loopback only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import pytest
from dubline.apps.batch import BatchOptions, WorkerRecipe, finish, plan_input, run_batch
from dubline.apps.batch.pools import start_ray
from dubline.pipeline.batch import ShotSettings
from dubline.stages import media
from fakes import (
    FakeAnalyses,
    all_frames,
    install_fake_backend,
    register_fake_backend,
    speech_dub,
    write_clip,
)

TESTS = Path(__file__).resolve().parent
REPOSITORY = TESTS.parent


@pytest.fixture(scope="module")
def local_ray():
    path = os.pathsep.join([str(TESTS), str(REPOSITORY / "engine"), str(REPOSITORY / "plugin"),
                            os.environ.get("PYTHONPATH", "")])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", path.rstrip(os.pathsep))
        place = start_ray(None, cpus=2)
        import ray

        # Offline: every Ray process on loopback, no usage statistics, no dashboard.
        assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
        yield place
        ray.shutdown()


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


def _job_list(tmp_path: Path, out: str, pause: Path | None) -> Path:
    media_dir = tmp_path / "media"
    if not media_dir.exists():
        media_dir.mkdir()
        for name in "abcd":
            write_clip(media_dir / f"{name}.mkv", frames=12)
        speech_dub(media_dir / "dub.wav", 0.6)
    (tmp_path / out).mkdir()
    options = {"pause_once": str(pause)} if pause else {}
    jobs = {"defaults": {"backend": "fake", "codec": "ffv1", "backend_options": options},
            "jobs": [{"id": name, "video": f"media/{name}.mkv", "audio": "media/dub.wav", "range": "1-11",
                      "out": f"{out}/{name}.mkv"} for name in "abcd"]}
    path = tmp_path / f"{out}.json"
    path.write_text(json.dumps(jobs))
    return path


def test_a_worker_killed_mid_shot_is_restarted_and_the_shot_rendered_again(local_ray, tmp_path: Path) -> None:
    pause = tmp_path / "paused.pid"
    batch = plan_input(job_list=_job_list(tmp_path, "out", pause))
    recipe = WorkerRecipe(setup=install_fake_backend, analyses=FakeAnalyses)
    options = BatchOptions(workers=2, settings=ShotSettings(report_dir=batch.report_dir, cache_root=tmp_path / "cache"),
                           recipe=recipe)
    events, result = [], {}
    thread = threading.Thread(target=lambda: result.update(run=run_batch(batch.jobs, options, events.append)))
    thread.start()
    for _ in range(12000):  # hang guard only: a worker pauses as soon as its first shot renders
        if pause.exists() and pause.read_text():
            break
        threading.Event().wait(0.01)
    killed = int(pause.read_text())
    # Mid-shot: the paused worker is writing its patch under a temporary name (the encoder runs on
    # its own thread, so the file may appear just after the backend paused).
    for _ in range(12000):  # hang guard only
        if any(".part" in p.name for p in (tmp_path / "out").iterdir()):
            break
        threading.Event().wait(0.01)
    assert any(".part" in p.name for p in (tmp_path / "out").iterdir())
    os.kill(killed, signal.SIGKILL)
    thread.join(timeout=600)
    run = result["run"]
    report = finish(batch, run)
    assert report["counts"]["done"] == 4, report
    assert all(o.state == "done" for o in run.outcomes.values())
    assert all(not o.worker.endswith(f":{killed}") for o in run.outcomes.values())
    assert "local Ray" in report["run"]["where"] and report["run"]["workers"] == 2
    assert "workers of 1 CPU each" in report["run"]["where"]  # 2 CPUs shared by 2 workers
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.mkv" for n in "abcd"] +
                                                          [f"{n}.mkv.dubline.json" for n in "abcd"])

    # Frame for frame what a render nobody interrupted gives (in this process, same jobs).
    reference = plan_input(job_list=_job_list(tmp_path, "reference", None))
    settings = ShotSettings(report_dir=reference.report_dir, cache_root=tmp_path / "cache")
    again = run_batch(reference.jobs, BatchOptions(workers=0, settings=settings, recipe=WorkerRecipe(analyses=FakeAnalyses)))
    assert all(o.state == "done" for o in again.outcomes.values())
    for name in "abcd":
        patch, expected = all_frames(out / f"{name}.mkv"), all_frames(tmp_path / "reference" / f"{name}.mkv")
        assert len(patch) == 10 and all(np.array_equal(x, y) for x, y in zip(patch, expected)), name


@pytest.mark.slow
def test_real_shots_on_two_workers_cluster_into_two_persons(local_ray, shared_media: Path, tmp_path: Path) -> None:
    """Four short shots of the two shared clips, rendered by the retrieval backend on 2 Ray workers."""
    rows = ["id,video,audio,range,out,audio_offset"]
    for name, clip, span, offset in (("a1", "speaker_a", "10-35", "0"), ("b1", "speaker_b", "5-30", "1"),
                                     ("a2", "speaker_a", "60-85", "2"), ("b2", "speaker_b", "70-95", "3")):
        rows.append(f"{name},{shared_media / clip}.mp4,{shared_media / 'dub_en_16k.wav'},{span},out/{name}.mov,{offset}")
    (tmp_path / "out").mkdir()
    (tmp_path / "jobs.csv").write_text("\n".join(rows) + "\n")
    batch = plan_input(job_list=tmp_path / "jobs.csv")
    options = BatchOptions(workers=2, settings=ShotSettings(report_dir=batch.report_dir, cache_root=tmp_path / "cache"))
    run = run_batch(batch.jobs, options)
    report = finish(batch, run)
    assert report["counts"]["done"] == 4, [s.get("message") for s in report["shots"]]
    for name in ("a1", "b1", "a2", "b2"):
        info = media.probe(tmp_path / "out" / f"{name}.mov").video
        assert info.frame_count == 25
        assert (batch.report_dir / "sheets" / f"{name}.png").stat().st_size > 0
    assert run.persons["a1"] == run.persons["a2"] != run.persons["b1"] == run.persons["b2"]
    assert report["persons"] == {"1": ["a1", "a2"], "2": ["b1", "b2"]}


def test_analysis_workers_analyse_each_shot_before_a_render_worker_takes_it(local_ray, tmp_path: Path) -> None:
    batch = plan_input(job_list=_job_list(tmp_path, "out", None))
    recipe = WorkerRecipe(setup=install_fake_backend, analyses=FakeAnalyses)
    options = BatchOptions(workers=1, analysis_workers=1, recipe=recipe,
                           settings=ShotSettings(report_dir=batch.report_dir, cache_root=tmp_path / "cache"))
    events = []
    run = run_batch(batch.jobs, options, events.append)
    report = finish(batch, run)
    assert report["counts"]["done"] == 4, report
    assert report["run"]["where"].endswith("1 worker of 1 CPU, 1 analysis worker of 1 CPU")
    order = [(event.kind, event.shot) for event in events if event.kind in ("analysed", "start", "shot")]
    for name in "abcd":
        assert order.index(("analysed", name)) < order.index(("start", name)) < order.index(("shot", name))
    analysers = {event.worker for event in events if event.kind == "analysed"}
    renderers = {outcome.worker for outcome in run.outcomes.values()}
    assert len(analysers) == len(renderers) == 1 and analysers.isdisjoint(renderers)  # two processes
    assert {outcome.analysed_by for outcome in run.outcomes.values()} == analysers
    assert not any(event.message for event in events if event.kind == "analysed")


@pytest.mark.slow
def test_a_render_worker_finds_its_shots_analysis_in_the_shared_cache(local_ray, shared_media: Path,
                                                                      tmp_path: Path) -> None:
    """Real analysis on an analysis worker, real render on a render worker: the render loads the
    face track and speech from the cache the analysis worker filled and analyses nothing itself."""
    rows = ["id,video,audio,range,out,audio_offset"]
    for name, clip, span in (("a", "speaker_a", "10-30"), ("b", "speaker_b", "5-25")):
        rows.append(f"{name},{shared_media / clip}.mp4,{shared_media / 'dub_en_16k.wav'},{span},out/{name}.mov,0")
    (tmp_path / "out").mkdir()
    (tmp_path / "jobs.csv").write_text("\n".join(rows) + "\n")
    batch = plan_input(job_list=tmp_path / "jobs.csv")
    options = BatchOptions(workers=1, analysis_workers=1,
                           settings=ShotSettings(report_dir=batch.report_dir, cache_root=tmp_path / "cache"))
    run = run_batch(batch.jobs, options)
    report = finish(batch, run)
    assert report["counts"]["done"] == 2, [s.get("message") for s in report["shots"]]
    for outcome in run.outcomes.values():
        assert outcome.analysed_by and outcome.analysed_by != outcome.worker
        stages = outcome.render["stage_seconds"]
        assert "analyse_source.load" in stages  # read from the cache ...
        assert not [stage for stage in stages if stage.startswith("analyse_source.work")], stages  # ... not analysed
        assert media.probe(outcome.render["out"]).video.frame_count == 20

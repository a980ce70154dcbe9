"""``dubline batch``'s own logic, fast: job lists, a reel planned from a timeline (dub on an audio
track), the patched timeline, the resume rule, cancel, the report and identities. Shots run in this
process (``--workers 0``) with the fake analysis and backend of ``fakes.py``; the Ray runs are in
``test_batch_ray.py``."""

from __future__ import annotations

import json
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from dubline.apps.batch import BatchOptions, WorkerRecipe, finish, plan_input, run_batch
from dubline.apps.cli.main import main
from dubline.core.errors import InvalidInputError, OutputExistsError
from dubline.pipeline.batch import (
    JobDefaults,
    ShotJob,
    ShotSettings,
    cluster_identities,
    plan_reel,
    read_job_list,
    shared_libraries,
    sidecar_path,
    summary_table,
)
from dubline.pipeline.batch.identity import ShotFace
from dubline.stages import media
from fakes import (
    FakeAnalyses,
    all_frames,
    register_fake_backend,
    speech_dub,
    write_clip,
)

RATE = Fraction(25)


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch) -> None:
    register_fake_backend(monkeypatch)


def _options(tmp_path: Path, report: Path, **changes) -> BatchOptions:
    settings = ShotSettings(report_dir=report, cache_root=tmp_path / "cache", **changes.pop("settings", {}))
    return BatchOptions(workers=0, settings=settings, recipe=WorkerRecipe(analyses=FakeAnalyses), **changes)


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    """Two clips, a dub and a JSON job list of three shots (one of them with a bad codec)."""
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    write_clip(media_dir / "a.mkv", frames=8)
    write_clip(media_dir / "b.mkv", frames=8, timecode="02:00:00:00")
    speech_dub(media_dir / "dub.wav", 0.4)
    out = tmp_path / "out"
    out.mkdir()
    jobs = {
        "defaults": {"backend": "fake", "codec": "ffv1"},
        "jobs": [
            {"id": "a", "video": "media/a.mkv", "audio": "media/dub.wav", "range": "1-6", "out": "out/a.mkv"},
            {"id": "b", "video": "media/b.mkv", "audio": "media/dub.wav", "range": "2-8", "out": "out/b.mkv",
             "audio_offset": "0.04"},
            {"id": "bad", "video": "media/b.mkv", "audio": "media/dub.wav", "range": "0-2", "out": "out/bad.mkv",
             "codec": "nonsense"},
        ],
    }
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(jobs))
    return path


# ------------------------------------------------------------------------------------ job lists


def test_job_list_json_and_csv_read_the_same(shots: Path, tmp_path: Path) -> None:
    from_json = read_job_list(shots)
    assert [j.id for j in from_json] == ["a", "b", "bad"]
    a, b, bad = from_json
    assert a.video == tmp_path / "media" / "a.mkv" and a.out == tmp_path / "out" / "a.mkv" and a.span == "1-6"
    assert b.audio_offset == Fraction(1, 25) and b.backend == "fake" and b.codec == "ffv1"
    assert a.problem is None and b.problem is None
    assert "bad --codec 'nonsense' is not one of" in bad.problem

    csv_path = tmp_path / "jobs.csv"
    csv_path.write_text("id,video,audio,range,out,codec,backend_options,library\n"
                        "a,media/a.mkv,media/dub.wav,1-6,out/a.mkv,ffv1,passthrough=2:occluded;x=1,media/b.mkv\n"
                        ",media/b.mkv,media/dub.wav,2-8,out/a.mkv,ffv1,,\n")
    first, second = read_job_list(csv_path, JobDefaults(backend="fake"))
    assert first.backend_options == {"passthrough": "2:occluded", "x": "1"}
    assert first.library == (tmp_path / "media" / "b.mkv",)
    assert second.id == "shot_002" and "writes" in second.problem and "a writes too" in second.problem


def test_job_list_rows_with_problems_fail_alone(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([{"video": "v.mkv", "audio": "d.wav", "out": "o.mkv"},
                                {"video": "v.mkv", "audio": "d.wav", "range": "0-2", "out": "v.mkv", "codec": "ffv1",
                                 "backend": "fake"},
                                {"video": "v.mkv", "audio": "d.wav", "range": "0-2", "out": "o.mkv", "colour": "red"}]))
    missing, is_input, unknown = read_job_list(path)
    assert missing.problem == "row 1 (shot_001): no range"
    assert "same file as the shot_002 --video input" in is_input.problem
    assert "unknown field colour" in unknown.problem
    path.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        read_job_list(path)


# ----------------------------------------------------------------------------------- run, resume


def test_batch_renders_resumes_and_reports(shots: Path, tmp_path: Path) -> None:
    batch = plan_input(job_list=shots)
    report_dir = tmp_path / "jobs_report"
    assert batch.report_dir == report_dir and (report_dir / "sheets").is_dir()
    events = []
    run = run_batch(batch.jobs, _options(tmp_path, report_dir), events.append)
    report = finish(batch, run)
    assert {s["id"]: s["state"] for s in report["shots"]} == {"a": "done", "b": "done", "bad": "failed"}
    assert report["counts"]["done"] == 2 and report["counts"]["failed"] == 1
    a = tmp_path / "out" / "a.mkv"
    assert media.probe(a).video.frame_count == 5 and media.probe(a).video.start_timecode == "01:00:00:01"
    assert media.probe(tmp_path / "out" / "b.mkv").video.start_timecode == "02:00:00:02"
    assert (report_dir / "sheets" / "a.png").stat().st_size > 0 and (report_dir / "sheets" / "b.png").exists()
    assert json.loads((report_dir / "report.json").read_text())["counts"] == report["counts"]
    assert [e.kind for e in events if e.shot == "a"][0] == "start" and any(e.kind == "shot" for e in events)
    table = summary_table(report)
    assert "a " in table and "bad --codec 'nonsense'" in table and "3 shots: 2 done, 1 failed" in table
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "a.mkv.dubline.json", "b.mkv",
                                                                   "b.mkv.dubline.json"]

    # Unchanged inputs: both skipped, nothing written. A changed dub renders its shots again.
    stamp = a.stat().st_mtime_ns
    again = run_batch(batch.jobs, _options(tmp_path, report_dir))
    assert {s: o.state for s, o in again.outcomes.items()} == {"a": "skipped", "b": "skipped", "bad": "failed"}
    assert a.stat().st_mtime_ns == stamp and again.outcomes["a"].render["frames_written"] == 5
    (tmp_path / "media" / "dub.wav").unlink()
    speech_dub(tmp_path / "media" / "dub.wav", 0.5)
    third = run_batch(batch.jobs, _options(tmp_path, report_dir))
    assert third.outcomes["a"].state == "done" and third.outcomes["b"].state == "done"
    # A patch edited (or replaced) since it was recorded is not taken as finished.
    (tmp_path / "out" / "b.mkv").write_bytes(b"not the patch")
    fourth = run_batch(batch.jobs, _options(tmp_path, report_dir))
    assert fourth.outcomes["a"].state == "skipped" and fourth.outcomes["b"].state == "done"


def test_a_file_no_batch_wrote_is_kept_unless_overwrite(shots: Path, tmp_path: Path) -> None:
    batch = plan_input(job_list=shots)
    users = tmp_path / "out" / "a.mkv"
    users.write_bytes(b"the user's own file")
    run = run_batch(batch.jobs, _options(tmp_path, batch.report_dir))
    assert run.outcomes["a"].state == "failed" and "exists and no batch wrote it" in run.outcomes["a"].message
    assert users.read_bytes() == b"the user's own file" and not sidecar_path(users).exists()
    assert run.outcomes["b"].state == "done"
    run = run_batch(batch.jobs, _options(tmp_path, batch.report_dir, settings={"overwrite": True}))
    assert run.outcomes["a"].state == "done" and media.probe(users).video.frame_count == 5


def test_leftovers_of_a_killed_writer_are_removed_and_other_shots_kept(shots: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    leftover = out / ".a.0a1b2c3d.part.mkv"  # what write_patch leaves when its process is killed
    leftover.write_bytes(b"half a patch")
    neighbour = out / ".a.x.0a1b2c3d.part.mkv"  # another shot's ("a.x.mkv") temporary file
    neighbour.write_bytes(b"someone else's")
    batch = plan_input(job_list=shots)
    run = run_batch(batch.jobs, _options(tmp_path, batch.report_dir))
    assert run.outcomes["a"].state == "done"
    assert not leftover.exists() and neighbour.exists()


def test_cancel_stops_the_shot_in_flight_and_starts_no_more(shots: Path, tmp_path: Path) -> None:
    pause = tmp_path / "paused"
    data = json.loads(shots.read_text())
    data["defaults"]["backend_options"] = {"pause_once": str(pause)}
    shots.write_text(json.dumps(data))
    batch = plan_input(job_list=shots)
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(run=run_batch(batch.jobs, _options(tmp_path, batch.report_dir),
                                                                          stop=stop)))
    thread.start()
    for _ in range(3000):  # hang guard only: the shot pauses as soon as it renders
        if pause.exists():
            break
        threading.Event().wait(0.01)
    stop.set()
    thread.join(timeout=60)
    run = result["run"]
    assert run.interrupted
    assert run.outcomes["a"].state == "cancelled" and "b" not in run.outcomes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    report = finish(batch, run)
    assert [s["state"] for s in report["shots"]] == ["cancelled", "pending", "failed"]


# --------------------------------------------------------------------------------------- reels


def _timeline(tmp_path: Path) -> Path:
    """V1: clip 'talk' (a.mkv from 01:00:00:00, 8 frames) at record 0-8 and 'other' (b.mkv) at
    8-16; V2: 'insert' (b.mkv) at record 5-7 above 'talk'. A1 'Dub EN': dub.wav at record 2-12,
    played from its 0.2 s. V1 'talk' has a speaker marker."""
    media_dir = tmp_path / "media"
    media_dir.mkdir(exist_ok=True)
    a = write_clip(media_dir / "a.mkv", frames=8)
    b = write_clip(media_dir / "b.mkv", frames=8, timecode="02:00:00:00")
    dub = speech_dub(media_dir / "dub.wav", 1.0)

    def clip(name, path, start_tc_frames, first, count):
        reference = otio.schema.ExternalReference(
            target_url=str(path), available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(start_tc_frames, 25), otio.opentime.RationalTime(8, 25)))
        return otio.schema.Clip(name=name, media_reference=reference, source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(start_tc_frames + first, 25), otio.opentime.RationalTime(count, 25)))

    timeline = otio.schema.Timeline(name="reel", global_start_time=otio.opentime.RationalTime(0, 25))
    v1 = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    talk = clip("talk", a, 90000, 0, 8)
    talk.markers.append(otio.schema.Marker(name="speaker 64,64", marked_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(90003, 25), otio.opentime.RationalTime(1, 25))))
    v1.extend([talk, clip("other", b, 180000, 0, 8)])
    v2 = otio.schema.Track(name="V2", kind=otio.schema.TrackKind.Video)
    v2.extend([otio.schema.Gap(duration=otio.opentime.RationalTime(5, 25)), clip("insert", b, 180000, 3, 2)])
    a1 = otio.schema.Track(name="Dub EN", kind=otio.schema.TrackKind.Audio)
    dub_clip = otio.schema.Clip(
        name="line 1", media_reference=otio.schema.ExternalReference(target_url=str(dub)),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(9600, 48000), otio.opentime.RationalTime(19200, 48000)))
    a1.extend([otio.schema.Gap(duration=otio.opentime.RationalTime(2, 25)), dub_clip])
    timeline.tracks.extend([v1, v2, a1])
    path = tmp_path / "reel.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def test_reel_jobs_are_the_overlaps_of_the_visible_clips_with_the_dub(tmp_path: Path) -> None:
    plan = plan_reel(_timeline(tmp_path), tmp_path, JobDefaults(backend="fake", codec="ffv1"))
    assert plan.dub_tracks == ["Dub EN"]
    shots = [(j.id, j.label.split(" (")[0], j.span, j.audio_offset, j.speaker) for j in plan.jobs]
    # Record 2-5 and 7-8 of 'talk' (5-7 shows 'insert' from V2), 8-12 of 'other'; the dub plays
    # from 0.2 s at record 2, so from 0.2 + (r - 2)/25 at record r.
    assert shots == [
        ("shot_001", "clip 'talk'", "2-5", Fraction(1, 5), "64,64@3"),
        ("shot_002", "clip 'insert'", "3-5", Fraction(1, 5) + Fraction(3, 25), None),
        ("shot_003", "clip 'talk'", "7-8", Fraction(1, 5) + Fraction(5, 25), "64,64@3"),
        ("shot_004", "clip 'other'", "0-4", Fraction(1, 5) + Fraction(6, 25), None),
    ]
    assert all(j.problem is None for j in plan.jobs)
    assert [p.record for p in plan.placements.values()] == [(2, 5), (5, 7), (7, 8), (8, 12)]
    assert plan.jobs[0].out.name == "talk.dubline.90002-90005.mkv"


def test_reel_batch_writes_every_patch_on_one_new_top_track(tmp_path: Path) -> None:
    timeline = _timeline(tmp_path)
    out = tmp_path / "reel.dubbed.otio"
    main(["batch", "--timeline", str(timeline), "--out", str(out), "--workers", "0", "--backend", "fake", "--codec",
          "ffv1", "--dry-run"])
    assert not out.exists()
    batch = plan_input(timeline=timeline, out=out, defaults=JobDefaults(backend="fake", codec="ffv1"))
    assert batch.jobs[0].out.parent == tmp_path / "reel.dubbed_patches"
    run = run_batch(batch.jobs, _options(tmp_path, batch.report_dir))
    report = finish(batch, run)
    assert report["counts"]["done"] == 4 and report["run"]["timeline_out"] == str(out)
    written = otio.adapters.read_from_file(str(out))
    assert [t.name for t in written.tracks] == ["V1", "V2", "Dub EN", "dubline"]
    original = otio.adapters.read_from_file(str(timeline))
    for before, after in zip(original.tracks, written.tracks):
        assert otio.adapters.write_to_string(before) == otio.adapters.write_to_string(after)
    top = written.tracks[-1]
    placed = [(top.range_of_child_at_index(i).start_time.to_frames(), item.metadata["dubline"]["shot"])
              for i, item in enumerate(top) if isinstance(item, otio.schema.Clip)]
    assert placed == [(2, "shot_001"), (5, "shot_002"), (7, "shot_003"), (8, "shot_004")]
    assert written.metadata["dubline"]["batch"]["patches"] == 4
    # The patch of 'insert' has the frames of b.mkv 3-5 with the fake mouth; its source timecode.
    patch = Path(top[2].media_reference.target_url)
    assert media.probe(patch).video.start_timecode == "02:00:00:03" and len(all_frames(patch)) == 2
    # A re-run replaces the timeline the batch wrote; a user's file there is refused.
    assert plan_input(timeline=timeline, out=out).timeline_out == out
    other = tmp_path / "mine.otio"
    other.write_text("{}")
    with pytest.raises(OutputExistsError):
        plan_input(timeline=timeline, out=other)


def test_reel_refusals_are_failed_shots(tmp_path: Path) -> None:
    path = _timeline(tmp_path)
    timeline = otio.adapters.read_from_file(str(path))
    timeline.tracks[0][1].effects.append(otio.schema.LinearTimeWarp(time_scalar=2.0))
    timeline.tracks[2].name = "A1 music"
    otio.adapters.write_to_file(timeline, str(path))
    with pytest.raises(InvalidInputError, match="no audio track is named like a dub; say which with --dub-track"):
        plan_reel(path, tmp_path)
    plan = plan_reel(path, tmp_path, JobDefaults(backend="fake", codec="ffv1"), dub_tracks=["A1"])
    assert "speed change to 200%" in plan.jobs[-1].problem and plan.jobs[-1].id not in plan.placements
    assert all(j.problem is None for j in plan.jobs[:-1])


# ---------------------------------------------------------------------------------- identities


def test_speakers_are_clustered_by_person_and_share_libraries() -> None:
    rng = np.random.default_rng(3)
    alice, bob = rng.normal(size=128) * 0.05, rng.normal(size=128) * 0.05 + 0.08
    faces = {"s1": alice + rng.normal(size=128) * 0.005, "s2": bob, "s3": alice + rng.normal(size=128) * 0.005,
             "s4": None, "s5": alice}
    persons = cluster_identities(faces)
    assert persons == {"s1": 1, "s2": 2, "s3": 1, "s5": 1}
    videos = {"s1": Path("/m/a1.mov"), "s2": Path("/m/b.mov"), "s3": Path("/m/a2.mov"), "s5": Path("/m/a1.mov")}
    counts = {"s1": ShotFace(None, 10), "s2": ShotFace(None, 5), "s3": ShotFace(None, 50), "s5": ShotFace(None, 10)}
    libraries = shared_libraries(videos, persons, counts)
    assert libraries == {"s1": (Path("/m/a2.mov"),), "s2": (), "s3": (Path("/m/a1.mov"),), "s5": (Path("/m/a2.mov"),)}


def test_cross_shot_library_reaches_the_render(shots: Path, tmp_path: Path) -> None:
    batch = plan_input(job_list=shots)
    run = run_batch(batch.jobs, _options(tmp_path, batch.report_dir, cross_shot_library=True))
    # The fake analysis gives every face the same descriptor: one person, each shot's library the other clip.
    assert run.persons == {"a": 1, "b": 1}
    assert run.libraries == {"a": (tmp_path / "media" / "b.mkv",), "b": (tmp_path / "media" / "a.mkv",)}
    assert run.outcomes["a"].state == "done"


def test_shot_job_request_carries_the_shared_library(tmp_path: Path) -> None:
    job = ShotJob("s", "row 1", tmp_path / "v.mkv", tmp_path / "d.wav", "0-2", tmp_path / "o.mkv", backend="fake",
                  codec="ffv1", library=(tmp_path / "x.mkv",))
    request = job.request(library=(tmp_path / "x.mkv", tmp_path / "y.mkv"))
    assert request.library == (tmp_path / "x.mkv", tmp_path / "y.mkv")
    with pytest.raises(InvalidInputError, match=r"^s --out \S+v.mkv is the same file as the s --video input"):
        ShotJob("s", "", tmp_path / "v.mkv", tmp_path / "d.wav", "0-2", tmp_path / "v.mkv", backend="fake",
                codec="ffv1").request()


def test_a_path_a_worker_cannot_read_or_write_fails_that_shot_only(shots: Path, tmp_path: Path) -> None:
    data = json.loads(shots.read_text())
    data["jobs"][0]["video"] = "media/missing.mkv"
    data["jobs"][1]["out"] = "nowhere/b.mkv"
    shots.write_text(json.dumps(data))
    batch = plan_input(job_list=shots)
    run = run_batch(batch.jobs, _options(tmp_path, batch.report_dir))
    assert "a: video" in run.outcomes["a"].message and "does not exist on" in run.outcomes["a"].message
    assert "(workers need the same paths: shared storage)" in run.outcomes["a"].message
    assert "b: cannot write" in run.outcomes["b"].message and "nowhere" in run.outcomes["b"].message


def test_cli_exit_status_and_report(shots: Path, tmp_path: Path, capsys) -> None:
    data = json.loads(shots.read_text())
    for job in data["jobs"]:
        job["video"] = "media/missing.mkv"
    shots.write_text(json.dumps(data))
    assert main(["batch", "--jobs", str(shots), "--workers", "0", "--cache", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out
    assert "3 shots: 3 failed" in out and f"report {tmp_path / 'jobs_report' / 'report.json'}" in out
    assert main(["batch", "--jobs", str(shots), "--workers", "0", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["counts"]["failed"] == 3
    assert main(["batch", "--jobs", str(tmp_path / "none.json"), "--workers", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["batch", "--timeline", str(shots), "--workers", "0"]) == 2
    assert "--timeline needs --out" in capsys.readouterr().err


def test_gpu_backends_get_one_worker_per_gpu_each_holding_one() -> None:
    from dubline.apps.batch.runner import WorkerPlan, worker_plan

    assert worker_plan(None, cpus=64, gpus=8, gpu_backend=True) == WorkerPlan(8, 8, 1)
    assert worker_plan(4, cpus=64, gpus=8, gpu_backend=True) == WorkerPlan(4, 16, 1)
    assert worker_plan(16, cpus=64, gpus=8, gpu_backend=True) == WorkerPlan(8, 8, 1)
    assert worker_plan(None, cpus=64, gpus=8, gpu_backend=False) == WorkerPlan(64, 1, 0)
    assert worker_plan(None, cpus=2, gpus=0, gpu_backend=True) == WorkerPlan(2, 1, 0)
    assert worker_plan(3, cpus=2, gpus=0, gpu_backend=False) == WorkerPlan(3, 1, 0)


def test_analysis_workers_by_default_only_beside_gpu_workers() -> None:
    from dubline.apps.batch.runner import analysis_plan

    assert analysis_plan(None, 16, gpu_workers=True) == 8
    assert analysis_plan(None, 16, gpu_workers=False) == 0
    assert analysis_plan(3, 16, gpu_workers=False) == 3
    assert analysis_plan(0, 16, gpu_workers=True) == 0


def test_each_worker_gets_a_share_of_the_cpus_that_fits_a_node() -> None:
    from dubline.apps.batch.pools import local_ray_cpus
    from dubline.apps.batch.runner import WorkerPlan, worker_plan

    # One worker on a 2-CPU Ray may use both; two get one each; asked-for shares win.
    assert worker_plan(1, cpus=2, gpus=0, gpu_backend=False) == WorkerPlan(1, 2, 0)
    assert worker_plan(2, cpus=2, gpus=0, gpu_backend=False) == WorkerPlan(2, 1, 0)
    assert worker_plan(1, cpus=2, gpus=0, gpu_backend=False, cpus_per_worker=1) == WorkerPlan(1, 1, 0)
    # A share is never larger than the largest node (an actor cannot span nodes).
    assert worker_plan(2, cpus=48, gpus=0, gpu_backend=False, largest_node_cpus=16) == WorkerPlan(2, 16, 0)
    # A local Ray advertises enough CPUs for the workers asked for, and at least the machine's.
    from dubline.core.cpus import machine_cpus

    assert local_ray_cpus(None, None) == machine_cpus()
    assert local_ray_cpus(machine_cpus() + 3, None) == machine_cpus() + 3
    assert local_ray_cpus(2, machine_cpus()) == 2 * machine_cpus()


def test_speaker_hints_from_clip_metadata(tmp_path: Path) -> None:
    path = _timeline(tmp_path)
    timeline = otio.adapters.read_from_file(str(path))
    timeline.tracks[0][1].metadata["dubline"] = {"speaker": "30,40,90,100@1"}  # V1 'other'
    otio.adapters.write_to_file(timeline, str(path))
    plan = plan_reel(path, tmp_path, JobDefaults(backend="fake", codec="ffv1"))
    assert [j.speaker for j in plan.jobs] == ["64,64@3", None, "64,64@3", "30,40,90,100@1"]
    timeline.tracks[2][1].metadata["dubline"] = {"speaker": "1,2@0"}  # the dub line names who speaks it
    otio.adapters.write_to_file(timeline, str(path))
    assert {j.speaker for j in plan_reel(path, tmp_path, JobDefaults(backend="fake", codec="ffv1")).jobs} == {"1,2@0"}

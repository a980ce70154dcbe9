"""The OTIO timeline written next to a patch: source on V1, patch on V2 at the span."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest
from dubline.core.errors import OutputExistsError, OutputPathError
from dubline.interchange.timeline import patch_timeline, write_timeline


@pytest.mark.parametrize("rate", [Fraction(25), Fraction(24000, 1001), Fraction(30000, 1001)])
def test_patch_sits_above_the_span(tmp_path: Path, rate: Fraction) -> None:
    span = otio.opentime.TimeRange(
        otio.opentime.RationalTime(30, float(rate)), otio.opentime.RationalTime(48, float(rate))
    )
    start_tc_frames = 3600 * 24  # a source starting at 01:00:00:00 (at 24-ish fps)
    timeline = patch_timeline(
        tmp_path / "src.mov", 125, start_tc_frames, span, tmp_path / "patch.mov", rate, tmp_path / "dub.wav", "retrieval"
    )
    path = write_timeline(timeline, tmp_path / "out.otio")
    read = otio.adapters.read_from_file(str(path))
    source_track, patch_track = read.video_tracks()
    assert source_track[0].source_range.duration.to_frames() == 125
    patch = patch_track[-1]
    assert isinstance(patch, otio.schema.Clip)
    record = patch_track.range_of_child(patch)
    assert record.start_time.to_frames() == 30
    assert record.duration.to_frames() == 48
    assert patch.source_range.start_time.to_frames() == start_tc_frames + 30
    assert patch.media_reference.target_url == str((tmp_path / "patch.mov").resolve())
    assert not patch.media_reference.target_url.startswith("file:")
    # The same patch track and metadata as dubline otio writes.
    assert patch_track.name == "dubline"
    metadata = patch.metadata["dubline"]
    assert metadata["backend"] == "retrieval" and metadata["source_media"] == str(tmp_path / "src.mov")
    assert list(metadata["span"]["record_frames"]) == [start_tc_frames + 30, start_tc_frames + 78]


def test_write_refuses_to_overwrite_and_needs_a_directory(tmp_path: Path) -> None:
    span = otio.opentime.TimeRange(otio.opentime.RationalTime(0, 25), otio.opentime.RationalTime(5, 25))
    timeline = patch_timeline(tmp_path / "s.mov", 10, 0, span, tmp_path / "p.mov", Fraction(25), tmp_path / "d.wav", "retrieval")
    write_timeline(timeline, tmp_path / "t.otio")
    with pytest.raises(OutputExistsError):
        write_timeline(timeline, tmp_path / "t.otio")
    write_timeline(timeline, tmp_path / "t.otio", overwrite=True)
    with pytest.raises(OutputPathError):
        write_timeline(timeline, tmp_path / "missing" / "t.otio")
    assert [p.name for p in tmp_path.iterdir()] == ["t.otio"]

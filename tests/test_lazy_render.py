"""A render converts only the boxes of each source frame that it reads (``media.LazyImage``), and
writes the very patch and matte a render converting every frame whole writes: both backends that
run on CPU, upright and sideways 8-bit H.264, 10-bit ProRes 422 HQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dubline.core.timing import frames_to_range
from dubline.pipeline import RenderRequest, incremental, render
from dubline.stages import media
from dubline.stages.media import lazy
from footagegen import Storage, deepen, upright_frames, write_clip

pytestmark = pytest.mark.slow

FRAMES, SPAN = 16, "2-14"
PRORES_HQ = {"profile": "3", "vendor": "apl0"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, shared_media) -> dict[str, Path]:
    clips = tmp_path_factory.mktemp("lazy_clips")
    upright = upright_frames(shared_media / "speaker_a.mp4", FRAMES)
    return {
        "h264": write_clip(clips / "h264.mp4", upright, Storage()),
        "h264_rot90": write_clip(clips / "rot90.mp4", upright, Storage(rotation=90)),
        "prores10": write_clip(clips / "prores10.mov", deepen(upright),
                               Storage(codec="prores_ks", pix_fmt="yuv422p10le", options=dict(PRORES_HQ))),
    }


def _pictures(path: Path) -> list[np.ndarray]:
    info = media.probe(path).video
    return [frame.image for frame in media.read_span(path, frames_to_range(0, info.frame_count, info.rate))]


def _render(source: Path, dub: Path, cache: Path, out: Path, codec: str, backend: str) -> tuple[Path, Path]:
    options = {"deterministic": True} if backend == "wav2lip" else {}
    result = render(RenderRequest(video=source, audio=dub, span=SPAN, out=out, codec=codec, backend=backend,
                                  backend_options=options, matte=out.with_name(out.stem + "_matte.mov"),
                                  overwrite=True), cache_root=cache)
    assert result.frames_patched > 0
    return result.out, result.matte


@pytest.mark.parametrize("clip, codec", [("h264", "h264"), ("h264_rot90", "h264"), ("prores10", "prores")])
@pytest.mark.parametrize("backend", ["retrieval", "wav2lip"])
def test_a_lazy_render_writes_the_patch_of_whole_conversions(sources, shared_media, tmp_path, monkeypatch,
                                                             clip, codec, backend):
    dub, cache = shared_media / "dub_en_16k.wav", tmp_path / "cache"
    suffix = media.PATCH_CODECS[codec].suffixes[0]
    whole_conversions = []
    converted_whole = lazy.LazyImage._converted_whole
    monkeypatch.setattr(lazy.LazyImage, "_converted_whole",
                        lambda self: whole_conversions.append(1) or converted_whole(self))
    monkeypatch.setattr(incremental, "load_record", lambda cache: None)  # draw every row both times
    lazy_out = _render(sources[clip], dub, cache, tmp_path / f"lazy{suffix}", codec, backend)
    # The patch is coded like its source, so no frame had to be converted whole.
    assert not whole_conversions
    monkeypatch.setattr(lazy, "WHOLE_SHARE", -1.0)  # every read converts the whole frame: the eager render
    eager_out = _render(sources[clip], dub, cache, tmp_path / f"eager{suffix}", codec, backend)
    assert len(whole_conversions) >= 12
    for lazy_path, eager_path in zip(lazy_out, eager_out):
        lazy_pictures, eager_pictures = _pictures(lazy_path), _pictures(eager_path)
        assert len(lazy_pictures) == len(eager_pictures) == 12
        for index, (got, want) in enumerate(zip(lazy_pictures, eager_pictures)):
            assert np.array_equal(got, want), (clip, backend, lazy_path.name, index)

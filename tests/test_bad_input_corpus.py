"""A corpus of bad inputs, generated here from the shared clips and synthetic media, each run
through the real command line as a user would: truncated, corrupt and declared-huge media, wrong
stream types, outputs that name inputs, impossible spans and options, read-only and full targets
(a small tmpfs, as root), and signals in the middle of encoding.

Every case asserts: the exit status (2 for bad input, 0 where success is right, 128+N for a
signal), exactly one line on stderr naming what is wrong (failures), no traceback, nothing left
beside the output (no temporary file, no half-written patch), and every input byte-identical
(sha256). The CLI is started once per case; cases that need no analysis run a few at a time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
from mediagen import (
    AudioSpec,
    VideoSpec,
    excerpt,
    make_audio,
    make_video,
    spec_for,
    truncate,
)

# Real renders of clips cut from ../shared/media (face and speech analysis included): the slow tier.
pytestmark = pytest.mark.slow

CLIP_FRAMES = 30  # the speaker clip used: the first 30 frames (1.2 s) of speaker_a
PARALLEL = 3


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the media -----------------------------------------------------------------------------------------

def _damage_packets(source: Path, target: Path, kind: str, part: float, count: int, seed: int) -> Path:
    """``source`` with ``count`` packets of its first ``kind`` stream overwritten by random bytes."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        packets = [(p.pos, p.size) for p in container.demux(stream) if p.size and p.pos is not None]
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    first = int(len(packets) * part)
    for position, size in packets[first : first + count]:
        data[position : position + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def _declare_size(source: Path, target: Path, width: int, height: int) -> Path:
    """A Matroska file whose header declares another frame size (its PixelWidth/PixelHeight)."""
    data = bytearray(source.read_bytes())
    for element in (b"\xb0\x82\x01\x00", b"\xba\x82\x01\x00"):  # PixelWidth / PixelHeight = 256, two bytes
        at = data.find(element)
        assert at > 0, "the source must be 256x256 Matroska"
        data[at + 2 : at + 4] = (width if element[0] == 0xB0 else height).to_bytes(2, "big")
    target.write_bytes(bytes(data))
    return target


def _nan_wav(path: Path) -> Path:
    samples = np.sin(np.linspace(0, 300, 32000)).astype(np.float32) * 0.3
    samples[5000:5100] = np.nan
    samples[9000:9010] = np.inf
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


@dataclass
class Corpus:
    media: Path
    cache: Path
    work: Path
    files: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Path:
        return self.files[name]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_media: Path) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    media, cache, work = root / "media", root / "cache", root / "work"
    for directory in (media, cache, work):
        directory.mkdir()
    f: dict[str, Path] = {}
    f["clip"] = excerpt(shared_media / "speaker_a.mp4", media / "clip.mp4", CLIP_FRAMES)
    f["dub"] = shutil.copy(shared_media / "dub_en_16k.wav", media / "dub.wav")
    f["dub48"] = shutil.copy(shared_media / "dub_en_48k_stereo.wav", media / "dub48.wav")
    f["truncated_half"] = truncate(f["clip"], media / "truncated_half.mp4", 0.5)
    f["truncated_tail"] = truncate(f["clip"], media / "truncated_tail.mp4", 0.93)
    f["header_only"] = truncate(f["clip"], media / "header_only.mp4", 0.0002)
    (media / "empty.mp4").write_bytes(b"")
    f["empty"] = media / "empty.mp4"
    f["random"] = media / "random.mp4"
    f["random"].write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    f["text"] = media / "notes.mov"
    f["text"].write_text("this is not a video\n")
    f["corrupt_video"] = _damage_packets(f["clip"], media / "corrupt_video.mp4", "video", 0.0, 40, seed=2)
    f["corrupt_audio"] = _damage_packets(f["clip"], media / "corrupt_audio.mp4", "audio", 0.4, 3, seed=3)
    ffv1 = make_video(media / "ffv1_256.mkv", VideoSpec(codec="ffv1", frames=3, width=256, height=256, pix_fmt="yuv420p"))
    f["huge"] = _declare_size(ffv1, media / "huge_16384.mkv", 16384, 16384)
    f["big"] = _declare_size(ffv1, media / "big_12000.mkv", 12000, 12000)
    ffv1.unlink()
    f["silent_video"] = make_video(media / "silent.mp4", spec_for("h264", frames=10))
    f["still"] = media / "still.png"
    with av.open(str(f["still"]), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")),
                       *stream.encode()]:
            container.mux(packet)
    f["nan_dub"] = _nan_wav(media / "nan.wav")
    f["empty_dub"] = make_audio(media / "empty_dub.wav", AudioSpec(rate=16000, channels=1, seconds=0.0))
    f["truncated_dub"] = truncate(f["dub"], media / "truncated_dub.wav", 0.00005)
    f["random_dub"] = media / "random.wav"
    f["random_dub"].write_bytes(np.random.default_rng(4).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    f["checkpoint"] = media / "weights.mov"
    f["checkpoint"].write_bytes(b"not really weights")
    f["timeline_junk"] = media / "junk.otio"
    f["timeline_junk"].write_text('{"OTIO_SCHEMA": "Timeline.1", "tracks": [1, 2')
    f["adir"] = media / "a_directory.mov"
    f["adir"].mkdir()
    (media / "hardlink.mp4").hardlink_to(f["clip"])
    (media / "symlink.wav").symlink_to(f["dub"])
    return Corpus(media, cache, work, f)


# -- running the command line ----------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    args: Callable[[Corpus, Path], list[str | Path]]  # (corpus, the case's output directory) -> argv
    status: int = 2
    says: tuple[str, ...] = ()  # the stderr line contains each of these
    outputs: tuple[str, ...] = ()  # files the case's directory holds afterwards (success)
    prepare: Callable[[Corpus, Path], None] | None = None
    env: Callable[[Corpus, Path], dict[str, str]] | None = None


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _environment(corpus: Corpus, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "DUBLINE_CACHE": str(corpus.cache), "DUBLINE_MODELS": str(corpus.work / "no-models"),
            **(extra or {})}


def _run(argv: list[str | Path], env: dict[str, str], cwd: Path, timeout: float = 300) -> Outcome:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "dubline.apps.cli.main", *map(str, argv)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)
    return Outcome(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def render(video: str, audio: str = "dub", span: str = "0-10", out: str = "patch.mov", *more: str):
    """argv of ``render``: corpus file names (or literal paths), special names (``SPECIAL_PATHS``)
    and the output, relative to the case's own directory."""
    def build(corpus: Corpus, here: Path) -> list[str | Path]:
        return ["render", "--video", video, "--audio", audio, "--range", span, "--out", out, *more]
    return build


def _case_dir(corpus: Corpus, case: Case) -> Path:
    here = corpus.work / case.name
    here.mkdir()
    if case.prepare is not None:
        case.prepare(corpus, here)
    return here


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _check(case: Case, outcome: Outcome, corpus: Corpus, here: Path, before: dict[Path, str],
           before_here: list[str], media_listing: list[str]) -> None:
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.returncode == case.status, (outcome.returncode, outcome.stderr[-2000:])
    if case.status != 0:
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1, outcome.stderr
        for words in case.says:
            assert words in lines[0], (words, lines[0])
    expected = sorted(set(before_here) | set(case.outputs))
    assert _listing(here) == expected, (_listing(here), expected)  # no .part/.tmp/.probe, no half patch
    assert _listing(corpus.media) == media_listing
    assert {path: _sha(path) for path in before} == before  # every input byte-identical


def _inputs(corpus: Corpus) -> dict[Path, str]:
    return {p: _sha(p) for p in corpus.media.iterdir() if p.is_file()}


CASES = [
    # media that is not what it claims
    Case("truncated_half", render("truncated_half"), says=("truncated_half.mp4",)),
    Case("truncated_tail", render("truncated_tail", span="20-30"), says=("truncated_tail.mp4",)),
    Case("header_only", render("header_only"), says=("header_only.mp4",)),
    Case("empty_file", render("empty"), says=("empty.mp4",)),
    Case("random_bytes", render("random"), says=("random.mp4",)),
    Case("text_as_video", render("text"), says=("notes.mov",)),
    Case("directory_as_video", render("adir"), says=("a_directory.mov", "directory")),
    Case("missing_video", render("gone.mp4"), says=("gone.mp4", "does not exist")),
    Case("declared_16384", render("huge"), says=("huge_16384.mkv",)),
    Case("declared_12000", render("big"), says=("big_12000.mkv", "12000x12000", "8192")),
    Case("probe_declared_16384", lambda c, h: ["probe", c["huge"]], says=("huge_16384.mkv",)),
    Case("probe_declared_12000", lambda c, h: ["probe", c["big"]], says=("12000x12000",)),
    Case("probe_random", lambda c, h: ["probe", c["random"]], says=("random.mp4",)),
    Case("corrupt_video_packets", render("corrupt_video"), says=("corrupt_video.mp4",)),
    # wrong stream types
    Case("audio_as_video", render("dub"), says=("dub.wav", "video")),
    Case("still_image_as_video", render("still"), says=("still.png",)),
    Case("video_without_audio_as_dub", render("clip", "silent_video"), says=("silent.mp4", "audio")),
    Case("empty_dub", render("clip", "empty_dub"), says=("empty_dub.wav",)),
    Case("truncated_dub", render("clip", "truncated_dub"), says=("truncated_dub.wav",)),
    Case("random_dub", render("clip", "random_dub"), says=("random.wav",)),
    Case("missing_dub", render("clip", "gone.wav"), says=("gone.wav",)),
    Case("directory_as_dub", render("clip", "adir"), says=("a_directory.mov",)),
    Case("random_library_clip", render("clip", "dub", "0-10", "patch.mov", "--library", "random"), says=("random.mp4",)),
    # outputs that are inputs (with --overwrite: still refused)
    Case("out_is_video", render("clip", "dub", "0-10", "IN", "--overwrite"), says=("--out", "--video", "same file")),
    Case("out_is_hardlink_of_video", render("clip", "dub", "0-10", "HARD", "--codec", "h264", "--overwrite"),
         says=("--out", "same file")),
    Case("out_is_symlink_to_dub", render("clip", "dub", "0-10", "SYM", "--overwrite"), says=("--out", "--audio")),
    Case("matte_is_video", render("clip", "dub", "0-10", "patch.mov", "--matte", "clip", "--overwrite"), says=("--matte",)),
    Case("otio_is_dub", render("clip", "dub", "0-10", "patch.mov", "--otio", "dub", "--overwrite"), says=("--otio",)),
    Case("out_is_matte", render("clip", "dub", "0-10", "patch.mov", "--matte", "SELF"), says=("--out", "--matte")),
    Case("out_is_the_checkpoint", render("clip", "dub", "0-10", "CKPT", "--backend", "wav2lip", "--backend-option",
                                         "checkpoint=CKPT", "--overwrite"), says=("checkpoint", "same file")),
    Case("cache_is_the_video", render("clip"), says=("cache", "--video"),
         env=lambda c, h: {"DUBLINE_CACHE": str(c["clip"])}),
    Case("cache_is_a_file", render("clip"), says=("cache", "not a directory"),
         prepare=lambda c, h: (h / "cache_file").write_text("mine"), env=lambda c, h: {"DUBLINE_CACHE": str(h / "cache_file")}),
    Case("analyse_overlay_is_video", lambda c, h: ["analyse", "--video", c["clip"], "--overlay", c["clip"], "--overwrite"],
         says=("--overlay",)),
    Case("otio_out_is_timeline", lambda c, h: ["otio", "--timeline", c["timeline_junk"], "--clip", "1", "--audio", c["dub"],
                                               "--out", c["timeline_junk"], "--overwrite"], says=("junk.otio",)),
    # outputs that cannot be written
    Case("out_directory_missing", render("clip", "dub", "0-10", "nowhere/patch.mov"), says=("nowhere",)),
    Case("out_exists", render("clip"), says=("patch.mov", "--overwrite"), prepare=lambda c, h: (h / "patch.mov").write_text("keep")),
    Case("out_is_a_directory", render("clip", "dub", "0-10", "adir.mov", "--overwrite"), says=("adir.mov", "directory"),
         prepare=lambda c, h: (h / "adir.mov").mkdir()),
    Case("out_under_proc", render("clip", "dub", "0-10", "/proc/dubline-corpus.mov"), says=("/proc/dubline-corpus.mov",)),
    Case("out_suffix_wrong_for_codec", render("clip", "dub", "0-10", "patch.mp4"), says=("--out", "prores")),
    Case("matte_suffix_wrong", render("clip", "dub", "0-10", "patch.mov", "--matte", "MATTE_MP4"), says=("--matte",)),
    # spans, offsets and options that make no sense
    Case("span_reversed", render("clip", span="20-10"), says=("20-10", "reversed")),
    Case("span_empty", render("clip", span="5-5"), says=("5-5", "empty")),
    Case("span_garbage", render("clip", span="abc"), says=("abc",)),
    Case("span_past_end", render("clip", span="0-999"), says=("999",)),
    Case("span_bad_timecode", render("clip", span="00:00:99:00-00:01:00:00"), says=("00:00:99:00",)),
    Case("span_huge_number", render("clip", span="9" * 5000 + "-1"), says=("characters",)),
    Case("offset_garbage", render("clip", "dub", "0-10", "patch.mov", "--audio-offset", "soon"), says=("--audio-offset",)),
    Case("offset_exponent", render("clip", "dub", "0-10", "patch.mov", "--audio-offset", "1e999999999"), says=("--audio-offset",)),
    Case("offset_past_dub_end", render("clip", "dub", "0-10", "patch.mov", "--audio-offset", "999"), says=("--audio-offset", "past the end")),
    Case("speaker_garbage", render("clip", "dub", "0-10", "patch.mov", "--speaker", "left@q"), says=("--speaker",)),
    Case("backend_unknown", render("clip", "dub", "0-10", "patch.mov", "--backend", "magic"), says=("magic",)),
    Case("backend_option_malformed", render("clip", "dub", "0-10", "patch.mov", "--backend-option", "novalue"), says=("novalue",)),
    Case("wav2lip_without_weights", render("clip", "dub", "0-10", "patch.mov", "--backend", "wav2lip", "--backend-option",
                                           "device=cpu"), says=("wav2lip",)),
    Case("codec_unknown", render("clip", "dub", "0-10", "patch.mov", "--codec", "vp9"), says=("--codec", "vp9")),
    # success is right here: damaged source audio and a dub with NaN samples degrade with a warning
    Case("ok_plain", render("clip", "dub", "5-15"), status=0, outputs=("patch.mov",)),
    Case("ok_matte_and_timeline", render("clip", "dub48", "0-8", "patch.mov", "--matte", "MATTE", "--otio", "TIMELINE",
                                         "--codec", "prores"), status=0, outputs=("matte.mov", "patch.mov", "timeline.otio")),
    Case("ok_damaged_source_audio", render("corrupt_audio", "dub", "0-10"), status=0, outputs=("patch.mov",)),
    Case("ok_nan_dub", render("clip", "nan_dub", "0-10"), status=0, outputs=("patch.mov",)),
    Case("ok_probe", lambda c, h: ["probe", c["clip"]], status=0),
]
SPECIAL_PATHS = {"IN": lambda c, h: c["clip"], "HARD": lambda c, h: c.media / "hardlink.mp4",
                 "SYM": lambda c, h: c.media / "symlink.wav", "CKPT": lambda c, h: c["checkpoint"],
                 "SELF": lambda c, h: h / "patch.mov", "MATTE_MP4": lambda c, h: h / "matte.mp4",
                 "MATTE": lambda c, h: h / "matte.mov", "TIMELINE": lambda c, h: h / "timeline.otio"}


def _argv(case: Case, corpus: Corpus, here: Path) -> list[str | Path]:
    """Names -> paths: corpus files, special paths, ``checkpoint=NAME``; other words stay."""
    def path_of(word: str) -> str | Path:
        if word in SPECIAL_PATHS:
            return SPECIAL_PATHS[word](corpus, here)
        return corpus.files.get(word, word)

    argv: list[str | Path] = []
    previous = ""
    for arg in case.args(corpus, here):
        if isinstance(arg, str) and arg.startswith("checkpoint="):
            arg = f"checkpoint={path_of(arg.removeprefix('checkpoint='))}"
        elif isinstance(arg, str) and previous in ("--video", "--audio", "--matte", "--otio", "--library"):
            arg = path_of(arg)
        elif isinstance(arg, str) and previous == "--out":
            arg = path_of(arg) if arg in SPECIAL_PATHS else (arg if os.path.isabs(arg) else here / arg)
        argv.append(arg)
        previous = str(arg)
    return argv


@pytest.fixture(scope="module")
def outcomes(corpus: Corpus) -> dict[str, tuple[Outcome, Path, dict, list, list]]:
    """Every case of CASES run once: the warm-up first (it fills the analysis cache the later
    successful renders read), the rest a few at a time."""
    results: dict[str, tuple[Outcome, Path, dict, list, list]] = {}
    media_listing = _listing(corpus.media)

    def run(case: Case) -> None:
        here = _case_dir(corpus, case)
        before, before_here = _inputs(corpus), _listing(here)
        env = _environment(corpus, case.env(corpus, here) if case.env else None)
        results[case.name] = (_run(_argv(case, corpus, here), env, here), here, before, before_here, media_listing)

    warm_up = next(c for c in CASES if c.name == "ok_plain")
    rest = [c for c in CASES if c is not warm_up]
    run(warm_up)
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(run, rest))
    return results


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) + len(SIGNAL_CASES) + 3 >= 40  # + the tmpfs cases below


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case: Case, corpus: Corpus, outcomes) -> None:
    outcome, here, before, before_here, media_listing = outcomes[case.name]
    _check(case, outcome, corpus, here, before, before_here, media_listing)
    if case.name.startswith("ok_damaged"):
        assert "could not be decoded and count as silence" in outcome.stdout
    if case.name == "ok_nan_dub":
        assert "NaN or infinite" in outcome.stdout


# -- signals in the middle of encoding ---------------------------------------------------------------------

SIGNAL_CASES = [("SIGTERM", signal.SIGTERM), ("SIGHUP", signal.SIGHUP), ("SIGINT", signal.SIGINT)]


@pytest.mark.parametrize("name,signum", SIGNAL_CASES)
def test_a_signal_mid_encode_leaves_nothing(name: str, signum: int, corpus: Corpus, outcomes) -> None:
    here = corpus.work / f"signal_{name}"
    here.mkdir()
    before = _inputs(corpus)
    out = here / "patch.mov"
    process = subprocess.Popen(
        [sys.executable, "-m", "dubline.apps.cli.main", "render", "--video", str(corpus["clip"]), "--audio",
         str(corpus["dub"]), "--range", f"0-{CLIP_FRAMES}", "--out", str(out), "--matte", str(here / "matte.mov")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(corpus),
    )
    # Mid-encode: the patch's temporary file exists (the cache is warm, so this comes quickly).
    deadline = time.monotonic() + 240
    while not any(p.name.endswith(".part.mov") for p in here.iterdir()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the render never started encoding"
        time.sleep(0.005)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, (process.returncode, stderr)
    assert stderr.strip().splitlines() == [f"dubline render: interrupted ({name})"], stderr
    assert _listing(here) == []  # neither the patch, the matte nor any temporary file
    assert _inputs(corpus) == before


# -- read-only and full targets (a small tmpfs; needs root) ---------------------------------------------

@pytest.fixture()
def tmpfs(tmp_path: Path):
    """Mount a tmpfs: ``mount(options)`` -> its directory; unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        target = tmp_path / f"fs{len(mounted)}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], check=False)


@pytest.mark.parametrize("flag", ["--out", "--matte"])
def test_a_read_only_target_is_one_line(flag: str, corpus: Corpus, outcomes, tmpfs) -> None:
    target = tmpfs("size=1m,ro")
    before = _inputs(corpus)
    other = corpus.work / f"ro_{flag.strip('-')}"
    other.mkdir()
    outputs = {"--out": target / "patch.mov", "--matte": other / "patch.mov"}
    argv = ["render", "--video", corpus["clip"], "--audio", corpus["dub"], "--range", "0-10", "--out", outputs["--out"]]
    if flag == "--matte":
        argv += ["--matte", target / "matte.mov"]
    outcome = _run(argv, _environment(corpus), corpus.work)
    assert outcome.returncode == 2 and "Traceback" not in outcome.stderr, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only file system" in lines[0] and str(target) in lines[0], lines
    assert _listing(target) == [] and _listing(other) == []
    assert _inputs(corpus) == before


def test_a_full_disk_is_one_line_naming_the_patch(corpus: Corpus, outcomes, tmpfs) -> None:
    target = tmpfs("size=64k")
    before = _inputs(corpus)
    out = target / "patch.mov"
    outcome = _run(["render", "--video", corpus["clip"], "--audio", corpus["dub"], "--range", "0-10", "--out", out],
                   _environment(corpus), corpus.work)
    assert outcome.returncode == 2 and "Traceback" not in outcome.stderr, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot write {out}" in lines[0] and "full" in lines[0], lines
    assert _listing(target) == []  # the partial patch was removed
    assert _inputs(corpus) == before

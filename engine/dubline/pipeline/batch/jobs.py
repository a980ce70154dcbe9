"""Shot jobs: one span job per shot, and the plain job list (JSON or CSV) pipelines hand a batch.

A ``ShotJob`` holds what ``dubline render`` would be told, as plain values (paths, text, exact
seconds) so it travels to a worker on another machine by pickling; the worker builds the
``RenderRequest`` from it. A job that could not be planned carries its ``problem`` and fails
without rendering, so one bad row or clip never stops the rest of the reel.

Job list, JSON: a list of objects, or ``{"defaults": {...}, "jobs": [...]}``. CSV: a header row
naming the same fields. Fields: ``video``, ``audio``, ``range``, ``out`` (required), ``id``,
``backend``, ``codec``, ``audio_offset`` (seconds), ``speaker``, ``expression``,
``length_policy``, ``with_audio``, ``matte``, ``library`` (CSV: ``;``-separated),
``backend_options`` (JSON: an object; CSV: ``KEY=VALUE;KEY=VALUE``). Relative paths are relative
to the list's folder.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from dubline.core import timing
from dubline.core.errors import DublineError, InvalidInputError
from dubline.pipeline.request import CLI_LABELS, RenderRequest
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND

REQUIRED_FIELDS = ("video", "audio", "range", "out")
OPTIONAL_FIELDS = ("id", "backend", "codec", "audio_offset", "speaker", "expression", "length_policy", "with_audio",
                   "matte", "library", "backend_options")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class JobDefaults:
    """What every shot gets unless its row (or clip) says otherwise: the command line's render options."""

    backend: str = DEFAULT_BACKEND
    codec: str = media.DEFAULT_PATCH_CODEC
    expression: str = "as-source"
    length_policy: str = "pad_or_trim"
    with_audio: bool = False
    backend_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ShotJob:
    """One shot to render. ``span`` is in ``dubline render --range`` syntax on the video file."""

    id: str  # unique in the batch, safe as a file name (contact sheets are named by it)
    label: str  # where the shot comes from, for people: a clip and its record time, or a list row
    video: Path
    audio: Path
    span: str
    out: Path
    backend: str = DEFAULT_BACKEND
    codec: str = media.DEFAULT_PATCH_CODEC
    audio_offset: Fraction = Fraction(0)  # seconds of the dub that play at the span's first frame
    speaker: str | None = None  # X,Y@FRAME / X0,Y0,X1,Y1@FRAME on file frames, or an image path
    expression: str = "as-source"
    length_policy: str = "pad_or_trim"
    with_audio: bool = False
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    matte: Path | None = None
    library: tuple[Path, ...] = ()
    problem: str | None = None  # why it cannot be rendered (found while planning)

    def labels(self) -> dict[str, str]:
        """Field names as a message about this shot shows them (``shot_004 --range``)."""
        return {name: f"{self.id} {label}" for name, label in CLI_LABELS.items()}

    def request(self, overwrite: bool = False, library: Iterable[Path] = ()) -> RenderRequest:
        """The render of this shot (``library``: more footage of the same person from other shots)."""
        extra = tuple(p for p in library if p not in self.library)
        return RenderRequest.from_text(
            video=self.video, audio=self.audio, span=self.span, out=self.out,
            audio_offset=timing.seconds_time(self.audio_offset), speaker=self.speaker or None,
            backend_options=dict(self.backend_options), library=self.library + extra, matte=self.matte,
            labels=self.labels(), backend=self.backend, codec=self.codec, expression=self.expression,
            length_policy=self.length_policy, overwrite=overwrite, with_audio=self.with_audio,
        )

    def inputs(self) -> dict[str, Path]:
        """Every file a worker must read for this shot, by what it is."""
        files = {"video": self.video, "audio": self.audio}
        files.update({f"library[{i}]": p for i, p in enumerate(self.library)})
        if self.speaker and "@" not in self.speaker:
            files["speaker image"] = Path(self.speaker)
        return files

    def outputs(self) -> list[Path]:
        return [p for p in (self.out, self.matte) if p is not None]

    def failed(self, problem: str) -> ShotJob:
        return replace(self, problem=problem)


def safe_id(text: str) -> str:
    return _UNSAFE_ID.sub("_", text).strip("._") or "shot"


def check_jobs(jobs: list[ShotJob]) -> list[ShotJob]:
    """Each job validated as a RenderRequest (codec, backend, outputs not inputs, ...) and outputs
    unique across the batch: a job that fails gets its ``problem``; the others are unchanged."""
    checked: list[ShotJob] = []
    claimed: dict[Path, str] = {}
    for job in jobs:
        if job.problem is None:
            try:
                job.request()
            except DublineError as error:
                job = job.failed(str(error))
        if job.problem is None:
            for output in job.outputs():
                key = output.resolve()
                if key in claimed:
                    job = job.failed(f"{job.id} writes {output}, which {claimed[key]} writes too; give each shot its own out")
                    break
            else:
                claimed.update({output.resolve(): job.id for output in job.outputs()})
        checked.append(job)
    return checked


# -------------------------------------------------------------------------------------- job lists


def read_job_list(path: Path, defaults: JobDefaults = JobDefaults()) -> list[ShotJob]:
    """The jobs of a JSON or CSV job list. A list that cannot be read at all raises
    ``InvalidInputError``; a row with a bad field becomes a job with its ``problem``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"--jobs {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows, list_defaults = _json_rows(path)
    elif suffix == ".csv":
        rows, list_defaults = _csv_rows(path), {}
    else:
        raise InvalidInputError(f"--jobs {path.name}: a job list is a .json or .csv file")
    jobs = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        job_id = safe_id(str(row.get("id") or f"shot_{number:03d}"))
        while job_id in seen:
            job_id += "_"
        seen.add(job_id)
        jobs.append(_job_from_row(job_id, number, {**list_defaults, **row}, path.parent, defaults))
    if not jobs:
        raise InvalidInputError(f"--jobs {path.name} holds no jobs")
    return check_jobs(jobs)


def _json_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"--jobs {path.name} is not valid JSON: {error}") from None
    list_defaults: dict[str, Any] = {}
    if isinstance(data, dict):
        list_defaults = data.get("defaults") or {}
        data = data.get("jobs")
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data) or not isinstance(list_defaults, dict):
        raise InvalidInputError(f"--jobs {path.name}: give a list of job objects, or {{\"defaults\": {{}}, \"jobs\": [...]}}")
    return data, list_defaults


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise InvalidInputError(f"--jobs {path.name} is empty")
        rows = []
        for row in reader:
            extra = row.pop(None, None)  # cells beyond the header
            if extra and any(cell.strip() for cell in extra):
                row["__extra__"] = extra
            rows.append({k.strip(): v.strip() for k, v in row.items() if k is not None and v is not None and v.strip()})
        return rows


def _job_from_row(job_id: str, number: int, row: dict[str, Any], base: Path, defaults: JobDefaults) -> ShotJob:
    where = f"row {number} ({job_id})"
    placeholder = ShotJob(job_id, where, Path(), Path(), "", Path())
    unknown = sorted(set(row) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        return placeholder.failed(f"{where}: unknown field {', '.join(map(str, unknown))} (fields: "
                                  f"{', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)})")
    missing = [name for name in REQUIRED_FIELDS if not str(row.get(name) or "").strip()]
    if missing:
        return placeholder.failed(f"{where}: no {', '.join(missing)}")
    try:
        options = row.get("backend_options", defaults.backend_options)
        if isinstance(options, str):
            options = _text_options(options, where)
        if not isinstance(options, Mapping):
            raise InvalidInputError(f"{where}: backend_options must be an object or KEY=VALUE;KEY=VALUE")
        library = row.get("library") or ()
        if isinstance(library, str):
            library = [p for p in library.split(";") if p.strip()]
        offset = timing.seconds_of(timing.parse_seconds(str(row.get("audio_offset", "0")), f"{where} audio_offset"))
        matte = row.get("matte")
        speaker = str(row["speaker"]) if row.get("speaker") else None
        if speaker and "@" not in speaker:
            speaker = str(_path(speaker, base))
        return ShotJob(
            id=job_id, label=f"row {number}", video=_path(row["video"], base), audio=_path(row["audio"], base),
            span=str(row["range"]), out=_path(row["out"], base), backend=str(row.get("backend") or defaults.backend),
            codec=str(row.get("codec") or defaults.codec), audio_offset=offset, speaker=speaker,
            expression=str(row.get("expression") or defaults.expression),
            length_policy=str(row.get("length_policy") or defaults.length_policy),
            with_audio=_flag(row.get("with_audio", defaults.with_audio), where), backend_options=dict(options),
            matte=_path(matte, base) if matte else None, library=tuple(_path(p, base) for p in library),
        )
    except DublineError as error:
        return placeholder.failed(str(error))


def _path(value: Any, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base / path).absolute()


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y"):
        return True
    if text in ("", "0", "false", "no", "n"):
        return False
    raise InvalidInputError(f"{where}: with_audio {value!r} is not true or false")


def _text_options(text: str, where: str) -> dict[str, str]:
    options = {}
    for pair in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"{where}: backend option {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options

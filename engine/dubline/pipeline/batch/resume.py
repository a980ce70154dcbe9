"""The resume rule: a shot is rendered again only when its inputs or parameters changed, or it
did not finish.

Beside each patch a sidecar ``<out>.dubline.json`` records the shot's key (a hash of the content
fingerprints of every input file and of every parameter that changes pixels) and what the render
returned. A shot is *finished* when its sidecar says ``done`` with the current key and the patch
on disk is the file the sidecar describes (same size and modification time). Before rendering the
sidecar is written ``rendering``: a patch that has a sidecar in any state was written by a batch
and may be replaced by the next one; a file at the output name without one is the user's and is
never replaced without ``--overwrite``.

A worker killed mid-shot leaves at most the writer's temporary files (``.<stem>.<hex>.part<suffix>``
beside the output, never the output name itself); ``remove_partials`` clears them before a retry
and after a failure, so only finished shots are left.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from dubline import __version__
from dubline.core.paths import publish_file
from dubline.pipeline.batch.jobs import ShotJob
from dubline.stages import media

SIDECAR_SUFFIX = ".dubline.json"
RENDERING, DONE = "rendering", "done"


def sidecar_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + SIDECAR_SUFFIX)


def shot_key(job: ShotJob, library: tuple[Path, ...] = ()) -> str:
    """A hash of what makes the shot's pixels: input contents (media fingerprints: size, sampled
    blocks, stream layout) and every render parameter, the dubline version included."""
    inputs = {what: _fingerprint(what, path) for what, path in job.inputs().items()}
    inputs.update({f"shared library[{i}]": _fingerprint("library", p) for i, p in enumerate(library)})
    parameters = {
        "version": __version__, "span": job.span, "backend": job.backend, "codec": job.codec,
        "audio_offset": str(job.audio_offset), "speaker": job.speaker if job.speaker and "@" in job.speaker else None,
        "expression": job.expression, "length_policy": job.length_policy, "with_audio": job.with_audio,
        "backend_options": {str(k): str(v) for k, v in sorted(job.backend_options.items())},
        "matte": job.matte is not None,
    }
    text = json.dumps({"inputs": inputs, "parameters": parameters}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _fingerprint(what: str, path: Path) -> str:
    if what == "speaker image":  # a picture, not media: small enough to hash whole
        return hashlib.blake2b(Path(path).read_bytes(), digest_size=20).hexdigest()
    return media.media_fingerprint(path)


def read_sidecar(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar_path(out).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stat(path: Path) -> list[int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


def finished(job: ShotJob, key: str) -> dict[str, Any] | None:
    """The recorded outcome when ``job`` already rendered with ``key`` and its outputs are still
    the files that render wrote; None when it must be rendered (again)."""
    record = read_sidecar(job.out)
    if not record or record.get("state") != DONE or record.get("key") != key:
        return None
    recorded = record.get("files", {})
    for output in job.outputs():
        if _stat(output) is None or _stat(output) != recorded.get(output.name):
            return None
    return record


def owned(out: Path) -> bool:
    """``out`` was written by a batch (it has a sidecar), so a batch may replace it."""
    return sidecar_path(out).exists()


def _publish(job: ShotJob, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=1, default=str)
    publish_file(sidecar_path(job.out), lambda temporary: temporary.write_text(text), overwrite=True,
                 inputs=job.inputs())


def claim(job: ShotJob, key: str) -> None:
    """Mark the shot as being rendered (written before the render touches the output name)."""
    _publish(job, {"state": RENDERING, "key": key, "shot": job.id})


def record_done(job: ShotJob, key: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """Record the finished render: the key, the outputs' size and time, and ``outcome``."""
    record = {"state": DONE, "key": key, "shot": job.id,
              "files": {output.name: _stat(output) for output in job.outputs()}, **outcome}
    _publish(job, record)
    return record


def release(job: ShotJob) -> None:
    """After a failed or cancelled render: drop the claim when no output of a batch is left to
    own (a patch a previous run finished stays owned, and is rendered again next time)."""
    if not job.out.exists():
        sidecar_path(job.out).unlink(missing_ok=True)


def remove_partials(job: ShotJob) -> list[Path]:
    """Remove temporary files a killed writer left beside the shot's outputs; returns them."""
    removed = []
    for output in job.outputs() + [sidecar_path(job.out)]:
        # Exactly the writers' names (8 characters between stem and .part), so another shot's
        # temporary file (``shot.x.mov`` beside ``shot.mov``) is never touched.
        pattern = re.compile(rf"\.{re.escape(output.stem)}\.[A-Za-z0-9_]{{8}}\.part{re.escape(output.suffix)}")
        if not output.parent.is_dir():
            continue
        for leftover in output.parent.iterdir():
            if pattern.fullmatch(leftover.name):
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
    return removed

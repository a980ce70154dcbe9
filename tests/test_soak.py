"""The engine soak benchmark in its short mode (3 clients x 3 renders, a cancel, a killed client,
a stalled frame-socket connection): no failure that is not a cancellation, no file left behind,
the engine still SERVING. The full soak and its figures: benchmarks/soak_engine.py, docs/RELIABILITY.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Real renders through a real engine on ../shared/media: the slow tier.
pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[1]


def test_short_soak(shared_media: Path) -> None:
    result = subprocess.run([sys.executable, str(REPOSITORY / "benchmarks" / "soak_engine.py"), "--short", "--json",
                             "--media", str(shared_media)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["failed"] == 0 and figures["failures"] == [], figures
    assert figures["files_left"] == [], figures
    assert figures["serving_at_end"]
    assert figures["completed"] >= 1 and figures["cancelled"] + figures["killed"] >= 1, figures
    assert figures["completed"] + figures["cancelled"] + figures["killed"] == figures["clients"] * figures["renders"]

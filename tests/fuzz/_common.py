"""Shared set-up of the atheris harnesses: the checkout's packages on the path, and the invariant.

Each harness is run as ``python tests/fuzz/fuzz_X.py -max_total_time=N`` (libFuzzer flags; add
``-timeout=S`` to change how long one input may take before it counts as a hang, default 10 s).
The invariant of every harness: for any input the code under test returns, or raises one of the
project's own errors (``DublineError``); any other exception, a crash or a hang is a finding.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for package_dir in (ROOT / "engine", ROOT / "plugin"):
    if str(package_dir) not in sys.path:
        sys.path.insert(0, str(package_dir))


def default_flags(argv: list[str]) -> list[str]:
    """libFuzzer flags with a per-input hang limit unless one was given."""
    if not any(arg.startswith("-timeout=") for arg in argv[1:]):
        argv = [*argv, "-timeout=10"]
    return argv

"""Fuzz the editor's span and time syntax: ``parse_range``, ``parse_timecode``,
``timecode_to_frames``, ``parse_rate``, ``parse_seconds``.

Invariant: any text either parses (a span with first >= 0 and a positive duration at the rate it
was given) or raises ``DublineError``; nothing else escapes and nothing hangs.
Run: ``python tests/fuzz/fuzz_timing.py -max_total_time=600``.
"""

from __future__ import annotations

import sys
from fractions import Fraction

import _common  # noqa: F401  (sys.path)
import atheris

with atheris.instrument_imports(include=["dubline"]):
    from dubline.core import timing
    from dubline.core.errors import DublineError

RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(50),
         Fraction(60000, 1001), Fraction(60)]


def check(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    rate = RATES[provider.ConsumeIntInRange(0, len(RATES) - 1)]
    start_tc = provider.ConsumeUnicodeNoSurrogates(16) if provider.ConsumeBool() else None
    text = provider.ConsumeUnicodeNoSurrogates(64)
    try:
        span = timing.parse_range(text, rate, start_tc)
    except DublineError:
        pass
    else:
        first, end = timing.range_to_frames(span, rate)
        assert 0 <= first < end, (text, start_tc, first, end)
    for call in (lambda: timing.parse_timecode(text), lambda: timing.timecode_to_frames(text, rate),
                 lambda: timing.parse_rate(text), lambda: timing.parse_seconds(text, "--audio-offset")):
        try:
            call()
        except DublineError:
            pass


if __name__ == "__main__":
    atheris.Setup(_common.default_flags(sys.argv), check)
    atheris.Fuzz()

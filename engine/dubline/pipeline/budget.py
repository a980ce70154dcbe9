"""Which frames of a source a render analyses: the span, a window around it, and a sampled library.

A render needs the speaker's face on the span's frames, and a mouth library and speaker calibration
from the rest of the source. Analysing every frame of a 30-minute take before rendering one second
of it is what made first renders slow, so a render analyses, by default:

- the span plus ``window`` on each side (context for tracking and smoothing, and nearby mouths);
- ``library`` worth of frames from the rest of the file, as runs of ``run`` consecutive frames at
  evenly spread points (runs, not single frames, so selection still has real motion between
  frames; spread, so the library sees the whole take's range of mouths, poses and light);

and everything that an earlier render, ``dubline analyse --whole-file`` or the engine's idle
extension has already analysed (the per-frame results are cached). The calibration is fitted on the
same frames. A budget of ``all`` analyses every frame (the behaviour before span-proportional
analysis).

Frames are analysed in blocks of the face stage's ``detect_every`` frames, each starting at a
detection anchor, so a block's results do not depend on what was analysed before it. Library runs
start at the first anchor after a keyframe where the file says where its keyframes are, so reading
a run decodes less than a block of frames it then throws away.

Amounts are seconds (``Fraction``; text ``6s``) or frames (``int``; text ``150``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from dubline.core.errors import InvalidInputError

Amount = int | Fraction
#: Maps frame indices to the keyframe index a read of each would start from.
KeyframeLookup = Callable[[Sequence[int]], list[int]]


def parse_amount(text: str, name: str) -> Amount:
    """``6s`` / ``2.5s`` (seconds) or ``150`` (frames)."""
    value = text.strip().lower()
    try:
        amount: Amount = Fraction(value[:-1]) if value.endswith("s") else int(value)
    except (ValueError, ZeroDivisionError):
        raise InvalidInputError(f"{name} {text!r}: give seconds (6s) or a frame count (150)") from None
    if amount < 0:
        raise InvalidInputError(f"{name} {text!r} is negative")
    return amount


def amount_frames(amount: Amount, rate: Fraction) -> int:
    """An amount in frames at ``rate`` (seconds rounded up to whole frames)."""
    if isinstance(amount, int):
        return amount
    return math.ceil(amount * rate)


@dataclass(frozen=True)
class AnalysisBudget:
    """How much of a source a render analyses before it starts (see the module docstring)."""

    library: Amount = Fraction(6)
    window: Amount = Fraction(1)
    run: Amount = Fraction(1)
    whole_file: bool = False

    def __post_init__(self) -> None:
        for name in ("library", "window", "run"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"analysis budget {name} must not be negative, got {getattr(self, name)}")

    @classmethod
    def parse(cls, text: str) -> AnalysisBudget:
        """``all`` (every frame), or the library size (``6s``, ``150``), optionally followed by
        ``,window=1s`` and ``,run=1s``."""
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise InvalidInputError("analysis budget is empty: give 'all' or a library size such as 6s")
        if parts[0].lower() == "all":
            if len(parts) > 1:
                raise InvalidInputError(f"analysis budget {text!r}: 'all' takes no other settings")
            return WHOLE_FILE
        fields: dict[str, Amount] = {"library": parse_amount(parts[0], "analysis budget library")}
        for part in parts[1:]:
            name, _, value = part.partition("=")
            if name not in ("window", "run") or not value:
                raise InvalidInputError(f"analysis budget {text!r}: {part!r} is not window=AMOUNT or run=AMOUNT")
            fields[name] = parse_amount(value, f"analysis budget {name}")
        return cls(**fields)

    def describe(self) -> str:
        if self.whole_file:
            return "all"
        text = lambda a: f"{float(a):g}s" if isinstance(a, Fraction) else str(a)  # noqa: E731
        return f"{text(self.library)},window={text(self.window)},run={text(self.run)}"


#: Every frame of the file.
WHOLE_FILE = AnalysisBudget(whole_file=True)
#: The span and its window only (no library): for measuring a span, e.g. quality checks.
SPAN_ONLY = AnalysisBudget(library=0)


@dataclass(frozen=True)
class AnalysisPlan:
    """The blocks of ``block`` frames a render analyses, in a file of ``frame_count`` frames."""

    frame_count: int
    block: int
    span_blocks: tuple[int, ...]
    library_blocks: tuple[int, ...]
    blocks: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(sorted(set(self.span_blocks) | set(self.library_blocks))))

    @property
    def block_count(self) -> int:
        return -(-self.frame_count // self.block)

    def block_range(self, block: int) -> tuple[int, int]:
        """Frames [first, end) of one block."""
        return block * self.block, min((block + 1) * self.block, self.frame_count)

    def frame_count_planned(self) -> int:
        return sum(end - first for first, end in map(self.block_range, self.blocks))


def block_runs(blocks: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted blocks as [first, end) runs of consecutive block numbers."""
    runs: list[tuple[int, int]] = []
    for block in sorted(set(blocks)):
        if runs and runs[-1][1] == block:
            runs[-1] = (runs[-1][0], block + 1)
        else:
            runs.append((block, block + 1))
    return runs


def _span_blocks(span: tuple[int, int] | None, window: int, block: int, total: int) -> list[int]:
    if span is None:
        return []
    first, end = span
    lo = max(0, first - window) // block
    hi = min(total * block, end + window) - 1
    return list(range(lo, max(lo, hi // block) + 1))


def _take_run(start: int, length: int, taken: set[int], total: int) -> list[int]:
    """``length`` free blocks from ``start`` forward (then backward when the file ends)."""
    run: list[int] = []
    block = start
    while len(run) < length and block < total:
        if block not in taken:
            run.append(block)
        block += 1
    block = start - 1
    while len(run) < length and block >= 0:
        if block not in taken:
            run.append(block)
        block -= 1
    return sorted(run)


def plan_analysis(
    frame_count: int,
    rate: Fraction,
    block: int,
    span: tuple[int, int] | None,
    budget: AnalysisBudget,
    keyframes: KeyframeLookup | None = None,
) -> AnalysisPlan:
    """The blocks to analyse for a render of frames [first, end) of a file (``span`` None: the
    library alone). Library runs sit at the same places whatever the span (they only step aside
    for it), so renders of different spans share them."""
    if frame_count <= 0 or block <= 0:
        raise InvalidInputError(f"cannot plan the analysis of {frame_count} frames in blocks of {block}")
    total = -(-frame_count // block)
    if budget.whole_file:
        return AnalysisPlan(frame_count, block, (), tuple(range(total)))
    span_blocks = _span_blocks(span, amount_frames(budget.window, rate), block, total)
    taken = set(span_blocks)
    wanted = -(-amount_frames(budget.library, rate) // block)
    free = total - len(taken)
    if wanted >= free:
        return AnalysisPlan(frame_count, block, tuple(span_blocks), tuple(b for b in range(total) if b not in taken))
    run_length = max(1, round(amount_frames(budget.run, rate) / block))
    count = -(-wanted // run_length) if wanted else 0
    starts = [max(0, round((i + 0.5) * total / count - run_length / 2)) for i in range(count)]
    if keyframes is not None and starts:
        # The first anchor at or after the keyframe a read of the run would start from.
        starts = [min(start, -(-key // block)) for start, key in zip(starts, keyframes([s * block for s in starts]))]
    library: list[int] = []
    for start in starts:
        run = _take_run(start, min(run_length, wanted - len(library)), taken, total)
        taken.update(run)
        library.extend(run)
    return AnalysisPlan(frame_count, block, tuple(span_blocks), tuple(sorted(library)))

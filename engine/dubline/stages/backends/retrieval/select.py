"""Frame selection for the ``retrieval`` backend: which real mouth from the speaker's own footage
to show on each output frame.

A Viterbi pass over library frames per output frame, in the spirit of Video Rewrite and the frame
selection of "Everybody's Talkin'": the unary cost scores how well library frame j's mouth matches
the target mouth state of output frame t (aperture, width, closure) and how close its head pose and
lighting are to the target frame's; the transition cost prefers runs of consecutive library frames
(real motion between real frames) over holds and jumps. Reuse of one frame within a short window
is then capped by a pass that replaces over-used choices with the next best continuation (a
mouth image recurring again and again reads as a loop).

Following and holding cost a constant; a jump costs a constant plus how far the new mouth's shape
is from where the cut-from run was going (its next frame's lip landmarks in the canonical face): a
cut between similar mouths is a small step, a cut between different ones a visible jump (on the
shared clips, half of the output's frame-to-frame change came from cuts). Jumps are searched from
the ``jump_beam`` cheapest previous frames only, so one step costs O(beam x N) rather than O(N²):
a library of a 10-minute source is still cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Differences that cost 1 (before weights): ~3 degrees of roll, a yaw proxy step of 0.06, 6 %
#: of scale; 12 luma levels.
POSE_SCALE = (0.05, 0.06, 0.06)
LUMA_SCALE = 12.0

#: Selection index meaning "keep the target frame's own mouth" (silence with a resting mouth).
KEEP_OWN = -1
#: ``pinned`` value of an output frame chosen afresh; and the cost added to every other choice
#: of a pinned frame (far above any real path's cost, finite so sums stay ordered).
UNPINNED = -3
PINNED_ELSEWHERE = 1e9


@dataclass(frozen=True)
class LibraryFeatures:
    """Per library frame (N of them): what selection compares. Pose is (roll rad, yaw proxy, log scale)."""

    aperture: np.ndarray  # (N,) inner-lip aperture / inter-ocular distance
    width: np.ndarray  # (N,) mouth width / inter-ocular distance
    pose: np.ndarray  # (N, 3)
    luma: np.ndarray  # (N,) mean luma of the lower face, 0..255
    consecutive: np.ndarray  # (N,) bool: frame j directly follows frame j-1 in the same source
    lips: np.ndarray | None = None  # (N, D) mouth shape (lip landmarks in the canonical face), optional

    def __post_init__(self) -> None:
        n = len(self.aperture)
        for name in ("width", "pose", "luma", "consecutive") + (("lips",) if self.lips is not None else ()):
            if len(getattr(self, name)) != n:
                raise ValueError(f"library feature {name!r} has {len(getattr(self, name))} rows, expected {n}")


@dataclass(frozen=True)
class SelectionTargets:
    """Per output frame (T of them): the wanted mouth and the frame it goes onto."""

    aperture: np.ndarray  # (T,) calibrated target aperture (speaker's own scale)
    width: np.ndarray  # (T,) calibrated target width
    closure: np.ndarray  # (T,) 0..1, lips should be sealed (P, B, M, silence)
    voiced: np.ndarray  # (T,) 0..1 voice activity of the dub
    pose: np.ndarray  # (T, 3) pose of the target frame
    luma: np.ndarray  # (T,) lower-face luma of the target frame
    own_aperture: np.ndarray  # (T,) the target frame's own aperture (NaN where no face)


@dataclass(frozen=True)
class SelectionParams:
    shape_weight: float = 12.0
    width_weight: float = 1.0
    closure_weight: float = 6.0
    pose_weight: float = 1.5
    light_weight: float = 0.5
    hold_cost: float = 0.4  # showing the same frame twice: a frozen mouth
    jump_cost: float = 2.0  # cutting to a non-adjacent frame
    #: per natural frame-to-frame step of lip motion between the cut-from run's next frame and the
    #: cut-to frame (0: every cut costs the same). With 2, hold 0.4, jump 2.0, reuse 8 in 50 and the
    #: transfer's two-frame transitions and steadied opening, the shared pairs cut 20-31 times in
    #: 122-125 frames instead of 46-68 and their flicker ratio fell 1.13-1.30 -> 0.97-1.13 (1: 0.98-1.16)
    #: at PAC -0.06..+0.01 against before (docs/ACCEPTANCE.md, issue 19)
    jump_shape_weight: float = 2.0
    jump_beam: int = 32  # jumps are considered from this many of the cheapest previous frames
    #: scale of the --expression bias against the shape and sync costs: at 3, smile moved the
    #: chosen mouths' width and corner lift for their opening by +0.15..+0.49 of half the speakers'
    #: own range on the shared pairs (neutral to within 0.1 of their median) with the chosen
    #: openings' correlation to the target unchanged (0.96..0.98)
    expression_weight: float = 3.0
    #: uses of one library frame allowed within reuse_window output frames (a mouth image recurring
    #: again and again reads as a loop; capped tighter, the pass that enforces it adds cuts)
    max_reuse: int = 8
    reuse_window: int = 50
    rest_aperture: float = 0.06  # at or below this the mouth counts as at rest / closed
    silence_threshold: float = 0.5  # voice activity below this is silence


#: Lip points (indices into 48..67) of the corners and of the lips' centre line.
_CORNERS, _CENTRE_LINE = (0, 6), (3, 9)


def corner_lift(lips: np.ndarray) -> np.ndarray:
    """(N,) how far the mouth corners sit above the lips' centre line, from (N, 40) lip landmarks
    in the canonical face (y down), in canonical units: a smile lifts the corners."""
    points = np.asarray(lips, np.float64).reshape(len(lips), 20, 2)
    return points[:, _CENTRE_LINE, 1].mean(axis=1) - points[:, _CORNERS, 1].mean(axis=1)


def _residual(values: np.ndarray, aperture: np.ndarray) -> np.ndarray:
    """``values`` less what the mouth's opening explains (a line fitted on aperture), in standard
    deviations: an open mouth is narrower and its corners lower whatever the expression."""
    if len(values) > 2 and np.std(aperture) > 1e-6:
        slope, intercept = np.polyfit(aperture, values, 1)
    else:
        slope, intercept = 0.0, float(np.mean(values))
    residual = values - (slope * aperture + intercept)
    return residual / max(float(np.std(residual)), 1e-6)


def expression_bias(
    width: np.ndarray, aperture: np.ndarray, expression: str, lips: np.ndarray | None = None, weight: float = 1.0
) -> np.ndarray:
    """Per-library-frame cost that biases selection toward an expression.

    The expression of a library frame is read from what its opening does not explain: the mouth's
    width and (given ``lips``) its corner lift. ``smile`` prefers mouths wider and with corners
    higher than usual for their opening; ``neutral`` prefers the speaker's usual width and lift for
    the opening (the median expression); ``as-source`` adds nothing (the width term already follows
    the target frame's own mouth). ``weight`` scales the bias against the shape and sync costs.
    """
    if expression == "as-source":
        return np.zeros_like(width)
    if expression not in ("smile", "neutral"):
        raise ValueError(f"unknown expression {expression!r}: use neutral, smile or as-source")
    signs = [_residual(width, aperture)]
    if lips is not None and len(lips) == len(width):
        signs.append(_residual(corner_lift(lips), aperture))
    if expression == "smile":
        return weight * np.clip(-np.mean(signs, axis=0), -2.0, 2.0)
    return weight * np.mean(np.abs(signs), axis=0)


def unary_costs(
    library: LibraryFeatures,
    targets: SelectionTargets,
    params: SelectionParams,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """(T, N) cost of showing library frame j on output frame t."""
    ap_scale = max(float(np.std(library.aperture)), 0.02)
    w_scale = max(float(np.std(library.width)), 0.02)
    # Pose and light use absolute scales: a static speaker's tiny pose jitter must not dominate.
    pose_scale = np.array(POSE_SCALE)
    luma_scale = LUMA_SCALE

    shape = ((library.aperture[None, :] - targets.aperture[:, None]) / ap_scale) ** 2
    width = ((library.width[None, :] - targets.width[:, None]) / w_scale) ** 2
    open_lips = np.clip((library.aperture - params.rest_aperture) / ap_scale, 0.0, None)
    closure = targets.closure[:, None] * open_lips[None, :] ** 2
    pose = (((library.pose[None, :, :] - targets.pose[:, None, :]) / pose_scale) ** 2).sum(axis=2)
    light = ((library.luma[None, :] - targets.luma[:, None]) / luma_scale) ** 2
    cost = (
        params.shape_weight * shape
        + params.width_weight * width
        + params.closure_weight * closure
        + params.pose_weight * pose
        + params.light_weight * light
    )
    if bias is not None:
        cost = cost + bias[None, :]
    return cost


@dataclass(frozen=True)
class JumpCosts:
    """What cutting from library frame a to frame b costs: ``base + weight * |shape[b] - shape[next(a)]|``,
    next(a) being the frame a's run would have shown next (a itself at the end of a run). ``shape``
    is in units of the library's typical natural frame-to-frame step."""

    base: float
    weight: float = 0.0
    shape: np.ndarray | None = None  # (N, D)
    next_frame: np.ndarray | None = None  # (N,)

    @staticmethod
    def build(library: LibraryFeatures, params: SelectionParams) -> "JumpCosts":
        if library.lips is None or params.jump_shape_weight <= 0 or len(library.lips) < 2:
            return JumpCosts(params.jump_cost)
        lips = np.asarray(library.lips, np.float64).reshape(len(library.lips), -1)
        lips = lips - lips.mean(axis=0)
        # A few principal components carry the mouth's shape and keep a step O(beam x N).
        _, _, components = np.linalg.svd(lips, full_matrices=False)
        shape = lips @ components[: min(8, len(components))].T
        steps = np.linalg.norm(np.diff(shape, axis=0), axis=1)[library.consecutive[1:]]
        step = float(np.median(steps)) if len(steps) else float(np.std(shape))
        shape = shape / max(step, 1e-6)
        indices = np.arange(len(shape))
        following = np.r_[library.consecutive[1:], False]
        return JumpCosts(params.jump_cost, params.jump_shape_weight, shape, np.where(following, indices + 1, indices))

    def from_frames(self, frames: np.ndarray) -> np.ndarray:
        """(len(frames), N): the cost of cutting from each of ``frames`` to every library frame."""
        if self.shape is None or self.next_frame is None:
            return np.full((len(frames), 0), self.base)
        heading = self.shape[self.next_frame[frames]]
        distance = np.sqrt(((self.shape[None, :, :] - heading[:, None, :]) ** 2).sum(axis=2))
        return self.base + self.weight * distance


def viterbi(
    unary: np.ndarray,
    consecutive: np.ndarray,
    hold_cost: float,
    jump_cost: float | JumpCosts,
    beam: int = 32,
) -> np.ndarray:
    """Minimum-cost path through (T, N) unary costs with follow / hold / jump transitions."""
    steps, n = unary.shape
    jumps = jump_cost if isinstance(jump_cost, JumpCosts) else JumpCosts(float(jump_cost))
    total = unary[0].copy()
    back = np.empty((steps, n), dtype=np.int64)
    back[0] = np.arange(n)
    indices = np.arange(n)
    for t in range(1, steps):
        if jumps.shape is None:
            # Every cut costs the same: jump from the overall best.
            jump_from = np.full(n, int(np.argmin(total)))
            jump = np.full(n, total[jump_from[0]] + jumps.base)
        else:
            cheapest = np.argpartition(total, min(beam, n) - 1)[: min(beam, n)]
            options = total[cheapest, None] + jumps.from_frames(cheapest)
            best = np.argmin(options, axis=0)
            jump_from, jump = cheapest[best], options[best, indices]
        # Hold on j; follow from j-1 where j-1 -> j is real footage.
        candidates = np.stack([jump, total + hold_cost, np.where(consecutive, np.roll(total, 1), np.inf)])
        choice = np.argmin(candidates, axis=0)
        back[t] = np.choose(choice, [jump_from, indices, indices - 1])
        total = candidates[choice, indices] + unary[t]
    path = np.empty(steps, dtype=np.int64)
    path[-1] = int(np.argmin(total))
    for t in range(steps - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def select_frames(
    library: LibraryFeatures,
    targets: SelectionTargets,
    params: SelectionParams = SelectionParams(),
    expression: str = "as-source",
    pinned: np.ndarray | None = None,
) -> np.ndarray:
    """Library row per output frame, or ``KEEP_OWN`` where the dub is silent and the target
    frame's own mouth is already at rest.

    ``pinned`` (T,) holds a previous render's choice per output frame to keep (a library row or
    ``KEEP_OWN``), or ``UNPINNED`` where the frame is chosen afresh: the path is forced through
    the kept choices, so the frames chosen afresh join them as any cut or run would."""
    if len(library.aperture) == 0:
        raise ValueError("the mouth library is empty: no usable face of the speaker in the source")
    bias = expression_bias(library.width, library.aperture, expression, library.lips, params.expression_weight)
    unary = unary_costs(library, targets, params, bias)
    if pinned is not None:
        forced = np.flatnonzero(pinned >= 0)
        kept = unary[forced, pinned[forced]]
        unary[forced] += PINNED_ELSEWHERE
        unary[forced, pinned[forced]] = kept
    consecutive = library.consecutive.copy()
    consecutive[0] = False
    jumps = JumpCosts.build(library, params)
    path = viterbi(unary, consecutive, params.hold_cost, jumps, params.jump_beam)
    path = cap_reuse(path, unary, consecutive, params, jumps)

    silent = targets.voiced < params.silence_threshold
    at_rest = np.nan_to_num(targets.own_aperture, nan=np.inf) <= params.rest_aperture
    selection = np.where(silent & at_rest, KEEP_OWN, path)
    if pinned is not None:
        selection = np.where(pinned != UNPINNED, pinned, selection)
    return selection


def cap_reuse(
    path: np.ndarray,
    unary: np.ndarray,
    consecutive: np.ndarray,
    params: SelectionParams,
    jumps: JumpCosts | None = None,
) -> np.ndarray:
    """Replace choices that would use one frame more than ``max_reuse`` times within
    ``reuse_window`` output frames by the cheapest continuation among frames still allowed."""
    n = unary.shape[1]
    cap = max(params.max_reuse, -(-params.reuse_window // n))  # a tiny library must still fill the window
    out = path.copy()
    for t in range(len(out)):
        recent = out[max(0, t - params.reuse_window) : t]
        if np.count_nonzero(recent == out[t]) < cap:
            continue
        uses = np.bincount(recent, minlength=n)
        transition = np.full(n, params.jump_cost)
        if t > 0:
            prev = out[t - 1]
            if jumps is not None and jumps.shape is not None:
                transition = jumps.from_frames(np.array([prev]))[0]
            transition[prev] = params.hold_cost
            if prev + 1 < n and consecutive[prev + 1]:
                transition[prev + 1] = 0.0
        cost = np.where(uses >= cap, np.inf, unary[t] + transition)
        out[t] = int(np.argmin(cost))
    return out

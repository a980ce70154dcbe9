"""The pipeline: a validated request in, stages composed, a patch out.

    request.RenderRequest   one render, parsed and validated once (every door builds it the same way)
    analysis                clip analyses and the providers that hand them to renders
    render.render           the span job: analyse, back end, composite, encode, timeline
    span.analyse_span       the analysis of just a span (``dubline analyse``)
    qc.run_qc               the quality numbers of a written patch
"""

from dubline.pipeline.analysis import (
    AnalysisProvider,
    DiskAnalyses,
    ResidentAnalyses,
    analyse_clip,
)
from dubline.pipeline.render import (
    RenderResult,
    render,
    resolve_span,
    span_start_timecode,
)
from dubline.pipeline.request import (
    CLI_LABELS,
    SPEC_LABELS,
    RenderRequest,
    parse_options,
)

__all__ = [
    "AnalysisProvider",
    "CLI_LABELS",
    "DiskAnalyses",
    "RenderRequest",
    "RenderResult",
    "ResidentAnalyses",
    "SPEC_LABELS",
    "analyse_clip",
    "parse_options",
    "render",
    "resolve_span",
    "span_start_timecode",
]

"""The pipeline: a validated request in, stages composed, a patch out.

    request.RenderRequest   one render, parsed and validated once (every door builds it the same way)
    budget                  which frames of a source a render analyses (span, window, sampled library)
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
from dubline.pipeline.budget import (
    SPAN_ONLY,
    WHOLE_FILE,
    AnalysisBudget,
    AnalysisPlan,
    plan_analysis,
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
    "AnalysisBudget",
    "AnalysisPlan",
    "AnalysisProvider",
    "CLI_LABELS",
    "DiskAnalyses",
    "RenderRequest",
    "RenderResult",
    "ResidentAnalyses",
    "SPAN_ONLY",
    "SPEC_LABELS",
    "WHOLE_FILE",
    "analyse_clip",
    "parse_options",
    "plan_analysis",
    "render",
    "resolve_span",
    "span_start_timecode",
]

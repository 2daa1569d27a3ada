"""moved to labkit.evals.controller; kept so old imports work."""

from labkit.evals.controller import (
    FIELDS,
    HEADROOM,
    EvalReport,
    case_request,
    check_case,
    default_context_factory,
    evaluate,
    fits_tier,
    load_suite,
    to_table,
)

__all__ = [
    "FIELDS", "HEADROOM", "EvalReport", "case_request", "check_case", "default_context_factory", "evaluate",
    "fits_tier", "load_suite", "to_table",
]

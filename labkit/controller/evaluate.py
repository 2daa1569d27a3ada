"""moved to labkit.evals.controller; kept so old imports work."""

from labkit.evals.controller import (
    FIELDS,
    HEADROOM,
    ControllerReport,
    case_request,
    check_case,
    default_context_factory,
    evaluate,
    fits_tier,
    load_suite,
    to_table,
)

#: The report's old name (the toy world's report is `labkit.evals.toyworld.ToyEvalReport`).
EvalReport = ControllerReport

__all__ = [
    "FIELDS", "HEADROOM", "ControllerReport", "EvalReport", "case_request", "check_case", "default_context_factory",
    "evaluate", "fits_tier", "load_suite", "to_table",
]

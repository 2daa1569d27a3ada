"""moved to labkit.evals.toyworld; kept so old imports work."""

from labkit.evals.toyworld import (
    ATTRS,
    EvalReport,
    ReportRows,
    captioned_grid,
    evaluate,
)

__all__ = ["ATTRS", "EvalReport", "ReportRows", "captioned_grid", "evaluate"]

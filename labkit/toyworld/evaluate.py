"""moved to labkit.evals.toyworld; kept so old imports work."""

from labkit.evals.toyworld import (
    ATTRS,
    ReportRows,
    ToyEvalReport,
    captioned_grid,
    evaluate,
)

#: The report's old name (the controller's report is `labkit.evals.controller.ControllerReport`).
EvalReport = ToyEvalReport

__all__ = ["ATTRS", "EvalReport", "ToyEvalReport", "ReportRows", "captioned_grid", "evaluate"]

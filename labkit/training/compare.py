"""moved to labkit.evals.adapters; kept so old imports work."""

from labkit.evals.adapters import (
    AdapterComparison,
    compare_adapters,
    expand,
)

__all__ = ["AdapterComparison", "compare_adapters", "expand"]

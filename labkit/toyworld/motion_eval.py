"""moved to labkit.evals.toymotion; kept so old imports work."""

from labkit.evals.toymotion import (
    CHECKS,
    MAX_JERK_PX,
    MIN_GROWTH,
    MIN_TRAVEL,
    MotionReport,
    clip_sheet,
    evaluate_motion,
    jerk_px,
    motion_verdict,
    track,
)

__all__ = [
    "CHECKS", "MAX_JERK_PX", "MIN_GROWTH", "MIN_TRAVEL", "MotionReport", "clip_sheet", "evaluate_motion",
    "jerk_px", "motion_verdict", "track",
]

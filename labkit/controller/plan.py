"""Moved to labkit.plan; kept so old imports work (`from labkit.controller.plan import Plan`)."""

from labkit.plan import (
    MAX_COUNT,
    MAX_PATH_CHARS,
    MAX_PROMPT_CHARS,
    MAX_RATIONALE_CHARS,
    MAX_SEED,
    MAX_STEPS,
    AdapterRef,
    ControllerInfo,
    Modality,
    Plan,
    Task,
    check_int,
    check_number,
    check_size,
    check_text,
    describe,
    plan_schema,
)

__all__ = [
    "MAX_COUNT", "MAX_PATH_CHARS", "MAX_PROMPT_CHARS", "MAX_RATIONALE_CHARS", "MAX_SEED", "MAX_STEPS", "AdapterRef",
    "ControllerInfo", "Modality", "Plan", "Task", "check_int", "check_number", "check_size", "check_text", "describe",
    "plan_schema",
]

"""Controllers turn a request into a `Plan`; the plan is data the user sees before anything renders."""

from labkit.controller.plan import AdapterRef, ControllerInfo, Plan

__all__ = ["AdapterRef", "ControllerInfo", "Plan"]

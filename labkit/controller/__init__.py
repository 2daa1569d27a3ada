"""Controllers turn a request into a `Plan`; the plan is data the user sees before anything renders.

`get_controller("rules" | "local:<model>" | "remote:<url>#<model>")` picks one; all share
`plan(request, context) -> Plan` with a `PlanContext` (hardware, catalogue, compliance).
"""

from labkit.controller.base import Controller, PlanContext, get_controller
from labkit.plan import AdapterRef, ControllerInfo, Plan

__all__ = ["AdapterRef", "Controller", "ControllerInfo", "Plan", "PlanContext", "get_controller"]

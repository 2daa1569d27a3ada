"""What every controller shares: the `PlanContext` it plans for, and the `Controller` protocol.

A controller turns a free-text request into a `Plan` (see `labkit.plan`). It plans for a
context: the hardware profile, the model catalogue, the compliance mode (and a predicate saying
which licences it allows), the lab's default model per modality, and whether the toy world may be
used. The context is data; `fingerprint()` is a stable string for plan caches.

    ctx = PlanContext.simulated("8")                 # an 8 GB GPU, the shipped catalogue
    plan = get_controller("rules").plan("three watercolor foxes, portrait", ctx)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import Catalog
    from labkit.hardware import HardwareProfile
    from labkit.plan import Plan

#: The lab's defaults when a context names none (labkit.config's DEFAULT_IMAGE/VIDEO_MODEL).
DEFAULT_MODELS: Mapping[str, str] = MappingProxyType({"image": "toyworld", "video": "toyworld-motion"})


@dataclass(frozen=True)
class PlanContext:
    """Everything a controller may look at besides the request.

    Attributes:
        hardware: the machine to plan for (detected, or `HardwareProfile.simulated(...)`).
        catalog: the model catalogue to choose from.
        compliance_mode: the name of the licence policy in force ("research", …), for the record.
        licence_ok: `licence_ok(licence_id) -> bool`, True when the mode allows a model under that
            licence; None allows every licence (the compliance check before rendering still runs).
        default_models: modality ("image"/"video") -> model id, used when no catalogued model can do
            the job.
        toy_world: whether the toy-world model may be chosen for toy-world captions.
    """

    hardware: HardwareProfile
    catalog: Catalog
    compliance_mode: str = "research"
    licence_ok: Callable[[str], bool] | None = field(default=None, compare=False)
    default_models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    toy_world: bool = True

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def simulated(cls, tier: str | float | None = "8", *, catalog: Catalog | None = None,
                  allowed_licences: Any = None, **kwargs: Any) -> PlanContext:
        """A context for a simulated machine: `tier` is a tier name ("cpu", "4" … "40"), a VRAM
        figure in GB, or None for CPU. `allowed_licences` (an iterable of licence ids) builds
        `licence_ok`; the shipped catalogue is read when `catalog` is None."""
        from labkit.catalog import Catalog
        from labkit.hardware import TIERS, HardwareProfile

        if tier is None or tier == "cpu":
            hw = HardwareProfile.simulated(None)
        else:
            try:
                gb = float(tier)
            except (TypeError, ValueError):
                raise InvalidParameter(f"Unknown hardware tier {tier!r}.", value=tier,
                                       fix=f"use one of {', '.join(TIERS)} or a VRAM figure in GB.") from None
            hw = HardwareProfile.simulated(gb)
        if allowed_licences is not None:
            allowed = frozenset(allowed_licences)
            kwargs.setdefault("licence_ok", allowed.__contains__)
        return cls(hardware=hw, catalog=catalog or Catalog.load(use_env=False), **kwargs)

    @classmethod
    def from_lab(cls, lab: Any, *, licence_ok: Callable[[str], bool] | None = None,
                 toy_world: bool = True) -> PlanContext:
        """The context of a `labkit.Lab`: its hardware, catalogue, compliance mode and default models."""
        cfg = lab.config
        return cls(hardware=lab.hardware, catalog=lab.catalog, compliance_mode=cfg.compliance_mode,
                   licence_ok=licence_ok,
                   default_models={"image": cfg.default_image_model, "video": cfg.default_video_model},
                   toy_world=toy_world)

    # -- reading ----------------------------------------------------------------------------------

    def allows(self, licence: str) -> bool:
        """Whether the compliance predicate allows `licence` (True without a predicate)."""
        return True if self.licence_ok is None else bool(self.licence_ok(licence))

    def default_model(self, modality: str) -> str | None:
        return self.default_models.get(modality)

    def allowed_licences(self) -> list[str]:
        """The catalogue's licences that the predicate allows, sorted."""
        return sorted({e.licence for e in self.catalog if self.allows(e.licence)})

    def to_dict(self) -> dict[str, Any]:
        """The context as data: what a plan depends on (the predicate as the licences it allows)."""
        return {
            "tier": self.hardware.tier,
            "device": self.hardware.device,
            "vram_total_gb": self.hardware.vram_total_gb,
            "compliance_mode": self.compliance_mode,
            "allowed_licences": self.allowed_licences(),
            "default_models": dict(sorted(self.default_models.items())),
            "toy_world": self.toy_world,
            "catalog": sorted(f"{e.id}@{e.revision or e.source}" for e in self.catalog),
        }

    def fingerprint(self) -> str:
        """A stable hash of `to_dict()`: same fingerprint, same plan from a deterministic controller."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def summary(self) -> str:
        """A few lines for an LLM's system prompt: the machine and the models it may choose."""
        lines = [f"Hardware: {self.hardware.summary()} (VRAM tier {self.hardware.tier}).",
                 f"Compliance mode: {self.compliance_mode}."]
        for e in self.catalog:
            if self.allows(e.licence):
                lines.append(f"- {e.id}: {', '.join(e.tasks)}; default {e.width}x{e.height}, "
                             f"sizes {e.min_size}-{e.max_size} in steps of {e.size_multiple}"
                             + (f"; frames up to {e.max_frames} (1 + k*{e.frame_step}) at {e.default_fps} fps"
                                if e.is_video else "") + f"; {e.description}")
        return "\n".join(lines)


@runtime_checkable
class Controller(Protocol):
    """Turns a request into a Plan. `name` is "rules", "local" or "remote"; `model` and `revision`
    name the LLM (None for rules) and the version that wrote the plan, as `Plan.controller` records."""

    name: str
    model: str | None
    revision: str | None

    def plan(self, request: str, context: PlanContext) -> Plan: ...


def get_controller(spec: str = "rules", **kwargs: Any) -> Controller:
    """A controller by name: "rules", "local:<model folder or id>", "remote:<url>#<model>"."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidParameter(f"Controller {spec!r} is empty.", value=spec,
                               fix="use 'rules', 'local:<model>' or 'remote:<url>#<model>'.")
    kind = spec.split(":", 1)[0].strip().lower()
    if kind == "rules":
        from labkit.controller.rules import RulesController

        return RulesController(**kwargs)
    if kind == "remote":
        from labkit.controller.remote import RemoteController

        return RemoteController.from_spec(spec, **kwargs)
    if kind == "local":
        try:
            from labkit.controller import local
        except ImportError as e:  # pragma: no cover - the local controller lands separately
            raise InvalidParameter(f"Controller {spec!r}: the local controller is not available ({e}).",
                                   value=spec, fix="use --controller rules or remote:<url>#<model>.") from e
        return local.LocalController.from_spec(spec, **kwargs)
    raise InvalidParameter(f"Unknown controller {spec!r}.", value=spec,
                           fix="use 'rules', 'local:<model>' or 'remote:<url>#<model>'.")


__all__ = ["DEFAULT_MODELS", "Controller", "PlanContext", "get_controller"]

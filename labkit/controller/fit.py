"""Model fit: whether a catalogue model suits this machine, and which model a read request gets.

- `model_fit(entry, profile, prefs)` → `Fit`: on a GPU, the tier's starting memory strategy for the
  model's family (strategies.toml `est_peak_vram_gb`) is at most `prefs.headroom` x the tier's GB; on a
  CPU, the family is one `prefs.cpu_families` calls practical. `Lab.models()` marks the catalogue with it.
- `choose_model(request, task, context, prefs)` → (entry, why): the model the user named, else the toy
  model for a toy-world caption, else the best (or, for "quick", the fastest) allowed model that fits,
  else the one needing the least memory; `why` is the rationale's sentence. `ComplianceViolation` when
  the compliance mode allows no model that does the task, or refuses the one the user named.

`prefs` is anything with the preference fields of `styles.toml` (`headroom`, `cpu_families`, `quality`,
`fast`): the rules controller passes its `Vocabulary`. This module is core: it imports the base floor
(catalogue, hardware, errors) and the controller's plain context, never a controller.

Example:

    >>> from labkit.catalog import Catalog
    >>> from labkit.hardware import HardwareProfile
    >>> from labkit.controller.vocabulary import Vocabulary
    >>> sdxl = Catalog.load(use_env=False).find("sdxl")
    >>> fit = model_fit(sdxl, HardwareProfile.simulated(8), Vocabulary.load(use_env=False))
    >>> fit.fits, fit.pace
    (True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from labkit.errors import ComplianceViolation, InvalidParameter, LabkitError

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import CatalogEntry
    from labkit.controller.base import PlanContext
    from labkit.controller.reading import Request
    from labkit.hardware import HardwareProfile, MemoryStrategy


class FitPrefs(Protocol):
    """The model preferences of `styles.toml` that fitting reads (a `Vocabulary` has them)."""

    headroom: float
    cpu_families: tuple[str, ...]
    quality: tuple[str, ...]
    fast: tuple[str, ...]


@dataclass(frozen=True)
class Fit:
    """How a catalogue entry runs on a profile: its starting strategy and whether it fits.

    `pace` orders the starting strategies: 0 no offload, 1 model/group offload, 2 sequential offload
    (slow), 3 a CPU that the vocabulary does not call practical.
    """

    entry: CatalogEntry
    fits: bool
    strategy: MemoryStrategy | None
    est_gb: float
    pace: int

    def describe(self, profile: HardwareProfile) -> str:
        if self.strategy is None:
            return "no memory strategy"
        if profile.tier == "cpu":
            return f"{self.strategy.name} on CPU"
        return f"{self.strategy.name}, est {self.est_gb:g} GB of the {profile.tier} GB tier"


def model_fit(entry: CatalogEntry, profile: HardwareProfile, prefs: FitPrefs) -> Fit:
    """Whether `entry` fits `profile`: on a GPU, the estimated peak of the tier's starting strategy
    (strategies.toml `est_peak_vram_gb`) is at most `headroom` x the tier's GB; on a CPU, the family
    is one the vocabulary calls practical there (`cpu_families`)."""
    from labkit.hardware import choose

    try:
        strategy = choose(entry.family, profile)
    except LabkitError:
        return Fit(entry, False, None, float("inf"), 3)
    est = float(strategy.est_peak_vram_gb or 0.0)
    if profile.tier == "cpu":
        ok = entry.family in prefs.cpu_families
        return Fit(entry, ok, strategy, est, 0 if ok else 3)
    pace = {"none": 0, "model": 1, "group": 1, "sequential": 2}.get(strategy.offload, 2)
    return Fit(entry, est <= prefs.headroom * float(profile.tier), strategy, est, pace)


def choose_model(r: Request, task: str, ctx: PlanContext, prefs: FitPrefs) -> tuple[CatalogEntry | None, str]:
    """The model for read request `r` doing `task` on `ctx`, and the rationale's words for the choice.

    Steps: 1. no catalogued model does the task: the lab's default; 2. keep the models the compliance
    mode allows; 3. a model the user named (if it does the task and is allowed); 4. the toy model for a
    toy-world caption; 5. among the rest that fit, the fastest for "quick", else the best by
    `prefs.quality` (preferring no sequential offload); 6. nothing fits: the one needing least memory.
    A named model that cannot do the task adds a note to `r.notes`.
    """
    cat, hw = ctx.catalog, ctx.hardware
    # 1. nothing catalogued does the task
    doers = [e for e in cat if does(e, task)]
    if not doers:
        default = ctx.default_model(r.modality)
        if not default:
            raise InvalidParameter(f"No catalogued model does {task} and no default {r.modality} model is set.",
                                   value=task, fix=f"add a {task} model to the catalogue or set "
                                                   f"default_{r.modality}_model in labkit.toml.")
        entry = cat.find(default)
        return (entry if entry is not None and does(entry, task) else None,
                f"model {default} (the lab's default: no catalogued model does {task})")

    # 2. the licences the compliance mode allows
    allowed = [e for e in doers if ctx.allows(e.licence)]
    refused = [e for e in doers if e not in allowed]
    if not allowed:
        raise ComplianceViolation(
            f"Compliance mode {ctx.compliance_mode!r} allows none of the models that do {task} "
            f"({', '.join(f'{e.id}: {e.licence}' for e in refused)}).", value=ctx.compliance_mode,
            fix="choose a compliance mode that allows one of these licences, or add a model with an "
                "allowed licence to the catalogue.")
    refused_note = (f"; mode {ctx.compliance_mode!r} excluded "
                    f"{', '.join(f'{e.id} ({e.licence})' for e in refused)}") if refused else ""

    # 3. a model the user named
    if r.model:
        e = cat.find(r.model)
        if e is not None and not does(e, task):
            r.notes.append(f"{e.id} (from {r.model_cue!r}) does not do {task}: chose another model")
        elif e is not None and not ctx.allows(e.licence):
            raise ComplianceViolation(
                f"{e.id} (asked as {r.model_cue!r}) is under {e.licence}, which compliance mode "
                f"{ctx.compliance_mode!r} does not allow.", value=e.licence,
                fix=f"ask for one of {', '.join(a.id for a in allowed)}, or change the compliance mode.")
        elif e is not None:
            f = model_fit(e, hw, prefs)
            warn = "" if f.fits else "; it may not fit this machine (expect offloading or out-of-memory)"
            return e, f"model {e.id} as asked ({r.model_cue!r}; {f.describe(hw)}{warn})"

    # 4. the toy world
    toys = [e for e in allowed if e.family == "toy"]
    if ctx.toy_world and toys:
        if r.toy and task == "txt2img":
            return toys[0], f"model {toys[0].id} (the request is a toy-world caption){refused_note}"
        if (r.toy or r.toy_motion) and task in ("txt2vid", "img2vid"):
            what = "a toy-world motion caption" if r.toy_motion else "a toy-world caption asked as video"
            return toys[0], f"model {toys[0].id} (the request is {what}){refused_note}"
    general = [e for e in allowed if e.family != "toy"] or allowed

    # 5. the best (or fastest) that fits; 6. else the one needing the least memory
    fits = [model_fit(e, hw, prefs) for e in general]
    good = [f for f in fits if f.fits]
    where = "a CPU-only machine" if hw.tier == "cpu" else f"the {hw.tier} GB tier"
    if not good:  # on a CPU every rung's VRAM is 0: the RAM it needs decides
        from labkit.hardware import host_ram_gb

        def need(f: Fit) -> float:
            return host_ram_gb(f.entry.family, on_cpu=True) if hw.tier == "cpu" and f.strategy else f.est_gb

        f = min(fits, key=lambda f: (need(f), rank(prefs.quality, f.entry)))
        return f.entry, (f"model {f.entry.id}: nothing that does {task} fits {where}, so the one needing the "
                         f"least memory ({f.describe(hw)}); expect it to be very slow or run out of "
                         f"memory{refused_note}")
    if r.speed == "fast":
        f = min(good, key=lambda f: (not is_turbo(f.entry), f.pace, rank(prefs.fast, f.entry)))
        why = f"the fastest {task} model that fits {where}, for {r.speed_cue!r}"
    elif r.speed == "best":
        f = min(good, key=lambda f: rank(prefs.quality, f.entry))
        why = f"the best {task} model that fits {where}, for {r.speed_cue!r}"
    else:
        f = min(good, key=lambda f: (f.pace >= 2 and any(g.pace < 2 for g in good), rank(prefs.quality, f.entry)))
        why = f"the best {task} model that fits {where}" + (
            " without sequential offload" if any(g.pace >= 2 for g in good) and f.pace < 2 else "")
    return f.entry, f"model {f.entry.id} ({why}: {f.describe(hw)}){refused_note}"


def does(entry: CatalogEntry, task: str) -> bool:
    """Whether `entry` does `task` (an image-to-video model does text-to-video from a rendered frame)."""
    return task in entry.tasks or (task == "txt2vid" and "img2vid" in entry.tasks)


def is_turbo(entry: CatalogEntry) -> bool:
    """A distilled model that renders in at most 4 steps (more steps do not help it)."""
    return entry.default_steps <= 4


def rank(order: tuple[str, ...], entry: CatalogEntry) -> tuple[int, int, str]:
    """Sort key: the place of `entry` in `order`; unlisted entries after, larger default size first."""
    if entry.id in order:
        return (order.index(entry.id), 0, entry.id)
    return (len(order), -entry.width * entry.height, entry.id)

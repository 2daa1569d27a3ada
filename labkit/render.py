"""From a `Plan` to a `Result`: the lab's core job, with nothing about the run left unrecorded.

`render()` validates the plan before any heavy work, opens one MLflow run, loads the model (from
the pipeline cache when it can), renders with the hardware's memory strategy, moves one rung
down the strategy ladder on out-of-memory, tries the catalogue's fallbacks when a model cannot
load, writes the outputs with their record embedded, and logs params, metrics, tags and files.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.diagnose import PeakMemory, Trace, Vram, record_failure
from labkit.errors import (
    Cancelled,
    ComplianceViolation,
    InvalidParameter,
    LabkitError,
    ModelNotCached,
    OutOfMemory,
    UnknownModel,
    is_out_of_memory,
)
from labkit.hardware import MemoryStrategy, choose, degrade
from labkit.pipelines.memory import profile_now, warm_up
from labkit.plan import MAX_PATH_CHARS, Plan, check_text, describe
from labkit.results import Attempt, PipelineCache, Progress, Result, free_memory  # noqa: F401 - their old home

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.pipelines.loader import Loaded, ModelRef

def _load_image(path: str):
    from PIL import Image

    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidParameter(f"Input image {path!r} {'is a folder' if p.is_dir() else 'does not exist'}.",
                               value=path, fix="pass the path of a PNG or JPEG file.")
    try:
        return Image.open(p).convert("RGB")
    except Exception as e:
        raise InvalidParameter(f"Input image {path!r} cannot be read: {e}.", value=path,
                               fix="pass a PNG or JPEG file.") from e


def check_plan_arg(plan: Any) -> Plan:
    """`plan` when it is a `Plan` whose fields have the right types; else `InvalidParameter`."""
    if not isinstance(plan, Plan):
        hint = ("lab.generate(TEXT) renders a prompt, lab.ask(TEXT) plans a request first"
                if isinstance(plan, str) else "build one with Plan(prompt=...) or Plan.from_dict(...)")
        raise InvalidParameter(f"render needs a Plan, got {describe(plan)}.", value=plan, fix=f"{hint}.")
    return plan.check_fields()


def check_render_args(plan: Any, *, progress: Any = None, cancel: Any = None, out: Any = None,
                      allow_pickle: Any = False, tags: Any = None) -> None:
    """The render arguments' types (and that `out` is not a file), before anything is resolved or opened."""
    check_plan_arg(plan)
    if progress is not None and not callable(progress):
        raise InvalidParameter(f"progress must be a function progress(step, total), got {describe(progress)}.",
                               value=progress, fix="pass a function, or None.")
    if cancel is not None and not all(callable(getattr(cancel, m, None)) for m in ("is_set", "set")):
        raise InvalidParameter(f"cancel must be a threading.Event, got {describe(cancel)}.", value=cancel,
                               fix="pass cancel=threading.Event() and call .set() on it to stop, or None.")
    if not isinstance(allow_pickle, bool):
        raise InvalidParameter(f"allow_pickle must be True or False, got {describe(allow_pickle)}.",
                               value=allow_pickle, fix="pass allow_pickle=True only for weights you trust.")
    if tags is not None and (not isinstance(tags, Mapping) or not all(isinstance(k, str) for k in tags)):
        raise InvalidParameter(f"tags must be a mapping of names to values, got {describe(tags)}.", value=tags,
                               fix='pass tags={"name": "value"}, or None.')
    if out is not None:
        if not isinstance(out, (str, Path)) or (isinstance(out, str) and not out.strip()):
            raise InvalidParameter(f"out must be a folder path, got {describe(out)}.", value=out,
                                   fix="pass a folder path (str or pathlib.Path), or None.")
        check_text("out", str(out), max_chars=MAX_PATH_CHARS)
        from labkit.outputs import check_output_folder

        check_output_folder(out, option="out")


def complete(lab: Lab, plan: Plan, config: str | None = None, *, validate: bool = True) -> tuple[Plan, ModelRef]:
    """The plan with its model and open fields resolved (and validated); nothing is loaded and nothing
    checked on disk but the model's own folder: what a panel shows before anyone presses Render."""
    from labkit.pipelines.loader import plan_defaults, resolve_model

    check_plan_arg(plan)
    check_text("config", config, optional=True, max_chars=MAX_PATH_CHARS, nonempty=True)
    model = plan.model or lab.default_model(plan.modality)
    ref = resolve_model(model, lab.catalog, config=config)
    plan = plan.replace(model=model).resolve(plan_defaults(ref, lab.catalog, plan.modality))
    if any(c.model is None for c in plan.controls):
        plan = plan.replace(controls=default_controlnets(plan.controls, ref, lab.catalog))
    return (plan.validate(ref.entry) if validate else plan), ref


def prepare(lab: Lab, plan: Plan, config: str | None = None) -> tuple[Plan, ModelRef]:
    """Resolve the plan's model and open fields, and validate — before any heavy work."""
    plan, ref = complete(lab, plan, config)
    if plan.image:
        _load_image(plan.image)
    _require_available(lab, ref)
    plan_adapters(lab, plan, ref)  # an adapter that is missing or made for another family fails here
    check_controls(plan, ref, lab.catalog, lab.hardware)  # and so do ControlNets (found, fitting) and their maps
    return plan, ref


def plan_adapters(lab: Lab, plan: Plan, ref: ModelRef) -> list[tuple[Any, float]]:
    """The plan's adapters found (hub files from the cache) and checked against the model's family:
    [(AdapterSource, weight)]. Reads file headers only."""
    if not plan.adapters:
        return []
    from labkit.pipelines.lora import resolve_plan_adapters

    return resolve_plan_adapters(plan.adapters, lab.catalog, tracker=lab.tracker, family=ref.family,
                                 hash_cache=lab.hash_cache)


def default_controlnets(controls: Any, ref: ModelRef, catalog: Any) -> tuple[Any, ...]:
    """`controls` with each one that names no ControlNet given the catalogue's for its kind and the model's family
    (`[controlnets.ID]`; e.g. toyworld + layout → toyworld-controlnet); one with none catalogued stays as it is."""
    import dataclasses

    from labkit.pipelines.controlnet import default_controlnet

    out = []
    for c in controls:
        entry = default_controlnet(catalog, ref.family, c.kind) if c.model is None else None
        out.append(dataclasses.replace(c, model=entry.id) if entry is not None else c)
    return tuple(out)


def check_controls(plan: Plan, ref: ModelRef, catalog: Any = None, hardware: Any = None) -> None:
    """Every control of the plan usable before any work: no more ControlNets than the GPU's memory strategy fits,
    each found and made for the model's family (its config read, no weights), its control map made (cheap:
    files and OpenCV)."""
    from labkit.controls import control_map
    from labkit.hardware import controlnet_gb, max_controls
    from labkit.pipelines.controlnet import check_controlnet, controlnet_entries
    from labkit.plan import MAX_CONTROLS

    if plan.controls and hardware is not None:
        fits = max_controls(ref.family, hardware, MAX_CONTROLS)
        if len(plan.controls) > fits:
            raise InvalidParameter(
                f"The plan has {len(plan.controls)} ControlNets; with {ref.family} on this "
                f"{hardware.vram_total_gb:.0f} GB GPU even the cheapest memory strategy fits {fits} (each needs about "
                f"{controlnet_gb(ref.family):.1f} GB).", value=len(plan.controls),
                fix=f"keep at most {fits} controls, or render on a GPU with more memory (or the CPU).")
    for i, c in enumerate(plan.controls):
        if c.model is None:
            known = [e.id for e in controlnet_entries(catalog).values() if e.family == ref.family]
            raise InvalidParameter(f"controls[{i}] ({c.kind}) names no ControlNet, and the catalogue has no {c.kind} "
                                   f"ControlNet for {ref.family} models.", value=c.kind,
                                   fix="give its model: a ControlNet folder or hub id made for "
                                       f"{ref.family} (e.g. --control-model PATH)"
                                       + (f"; catalogued for {ref.family}: {', '.join(known)}." if known else "."))
        check_controlnet(c.model, family=ref.family, base_id=repr(ref.id), catalog=catalog)
        control_map(c, plan.width, plan.height, index=i)


def _controlled(plan: Plan, loaded: Loaded, pipe: Any, device: str, catalog: Any = None
                ) -> tuple[Any, dict[str, Any], list[dict[str, Any]], list, list[str], Any]:
    """`pipe` with the plan's ControlNets joined and placed by the loaded pipeline's memory strategy; the call's
    control arguments, the control records, the maps, the strategy steps applied to the ControlNets, and the
    function that takes them off the device after the render."""
    from labkit.controls import control_map
    from labkit.pipelines.controlnet import control_kwargs, load_controlnet, with_controlnets
    from labkit.pipelines.memory import place_controlnet

    unet = getattr(loaded.pipe, "unet", None)
    dtype = unet.dtype if unet is not None else None
    maps, records, nets = [], [], []
    for i, c in enumerate(plan.controls):
        image, record = control_map(c, plan.width, plan.height, index=i)
        net = load_controlnet(c.model, family=loaded.ref.family, dtype=dtype, device="cpu",
                              base_id=repr(loaded.ref.id), catalog=catalog)
        maps.append(image)
        nets.append(net)
        records.append({**record, "model": c.model, "model_sha256": net.sha256, "revision": net.revision,
                        "licence": net.licence, "scale": c.scale, "start": c.start, "end": c.end})
    controlled = with_controlnets(pipe, nets, family=loaded.ref.family, task=plan.task)
    applied, undo = place_controlnet(controlled.controlnet, loaded.strategy, device)
    return controlled, control_kwargs(plan.controls, maps, task=plan.task), records, maps, applied, undo


def keyframe_for(ref: ModelRef) -> str | None:
    """The image model that draws frame 0 of `ref`'s text-to-video clips (a labkit motion export's
    ``"keyframe_model"``, `labkit.pipelines.animatediff.keyframe_model`), or None."""
    if ref.kind not in ("folder", "package"):
        return None
    from labkit.pipelines.animatediff import keyframe_model

    return keyframe_model(ref.location)


def keyframe_drawer(lab: Lab, ref: ModelRef, *, steps: int, width: int, height: int
                    ) -> Callable[[str, int], Any] | None:
    """In memory, what `render` draws as its own run before animating `ref`'s text-to-video: a function
    (clip prompt, seed) -> the keyframe model's PIL picture of `keyframe_prompt`, at the clip's steps and
    size, the model loaded (and cached) once; None when `ref` names no keyframe model. For callers that
    render many clips without a run each (`eval toymotion`, `bench toy-motion`)."""
    keyframe = keyframe_for(ref)
    if not keyframe:
        return None
    from labkit.pipelines.animatediff import keyframe_prompt
    from labkit.pipelines.calls import run_image

    plan, kref = prepare(lab, Plan(prompt="keyframe", model=keyframe, steps=steps, width=width, height=height))
    pipe = load_cached(lab, kref, choose(kref.family, lab.hardware))[0].pipe

    def draw(prompt: str, seed: int) -> Any:
        still = keyframe_prompt(ref.family, prompt, lab.catalog)
        (image,) = run_image(pipe, prompt=still, negative_prompt="", steps=plan.steps,
                             guidance=plan.guidance, width=plan.width, height=plan.height, seed=seed, count=1,
                             on_step=lambda _: False)
        return image

    return draw


def licence_chain(plan: Plan, ref: ModelRef, adapters: list[tuple[Any, float]] = (), catalog: Any = None) -> list[Any]:
    """The compliance assets a plan puts together: the model, the adapters (each with the training
    data it records), the ControlNets, then the controller's LLM."""
    from labkit.compliance import Asset
    from labkit.pipelines.controlnet import controlnet_licence

    entry = ref.entry
    chain = [Asset("model", entry.id if entry else ref.id, ref.licence, ref.revision if ref.kind == "hub" else None)]
    for src, _ in adapters:
        chain += [Asset.of(a) for a in src.assets()]
    for c in plan.controls:  # a catalogued ControlNet's licence, or its model card's (None: the mode decides)
        licence, revision = controlnet_licence(c.model, catalog) if c.model else (None, None)
        chain.append(Asset("controlnet", c.model or c.kind, licence, revision))
    if plan.controller.model:
        chain.append(Asset("controller-llm", plan.controller.model, plan.controller.licence,
                           plan.controller.revision))
    return chain


def check_compliance(lab: Lab, plan: Plan, ref: ModelRef):
    """The lab's compliance mode applied to the plan's assets and prompt; raises when blocked."""
    from labkit.compliance import enforce, enforce_prompt

    chain = licence_chain(plan, ref, plan_adapters(lab, plan, ref), lab.catalog)
    return enforce(chain, lab.compliance), enforce_prompt(plan.prompt, lab.compliance)


def signing_identity(lab: Lab):
    """The C2PA signing identity the lab's config names (checked), or None when outputs are not signed."""
    config = lab.config
    if config.c2pa_cert is None and config.c2pa_key is None:
        return None
    from labkit.compliance.signing import identity_from_config

    return identity_from_config(config)


def _require_available(lab: Lab, ref: ModelRef) -> None:
    """Fail before the run opens when neither the model nor any fallback can load (offline, not cached)."""
    from labkit.pipelines.loader import is_available, local_folder

    candidates = list(_candidates(lab, ref))
    if any(is_available(c) for c in candidates):
        return
    errors = []
    for c in candidates:
        try:
            local_folder(c)
        except LabkitError as e:
            errors.append((c.id, e))
    raise _combined(errors, "unavailable")


def _combined(failures: list[tuple[str, LabkitError]], what: str) -> LabkitError:
    """The requested model's error, naming what went wrong with each fallback after it."""
    first = failures[0][1]
    if len(failures) == 1:
        return first
    tried = "; ".join(f"{m}: {e.message}" for m, e in failures[1:])
    err = type(first)(f"{first.message} Fallbacks also {what} — {tried}", value=first.value, fix=first.fix)
    err.__cause__ = first
    return err


def render(lab: Lab, plan: Plan, *, progress: Progress | None = None, cancel: threading.Event | None = None,
           out: str | Path | None = None, allow_pickle: bool = False, config: str | None = None,
           tags: Mapping[str, Any] | None = None) -> Result:
    """Render `plan` on `lab`'s hardware and record it as one MLflow run. See the module docstring.

    `config` is the diffusers folder or repo whose configs a single-file checkpoint uses; `tags`
    are added to the run.

    Steps: 1. resolve and validate the plan; 2. open the run (params = the plan); 3. for the model
    and then each catalogue fallback: load with the tier's strategy, render, and on out-of-memory
    free memory and retry one rung cheaper; 4. write the outputs with their record; 5. log
    metrics, tags and artifacts (with CUDA also `vram/*`: peaks and one sample per step). A run that fails is
    recorded FAILED with its error and where it stopped (`labkit.diagnose.failure_record`: tag `labkit.failure`,
    artifact failure.json), which `labkit doctor --run RUN_ID` explains.
    """
    check_render_args(plan, progress=progress, cancel=cancel, out=out, allow_pickle=allow_pickle, tags=tags)
    requested = plan
    plan, ref = prepare(lab, plan, config)
    checked = (plan, ref, check_compliance(lab, plan, ref))  # a blocked asset or prompt never renders
    identity = signing_identity(lab)  # a configured certificate that cannot sign fails here, not after rendering
    tags = {"labkit.job": "render", "labkit.task": plan.task, "model.requested": plan.model,
            "labkit.controller": plan.controller.name, "labkit.rationale": plan.rationale[:8000], **(tags or {})}
    inputs: list[dict[str, Any]] = []
    keyframe = keyframe_for(ref) if plan.task == "txt2vid" else None
    if plan.task == "txt2vid" and (lab.catalog.family(ref.family).txt2vid_first_frame or keyframe):
        # An image-to-video model asked for text-to-video, or a motion model that animates a keyframe:
        # render the first frame with the image model (the lab's, or the one the motion model names) as
        # its own recorded run, then animate it. The plan keeps the frame's path.
        from labkit.pipelines.animatediff import keyframe_prompt

        frame_plan = Plan(prompt=keyframe_prompt(ref.family, plan.prompt, lab.catalog) if keyframe else plan.prompt,
                          model=keyframe, negative_prompt=plan.negative_prompt, seed=plan.seed,
                          steps=plan.steps if keyframe else None,  # the keyframe at the clip's step count
                          width=plan.width, height=plan.height, controller=plan.controller, speed=plan.speed)
        try:  # the clip's size when the image model can draw it, else the image model's own default
            prepare(lab, frame_plan)
        except InvalidParameter:
            frame_plan = frame_plan.replace(width=None, height=None)
        frame = render(lab, frame_plan, cancel=cancel, allow_pickle=allow_pickle)
        plan = plan.replace(image=str(frame.files[0]))
        requested = requested.replace(image=plan.image)
        tags["labkit.first_frame_run"] = frame.run_id
        inputs = [{"kind": "first_frame", "run_id": frame.run_id, "file": str(frame.files[0]),
                   **{k: frame.model[k] for k in ("id", "revision", "hash", "licence")}}]
    trace = Trace()
    # named for the task asked for: a text-to-video run animating its own first frame is still "txt2vid"
    with lab.run(f"{tags['labkit.task']}: {plan.prompt[:40]}", params=plan_params(plan), tags=tags) as run:
        try:
            result = _render_with_fallbacks(lab, requested, plan, ref, progress, cancel, allow_pickle, trace)
        except Cancelled:  # a pipeline that cannot stop part-way (SVD): the run ends KILLED, nothing failed
            raise
        except Exception as e:
            record_failure(lab, run, plan, trace, e)
            raise
        result.run_id = run.run_id
        result.inputs = inputs
        _record(lab, run, result, out, identity, checked)
        if result.status == "cancelled":
            run.status = "KILLED"
    return result


def plan_params(plan: Plan) -> dict[str, Any]:
    """The plan as a run's params (`plan.*`): every field but the rationale, a sentence that is no parameter (the MLflow
    UI would chart and compare it as one); the rationale is in the run's `plan.json` and tag `labkit.rationale`."""
    return {"plan": {k: v for k, v in plan.to_dict().items() if k != "rationale"}}


def summary_line(result: Result) -> str:
    """A render in one line — task, model, size, steps, seed, time — its run's description in the MLflow UI, e.g.
    "txt2img · toyworld · 64×64 · 20 steps · seed 7 · 0.41 s"."""
    p = result.plan
    parts = [p.task, str(result.model["id"]), f"{p.count} × {p.width}×{p.height}" if p.count > 1
             else f"{p.width}×{p.height}", f"{p.steps} steps", f"seed {p.seed}"]
    if p.modality == "video" and p.frames:
        parts.insert(3, f"{p.frames} frames at {p.fps} fps")
    parts.append(f"{result.timings['total_s']:.2f} s")
    if result.status != "finished":
        parts.append(result.status)
    return " · ".join(parts)


def _candidates(lab: Lab, ref: ModelRef):
    """The requested model, then its catalogue fallbacks in order (resolved lazily)."""
    from labkit.pipelines.loader import resolve_model

    yield ref
    if ref.entry is not None:
        for entry in lab.catalog.fallback_chain(ref.entry.id)[1:]:
            try:
                yield resolve_model(entry.id, lab.catalog)
            except LabkitError:
                continue


def _render_with_fallbacks(lab: Lab, requested: Plan, plan: Plan, ref: ModelRef, progress: Progress | None,
                           cancel: threading.Event | None, allow_pickle: bool, trace: Trace | None = None) -> Result:
    trace = trace or Trace()
    attempts = trace.attempts
    failures: list[tuple[str, LabkitError]] = []
    for cand in _candidates(lab, ref):
        cand_plan = plan
        if cand is not ref:
            # The fallback fills the fields the user left open with its own defaults.
            try:
                cand_plan = requested.replace(model=cand.id).resolve(cand.entry).validate(cand.entry)
                cand_plan = cand_plan.replace(seed=plan.seed)
                check_compliance(lab, cand_plan, cand)
            except (InvalidParameter, ComplianceViolation) as e:
                failures.append((cand.id, e))
                continue
        try:
            result = _render_one(lab, cand_plan, cand, attempts, progress, cancel, allow_pickle, trace)
        except (ModelNotCached, UnknownModel, OutOfMemory) as e:
            if not isinstance(e, OutOfMemory):
                attempts.append(Attempt(cand.id, "-", "load", f"{type(e).__name__}: {e.message}"))
            failures.append((cand.id, e))
            continue
        if cand is not ref:
            result.fallback_reason = "; ".join(f"{m}: {e.message}" for m, e in failures)
        return result
    raise _combined(failures, "failed")


def _render_one(lab: Lab, plan: Plan, ref: ModelRef, attempts: list[Attempt], progress: Progress | None,
                cancel: threading.Event | None, allow_pickle: bool, trace: Trace | None = None) -> Result:
    """Load and render one model, degrading the memory strategy on out-of-memory. `trace` follows where it is."""
    trace = trace or Trace()
    trace.model, trace.family = ref.id, ref.family
    hardware = profile_now(lab.hardware, lab.pipelines, (ref.kind, ref.location, ref.revision))  # free VRAM now
    strategy = choose(ref.family, hardware, controls=len(plan.controls), speed=plan.speed, adapters=len(plan.adapters))
    tried: list[MemoryStrategy] = []
    while True:
        tried.append(strategy)
        trace.strategy, trace.stage, trace.step, trace.total = strategy, "load", 0, plan.steps
        trace.vram = Vram(on_cuda=strategy.device == "gpu" and lab.hardware.device == "cuda")
        loaded = failed = None
        try:
            loaded, load_s = load_cached(lab, ref, strategy, allow_pickle)
            trace.stage = "compile"  # a compiled pipeline's 2-step warm-up (nothing to do otherwise)
            compile_s = warm_up(loaded, plan, lambda p, loaded=loaded: _call(lab, p, loaded, None, None))
            trace.stage = "render"
            result = _call(lab, plan, loaded, progress, cancel, trace)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            where = trace.stage + (f" ({trace.step}/{trace.total} steps done)" if trace.stage == "denoise" else "")
            failed = Attempt(ref.id, strategy.name, where, f"OutOfMemoryError: {str(e)[:200]}")
        if failed is not None:
            # Out of the handler, the error's traceback (and the tensors of the call it stopped) is gone; the failed
            # rung's pipeline goes too, before the next rung loads beside it.
            attempts.append(failed)
            loaded = None
            if strategy.compile and lab.hardware.device == "cuda":
                import torch

                torch.compiler.reset()  # CUDA graphs' memory pools live as long as dynamo keeps the compiled code
            lab.pipelines.evict(_cache_key(ref, strategy, allow_pickle))
            strategy = degrade(strategy, tried=tried)  # raises OutOfMemory when nothing cheaper is left
            continue
        attempts.append(Attempt(ref.id, strategy.name, "render", "ok" if result.status == "finished" else "cancelled"))
        result.attempts, result.strategy = attempts, strategy  # the cached pipeline's steps, this render's notes
        result.timings["load_s"], result.timings["compile_s"] = load_s, compile_s
        result.timings["total_s"] = load_s + result.timings["steps_s"] + result.timings["decode_s"]
        result.model.update(_model_record(ref, loaded))
        result.ref = ref
        return result


def _cache_key(ref: ModelRef, strategy: MemoryStrategy, allow_pickle: bool) -> tuple:
    return (ref.kind, ref.location, ref.revision, strategy.name, strategy.overrides, allow_pickle, *strategy.steps())


def load_cached(lab: Lab, ref: ModelRef, strategy: MemoryStrategy, allow_pickle: bool = False) -> tuple[Loaded, float]:
    """The pipeline for `ref` with `strategy`, from the lab's cache or loaded now; and the load time."""
    from labkit.pipelines.loader import load_pipeline, local_folder, weight_files

    key = _cache_key(ref, strategy, allow_pickle)
    cached = lab.pipelines.get(key)
    if cached is not None:
        return cached, 0.0
    if ref.kind in ("folder", "package"):
        needed = sum(p.stat().st_size for p in weight_files(local_folder(ref)))
    else:
        needed = 0  # unknown before download; the budget check after loading covers it
    lab.pipelines.make_room(needed, on_gpu=strategy.device == "gpu")
    device = lab.hardware.device if strategy.device == "gpu" else "cpu"
    loaded = load_pipeline(ref, strategy, device, allow_pickle=allow_pickle, hash_cache=lab.hash_cache,
                           compile_cache=lab.config.root / "mlruns" / "inductor-cache")
    lab.save_hash_cache()
    lab.pipelines.put(key, loaded)
    return loaded, loaded.load_s


def _model_record(ref: ModelRef, loaded: Loaded) -> dict[str, Any]:
    return {
        "id": ref.id, "kind": ref.kind, "location": ref.location, "revision": ref.revision, "family": ref.family,
        "licence": ref.licence, "hash": loaded.hash, "files": loaded.hashes,
        "pipeline": type(loaded.pipe).__name__, "scheduler": type(loaded.pipe.scheduler).__name__,
    }


def _call(lab: Lab, plan: Plan, loaded: Loaded, progress: Progress | None,
          cancel: threading.Event | None, trace: Trace | None = None) -> Result:
    """One pipeline call, timed per step, with peak memory (and, with CUDA, VRAM per step) and cancellation;
    `trace` follows the stage: controlnet (placing the ControlNets), denoise (with the step), decode."""
    from labkit.pipelines import calls
    from labkit.pipelines.loader import require_task
    from labkit.pipelines.lora import activate

    pipe = require_task(loaded.ref, loaded.pipe, plan.task)
    # Adapters live in the cached pipeline's modules: only re-weighted when a plan switches them.
    adapters = activate(loaded.pipe, plan_adapters(lab, plan, loaded.ref), family=loaded.ref.family)
    step_times: list[float] = []
    total = plan.steps * (plan.count if plan.modality == "video" else 1)
    cancelled = False

    trace = trace or Trace()
    vram = trace.vram or Vram(on_cuda=loaded.strategy.device == "gpu" and lab.hardware.device == "cuda")

    def on_step(i: int) -> bool:
        nonlocal cancelled
        step_times.append(time.perf_counter())
        vram.sample()
        # diffusers sets _num_timesteps before its loop (img2img runs fewer than plan.steps); after the last
        # step of a call the pipeline decodes
        n = getattr(pipe, "_num_timesteps", None) or plan.steps
        trace.step, trace.total = i, n
        trace.stage = "decode" if i >= n else "denoise"
        if progress is not None:
            progress(len(step_times), total)
        if cancel is not None and cancel.is_set():
            cancelled = True
        return cancelled

    device = lab.hardware.device if loaded.strategy.device == "gpu" else "cpu"
    control, control_records, control_maps, control_steps, release = None, [], [], [], None
    if plan.controls:
        trace.stage = "controlnet"
        pipe, control, control_records, control_maps, control_steps, release = _controlled(
            plan, loaded, pipe, device, lab.catalog)
    trace.stage = "denoise"
    image = _load_image(plan.image) if plan.image else None
    common = dict(steps=plan.steps, guidance=plan.guidance, width=plan.width, height=plan.height, seed=plan.seed,
                  count=plan.count, on_step=on_step)
    result = Result(plan=plan, strategy=loaded.strategy, applied=[*loaded.applied, *control_steps])
    if adapters:
        result.model["adapters"] = adapters
    start = time.perf_counter()
    with PeakMemory(device) as mem:
        if plan.task in ("txt2img", "img2img"):
            try:
                result.images = calls.run_image(pipe, prompt=plan.prompt, negative_prompt=plan.negative_prompt,
                                                image=image, strength=plan.strength, control=control, **common)
            finally:
                if release is not None:  # the ControlNets leave the device; the cached pipeline stays as it was
                    release()
        elif plan.task == "img2vid":
            result.clips = calls.run_img2vid(pipe, image=image, frames=plan.frames, fps=plan.fps,
                                             decode_chunk_size=loaded.strategy.decode_chunk_size,
                                             prompt=plan.prompt, negative_prompt=plan.negative_prompt, **common)
        else:
            result.clips = calls.run_txt2vid(pipe, prompt=plan.prompt, negative_prompt=plan.negative_prompt,
                                             frames=plan.frames, **common)
    end = time.perf_counter()
    marks = [start, *step_times]
    result.timings = {
        "step_s": [b - a for a, b in zip(marks, marks[1:], strict=False)],
        "steps_s": (step_times[-1] - start) if step_times else 0.0,
        "decode_s": end - (step_times[-1] if step_times else start),
    }
    result.peak_memory_gb = mem.peak / 2**30
    result.memory_kind = mem.kind
    result.vram = vram.summary()
    result.status = "cancelled" if cancelled else "finished"
    result.controls, result.control_maps = control_records, control_maps
    return result


def _input_image_record(path: str) -> dict[str, Any]:
    """The input image as the record names it: where it was read, its sha256, its pixel size."""
    import hashlib

    from PIL import Image

    p = Path(path).expanduser()
    with Image.open(p) as im:
        size = list(im.size)
    return {"file": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": size}


def _stage_images(folder: Path, written: list[Path], result: Result) -> None:
    """`folder/images/`: each output as an MLflow logged image (key "output-NN"; a clip: its first frame), and
    `folder/preview.png` (or `.gif`), the outputs at one path every render run has (`labkit.tracking.images`)."""
    from labkit.tracking.images import IMAGES_DIR, stage_image, stage_preview

    pngs = [p for p in written if p.suffix == ".png"]
    frames = pngs or [clip[0] for clip in result.clips]
    for i, image in enumerate(frames):
        stage_image(folder / IMAGES_DIR, f"output-{i:02d}", image)
    stage_preview(folder, written)


def _record(lab: Lab, run, result: Result, out: str | Path | None, identity=None, checked=None) -> None:
    """Write the outputs with their embedded record (signed with C2PA content credentials when the
    lab has a signing identity), and log everything to the run. `checked` is (plan, ref, verdicts) of the
    compliance check made before rendering, reused when the result is of that plan and model."""
    from labkit import outputs
    from labkit.compliance import Asset, derive_terms
    from labkit.tracking import versions
    from labkit.tracking.images import IMAGES_DIR, LOGGED_IMAGES_TAG
    from labkit.tracking.notes import NOTE_TAG, SUMMARY_TAG

    plan = result.plan
    if checked is not None and checked[1] is result.ref and checked[0] == plan:
        verdict, prompt_verdict = checked[2]
    else:  # a fallback model rendered: its own assets
        verdict, prompt_verdict = check_compliance(lab, plan, result.ref)
    base = licence_chain(plan, result.ref, plan_adapters(lab, plan, result.ref), lab.catalog)
    terms = derive_terms([*base, *(Asset("model", i["id"], i["licence"]) for i in result.inputs)])
    record = {
        "plan": plan.to_dict(), "model": {k: v for k, v in result.model.items()},
        "scheduler": result.model.get("scheduler"), "strategy": result.strategy.to_dict(), "applied": result.applied,
        "timings": result.timings, "hardware": lab.hardware.to_dict(), "versions": versions(),
        "run_id": run.run_id, "status": result.status, "fallback_reason": result.fallback_reason,
        "provenance": {
            "assets": [{**base[0].to_dict(), "hash": result.model["hash"]}, *(a.to_dict() for a in base[1:]),
                       *result.inputs],
            "terms": terms.to_dict(), "compliance": verdict.to_dict(), "prompt": prompt_verdict.to_dict(),
        },
        "terms": terms.text,
    }
    if plan.image:
        record["provenance"]["input_image"] = _input_image_record(plan.image)
    if result.controls:
        record["controls"] = result.controls
    result.record = record
    # Metrics and tags first, as one batched background write (waited for when the run closes), so
    # the store writes them while this thread encodes and copies the outputs.
    t = result.timings
    m = result.model
    tags = {
        "model.id": m["id"], "model.location": m["location"], "model.revision": m["revision"] or "",
        "model.family": m["family"], "model.hash": m["hash"], "model.licence": m["licence"] or "",
        "model.pipeline": m["pipeline"], "model.files": json.dumps(m["files"], sort_keys=True),
        **result.strategy.tags(), "strategy.applied": ", ".join(result.applied),
        "labkit.attempts": json.dumps([a.to_dict() for a in result.attempts]),
        "labkit.fallback_reason": result.fallback_reason or "", "labkit.status": result.status,
        **verdict.tags(), **terms.tags(),
        **({"model.adapters": json.dumps(m["adapters"], default=str)[:5000]} if m.get("adapters") else {}),
    }
    tags.update({NOTE_TAG: summary_line(result), SUMMARY_TAG: summary_line(result), LOGGED_IMAGES_TAG: "True"})
    if prompt_verdict.messages():
        tags["labkit.compliance.prompt"] = " | ".join(prompt_verdict.messages())[:5000]
    # the total first: the MLflow compare page's parallel-coordinates plot shows the first metric a run logged
    metrics = {"time.total_s": t["total_s"], "time.load_s": t["load_s"], "time.compile_s": t.get("compile_s", 0.0),
               "time.steps_s": t["steps_s"], "time.decode_s": t["decode_s"],
               "time.step_mean_s": sum(t["step_s"]) / len(t["step_s"]) if t["step_s"] else 0.0,
               f"memory.peak_{result.memory_kind}_gb": result.peak_memory_gb, "attempts": len(result.attempts)}
    series = {"time.step_s": t["step_s"]}
    if result.vram:  # CUDA only: the peaks and one sample per denoising step
        v = result.vram
        metrics.update({"vram/peak_allocated_gb": v["peak_allocated_gb"],
                        "vram/peak_reserved_gb": v["peak_reserved_gb"]})
        series.update({"vram/allocated_gb": v["allocated_gb"], "vram/reserved_gb": v["reserved_gb"]})
    run.record(metrics=metrics, series=series, tags=tags)
    stem = f"{plan.task}-{plan.seed}"
    staging = run.staging()  # beside the run's artifact folder (a server's: its local mirror): outputs move in, no copy
    with tempfile.TemporaryDirectory(prefix="labkit-out-", dir=staging) as tmp:
        tmp_dir = Path(tmp) / "outputs"
        tmp_dir.mkdir()
        if result.images:
            written = outputs.write_image_outputs(result.images, tmp_dir, stem, record, sidecar=True)
        else:
            written = []
            for i, clip in enumerate(result.clips):
                paths = outputs.write_video(clip, tmp_dir / f"{stem}-{i:02d}", plan.fps, {**record, "index": i})
                written += list(paths.values())
        signed = []
        if identity is not None:
            from labkit.compliance.signing import sign_outputs

            signed = sign_outputs(written, identity)
        _stage_images(Path(tmp), written, result)  # after signing: the MLflow images are the outputs as kept
        run.log_artifact(tmp_dir, "outputs", move=True)
        run.log_artifact(Path(tmp) / IMAGES_DIR, IMAGES_DIR, move=True)
        for preview in Path(tmp).glob("preview.*"):
            run.log_artifact(preview, move=True)
        done = run.artifact_dir / "outputs" if not tmp_dir.exists() else tmp_dir  # where the outputs are now
        if result.control_maps:  # the maps the ControlNets read, so the run alone shows what steered it
            maps_dir = Path(tempfile.mkdtemp(prefix="labkit-controls-", dir=tmp))
            for i, (m, c) in enumerate(zip(result.control_maps, result.controls, strict=True)):
                m.save(maps_dir / f"control-{i}-{c['kind']}.png")
            run.log_artifact(maps_dir, "controls")
        run.log_dict(plan.to_dict(), "plan.json")
        if plan.image:  # the input travels with the run, so the run alone shows what was animated or edited
            run.log_artifact(Path(plan.image).expanduser(), "inputs")
        result.files = [run.artifact_dir / "outputs" / p.name for p in written]
        if out is not None:
            from labkit.outputs import copy_outputs

            # each through a temporary name; another run's file of the same name is kept (the copy is tagged -v2)
            result.files += copy_outputs([done / p.name for p in written], out, option="out")
    if signed:
        run.set_tags({"labkit.c2pa": "signed", "labkit.c2pa.signer": identity.subject,
                      "labkit.c2pa.files": ", ".join(p.name for p in signed)})

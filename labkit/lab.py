"""`Lab`: the façade notebooks, panels, the CLI and sweeps all use.

A Lab holds the configuration, the hardware profile (detected on first use, or simulated), and
the MLflow tracker. Views build arguments and call its methods; they hold no logic of their own.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.config import LabConfig
from labkit.errors import InvalidParameter
from labkit.hardware import HardwareProfile, MemoryStrategy, choose, families, strategy_matrix
from labkit.lab_args import (  # the arguments' checks
    MAX_RUNS,
    _adapters_arg,
    _check_bool,
    _check_job,
    _check_job_spelling,
    _check_render_kwargs,
    _check_run_id,
    _check_str_list,
    _check_strategy_args,
    _check_task,
    _controls_arg,
    _describe,
    _path_arg,
    _size_arg,
)
from labkit.tracking import Run, Tracker, versions

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import Catalog
    from labkit.compliance import Verdict
    from labkit.plan import Plan
    from labkit.results import PipelineCache, Progress, Result
    from labkit.tracking import Run
    from labkit.tracking.compare import Comparison, RunSummary
    from labkit.training.env import TrainEnv


class Lab:
    """A research lab bound to one project folder and one MLflow store.

    Args:
        root: the project folder; found from the working directory when omitted (see
            `labkit.config.find_project_root`). A folder that does not exist is refused (a misspelt path
            would start a new, empty project), naming the close matches beside it.
        tracking_uri: an MLflow store URI overriding `MLFLOW_TRACKING_URI` and `labkit.toml`.
        experiment: the MLflow experiment runs go to (default "labkit").
        compliance_mode: the licence policy name (default "research").
        hardware: a profile to plan for instead of this machine (e.g. `HardwareProfile.simulated(8)`).
        config: a complete `LabConfig`; when given, the arguments above must be omitted.
        create: start a new project at `root` when the folder does not exist yet (it is created; the MLflow
            store in it on first use).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        compliance_mode: str | None = None,
        hardware: HardwareProfile | None = None,
        config: LabConfig | None = None,
        create: bool = False,
    ):
        if hardware is not None and not isinstance(hardware, HardwareProfile):
            raise InvalidParameter(f"hardware must be a HardwareProfile, got {type(hardware).__name__} "
                                   f"{hardware!r:.80}.", value=hardware,
                                   fix="pass HardwareProfile.detect(), HardwareProfile.simulated(8) (8 GB of VRAM; "
                                       "None: a CPU), or leave it out to detect it.")
        if config is not None:
            given = [k for k, v in (("root", root), ("tracking_uri", tracking_uri), ("experiment", experiment),
                                    ("compliance_mode", compliance_mode)) if v is not None] + (["create"] if create
                                                                                               else [])
            if given:  # they would be ignored without a word
                raise InvalidParameter(f"Lab(config=...) takes no {', '.join(given)}: the config already holds them.",
                                       value=given, fix="pass either config=, or the separate arguments; to change "
                                       "one field, dataclasses.replace(config, experiment=...).")
        self.config = config or LabConfig.resolve(root, tracking_uri=tracking_uri, experiment=experiment,
                                                  compliance_mode=compliance_mode, create=create)
        self._hardware = hardware
        self.tracker = Tracker(self.config)
        from labkit.compliance import resolve_mode

        # Resolved now so a misspelt mode fails before any work; the same Mode is used everywhere.
        self.compliance = resolve_mode(self.config.compliance_mode, source=self.config.compliance_mode_source)
        self._catalog: Catalog | None = None
        self._pipelines: PipelineCache | None = None
        self._hash_cache: dict[str, Any] | None = None
        #: The last render's Result and the last run this lab closed (what `note()` attaches to).
        self.last_result: Result | None = None
        self.last_run_id: str | None = None
        self._open_runs: list[Run] = []

    def __repr__(self) -> str:
        return f"Lab(root={str(self.config.root)!r}, tracking_uri={self.config.tracking_uri!r})"

    @property
    def hardware(self) -> HardwareProfile:
        """This machine's profile, detected on first use (or the profile the lab was given)."""
        if self._hardware is None:
            self._hardware = HardwareProfile.detect()
        return self._hardware

    @property
    def catalog(self) -> Catalog:
        """The model catalogue (shipped entries plus `$LABKIT_CATALOG`), read on first use."""
        if self._catalog is None:
            from labkit.catalog import Catalog

            self._catalog = Catalog.load()
        return self._catalog

    @property
    def pipelines(self) -> PipelineCache:
        """Loaded pipelines kept for reuse, within half of this machine's RAM."""
        if self._pipelines is None:
            from labkit.results import PipelineCache

            budget = (self.hardware.ram_total_gb or 8.0) * 2**30 / 2
            self._pipelines = PipelineCache(int(budget))
        return self._pipelines

    @property
    def hash_cache(self) -> dict[str, Any]:
        """sha256 of weight files already hashed, by path, size and mtime (kept beside the store)."""
        if self._hash_cache is None:
            path = self._hash_cache_path
            try:
                self._hash_cache = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError):
                self._hash_cache = {}
        return self._hash_cache

    @property
    def _hash_cache_path(self) -> Path:
        return self.config.root / "mlruns" / "weight-hashes.json"

    def save_hash_cache(self) -> None:
        """Merge this lab's weight hashes into the file other processes of the project share."""
        from labkit.locks import file_lock
        from labkit.outputs import atomic_write_bytes

        path = self._hash_cache_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):  # read-modify-write: another process may have added hashes meanwhile
            try:
                on_disk = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError):
                on_disk = {}
            merged = {**(on_disk if isinstance(on_disk, dict) else {}), **self.hash_cache}
            atomic_write_bytes(path, json.dumps(merged).encode(), mode=0o644)
        self._hash_cache = merged

    @property
    def cleaned_up(self) -> list[dict[str, str]]:
        """Runs of this host left RUNNING by a process that died, which opening the store ended KILLED
        (each: run_id, name, pid, host). Opens the store if it is not open yet."""
        _ = self.tracker.client
        return list(self.tracker.reaped)

    def default_model(self, modality: str) -> str:
        """The model a plan without one uses: `[lab] default_image_model` / `default_video_model`."""
        if modality not in ("image", "video"):
            raise InvalidParameter(f"Unknown modality {modality!r}.", value=modality, fix="use 'image' or 'video'.")
        return self.config.default_video_model if modality == "video" else self.config.default_image_model

    # -- generation -----------------------------------------------------------------------------

    def render(self, plan: Plan, *, progress: Progress | None = None, cancel: threading.Event | None = None,
               out: str | Path | None = None, allow_pickle: bool = False, config: str | None = None,
               tags: Mapping[str, Any] | None = None) -> Result:
        """Render a plan and record it as one MLflow run (see `labkit.render.render`).

        Args:
            plan: what to render; open fields are filled from the model's catalogue entry.
            progress: called as progress(step, total) after each denoising step.
            cancel: set this event to stop after the current step; the partial output is kept
                and the run ends KILLED.
            out: also copy the output files into this folder.
            allow_pickle: allow weights in pickle formats (they can run code when loaded).
            config: for a single-file checkpoint, the diffusers folder or repo id of its base model.
            tags: extra MLflow tags for the run.
        """
        from labkit.render import render

        result = render(self, plan, progress=progress, cancel=cancel, out=out, allow_pickle=allow_pickle,
                        config=config, tags=tags)
        self.last_result = result
        return result

    def complete(self, plan: Plan, *, validate: bool = True, config: str | None = None) -> Plan:
        """`plan` with its model and open fields filled in from the catalogue and (unless `validate`
        is False) validated, without loading anything: the plan `render` would start from. Raises
        `LabkitError` for an unknown model or a bad value."""
        from labkit.render import complete

        _check_bool("validate", validate)
        return complete(self, plan, config, validate=validate)[0]

    # What the jobs that render many prompts on one loaded pipeline (labkit.evals, below this floor) call
    # on the lab they are given: the façade's render steps, so those jobs never import labkit.render.

    def prepare(self, plan: Plan, config: str | None = None) -> tuple[Plan, Any]:
        """`plan` completed and validated (adapters found, inputs readable) before any heavy work, and the
        `ModelRef` of its model: what `render` checks first."""
        from labkit.render import prepare

        return prepare(self, plan, config)

    def load_pipeline(self, ref: Any, strategy: MemoryStrategy | None = None) -> Any:
        """The loaded pipeline (`Loaded`) for `ref` from the lab's cache, or loaded now with `strategy`
        (default: the one this machine's hardware chooses for the model's family)."""
        from labkit.render import load_cached

        return load_cached(self, ref, strategy or choose(ref.family, self.hardware))[0]

    def keyframe_for(self, ref: Any) -> str | None:
        """The image model that draws frame 0 of `ref`'s text-to-video clips, or None."""
        from labkit.render import keyframe_for

        return keyframe_for(ref)

    def keyframe_drawer(self, ref: Any, *, steps: int, width: int, height: int) -> Any:
        """(clip prompt, seed) -> the keyframe model's picture, as `render` draws it; None without one."""
        from labkit.render import keyframe_drawer

        return keyframe_drawer(self, ref, steps=steps, width=width, height=height)

    def plan(self, request: str, *, controller: str = "rules", use_cache: bool = True) -> Plan:
        """The plan a controller writes for `request`, without rendering it.

        `controller` is "rules", "local:<model>" or "remote:<url>#<model>". When an LLM
        controller fails (unreachable, timed out, invalid output) the `rules` controller plans
        instead and the plan's `controller.fallback_reason` says why. Plans from a controller
        that worked are cached beside the store: the same controller, model revision, request
        and context give the same plan without calling the LLM again.
        """
        import dataclasses

        from labkit.compliance import licence_ok
        from labkit.controller.base import PlanContext, get_controller
        from labkit.controller.cache import PlanCache
        from labkit.errors import ControllerFailed
        from labkit.plan import MAX_PROMPT_CHARS, check_text

        check_text("request", request, max_chars=MAX_PROMPT_CHARS, nonempty=True)
        check_text("controller", controller, max_chars=2000, nonempty=True)
        _check_bool("use_cache", use_cache)
        context = PlanContext.from_lab(self, licence_ok=licence_ok(self.compliance))
        ctrl = get_controller(controller)
        cache = PlanCache(self.config.root / "mlruns" / "plan-cache")
        key = cache.key(ctrl.name, ctrl.model, ctrl.revision, request, context.fingerprint())
        if use_cache and (hit := cache.get(key)) is not None:
            return hit
        try:
            plan = ctrl.plan(request, context)
        except ControllerFailed as e:
            plan = get_controller("rules").plan(request, context)
            why = f"{controller} failed: {e.message}"
            # Not cached: the next call should try the LLM again.
            return plan.replace(controller=dataclasses.replace(plan.controller, fallback_reason=why))
        cache.put(key, plan, request)
        return plan

    def ask(self, request: str, *, controller: str = "rules", **render_kwargs: Any) -> Result:
        """Plan `request` with `controller`, then render the plan (see `plan` and `render`)."""
        _check_render_kwargs("ask", render_kwargs)
        return self.render(self.plan(request, controller=controller), **render_kwargs)

    def replay(self, run_id: str, *, check: bool = False):
        """Render a recorded run's stored plan again; with `check`, compare the pixels.

        Returns (Result, ReplayCheck or None). See `labkit.replay`.
        """
        from labkit.replay import replay

        _check_run_id("run_id", run_id)
        _check_bool("check", check)
        return replay(self, run_id, check=check)

    def generate(self, prompt: str, *, model: str | None = None, negative_prompt: str = "",
                 steps: int | None = None, guidance: float | None = None, seed: int | None = None,
                 size: tuple[int, int] | None = None, n: int = 1, image: str | Path | None = None,
                 strength: float | None = None, adapters: Sequence[Any] = (), controls: Sequence[Any] = (),
                 speed: str = "default", **render_kwargs: Any) -> Result:
        """Text-to-image, or image-to-image when `image` is given. `size` is (width, height).

        `adapters`: LoRA adapters, each an `AdapterRef` or a string "PATH_OR_ID[:WEIGHT]" (a
        `.safetensors` file or folder, "run:RUN_ID", an `[adapters.ID]` catalogue entry, a hub repo).
        `controls`: ControlNets, each a `ControlRef` (or its dict form), e.g.
        `ControlRef("pose", "pose.json", model="lllyasviel/control_v11p_sd15_openpose", scale=0.8)`.
        `speed`: "max" opts in to the speed-first rung (see `Plan.speed`)."""
        from labkit.plan import MAX_COUNT, Plan, check_int

        # Every argument is checked here, before a model is resolved: a wrong type names itself
        # rather than surfacing as a TypeError from deep inside.
        _check_render_kwargs("generate", render_kwargs)
        check_int("n", n, lo=1, hi=MAX_COUNT)
        width, height = _size_arg(size)
        plan = Plan(prompt=prompt, model=model, negative_prompt=negative_prompt, steps=steps, guidance=guidance,
                    seed=seed, width=width, height=height, count=n, image=_path_arg("image", image),
                    strength=strength, adapters=_adapters_arg(adapters), controls=_controls_arg(controls),
                    speed=speed).check_fields()
        return self.render(plan, **render_kwargs)

    def video(self, prompt: str = "", *, image: str | Path | None = None, model: str | None = None,
              frames: int | None = None, fps: int | None = None, seed: int | None = None,
              steps: int | None = None, guidance: float | None = None, size: tuple[int, int] | None = None,
              negative_prompt: str = "", n: int = 1, speed: str = "default", **render_kwargs: Any) -> Result:
        """Image-to-video when `image` is given, else text-to-video. `speed`: "max" opts in to the speed-first
        rung where the family has one (see `Plan.speed`)."""
        from labkit.plan import MAX_COUNT, Plan, check_int

        _check_render_kwargs("video", render_kwargs)
        check_int("n", n, lo=1, hi=MAX_COUNT)
        width, height = _size_arg(size)
        plan = Plan(prompt=prompt, modality="video", model=model, image=_path_arg("image", image),
                    frames=frames, fps=fps, seed=seed, steps=steps, guidance=guidance, width=width, height=height,
                    negative_prompt=negative_prompt, count=n, speed=speed).check_fields()
        return self.render(plan, **render_kwargs)

    def strategy(self, family: str, *, speed: str = "default", controls: int = 0, adapters: int = 0,
                 **overrides: Any) -> MemoryStrategy:
        """The memory strategy `family` gets on this lab's hardware (see `labkit.hardware.choose`).

        `speed` "max" opts in to the speed-first rung; `controls` ControlNets and `adapters` LoRA adapters count
        as they do in a render. `overrides` replace single fields and are recorded on the strategy: dtype
        (float32, float16, bfloat16), offload (none, model, group, sequential), compile_mode, decode_chunk_size,
        est_peak_vram_gb and the switches (vae_tiling, vae_slicing, attention_slicing, forward_chunking,
        channels_last, fuse_qkv, compile, compile_vae: True or False). A value labkit does not support is refused
        with the allowed ones."""
        from labkit.plan import check_text

        check_text("family", family, max_chars=200, nonempty=True)
        _check_strategy_args(speed, controls, adapters, overrides)
        return choose(family, self.hardware, speed=speed, controls=controls, adapters=adapters, **overrides)

    @contextmanager
    def run(self, name: str | None = None, *, params: Mapping[str, Any] | None = None,
            tags: Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[Run]:
        """An MLflow run carrying this lab's hardware profile and compliance mode as tags.

        See `Tracker.run` for the semantics (FAILED with the error recorded when the body raises).
        """
        from labkit.tracking.store import check_run_args

        check_run_args(tags=tags)  # before it is merged with the lab's own
        all_tags = {**self.hardware.tags(), "labkit.compliance_mode": self.config.compliance_mode,
                    **(tags or {})}
        with self.tracker.run(name, params=params, tags=all_tags, **kwargs) as run:
            self._open_runs.append(run)  # the Run: its id is known once the store has created it
            try:
                yield run
            finally:
                self._open_runs.remove(run)
                self.last_run_id = run.run_id

    def train_env(self) -> TrainEnv:
        """What training takes from this lab: runs opened by `Lab.run`, its hardware, compliance and catalogue."""
        from labkit.training.env import TrainEnv, catalog_finder

        return TrainEnv(tracker=self.tracker, hardware=self.hardware, compliance=self.compliance,
                        find_model=catalog_finder(lambda: self.catalog), open_run=self.run)

    def train(self, config: Any, **kwargs: Any) -> Any:
        """Run the recipe of `config` (LoraTrainConfig, DreamBoothConfig, ToyBaseConfig, ToyMotionConfig,
        ToyWarpConfig, ToyControlNetConfig) in this lab; `kwargs` go to it (e.g. `callbacks=`). Returns what the
        recipe returns (see `labkit.training.recipes`)."""
        from labkit.training.recipes import run_recipe

        return run_recipe(self.train_env(), config, **kwargs)

    # -- models, notes and runs: what the panels show ------------------------------------------

    def models(self, task: str | None = None) -> list[ModelStatus]:
        """The catalogue's models (those doing `task`, when given) marked against this machine and
        the compliance mode: whether each fits, needs offload or is too large here, whether the mode
        allows, warns about or blocks its licence, and whether its weights are here."""
        from labkit.controller.fit import model_fit
        from labkit.controller.vocabulary import Vocabulary
        from labkit.pipelines.loader import is_available, resolve_model

        _check_task(task)
        entries = self.catalog.entries(task) if task else list(self.catalog)
        if task == "txt2vid":  # an image-to-video model animates a rendered first frame
            entries += [e for e in self.catalog.entries("img2vid") if e not in entries]
        verdict = self.check_catalog(entries=[e.id for e in entries])
        vocab = Vocabulary.load()
        out = []
        for entry, decision in zip(entries, verdict.decisions, strict=True):
            fit = model_fit(entry, self.hardware, vocab)
            if fit.strategy is None:
                label = "no strategy"
            elif not fit.fits:
                label = "too slow on CPU" if self.hardware.tier == "cpu" else "too large"
            elif self.hardware.tier != "cpu" and fit.strategy.offload != "none":
                label = "needs offload"
            else:
                label = "fits"
            try:
                available = is_available(resolve_model(entry.id, self.catalog))
            except Exception:  # a broken entry is reported by `labkit doctor`; here it is just not available
                available = False
            out.append(ModelStatus(id=entry.id, name=entry.name, family=entry.family, tasks=entry.tasks,
                                   licence=entry.licence, fit=label, fit_detail=fit.describe(self.hardware),
                                   strategy=fit.strategy.name if fit.strategy else None,
                                   compliance=decision.action, reasons=decision.reasons, available=available))
        return out

    def check_catalog(self, mode: str | None = None, *, entries: list[str] | None = None) -> Verdict:
        """The compliance verdict on every catalogue model (or the ids in `entries`) under `mode`
        (default: the lab's mode): one decision per model, never raising for a blocked one."""
        from labkit.compliance import Asset, check
        from labkit.plan import check_text

        check_text("mode", mode, optional=True, max_chars=200, nonempty=True)
        _check_str_list("entries", entries, optional=True)
        chosen = [self.catalog.get(i) for i in entries] if entries is not None else list(self.catalog)
        return check([Asset("model", e.id, e.licence, e.revision, e.repo or e.source) for e in chosen],
                     mode or self.compliance)

    def note(self, markdown: str, run_id: str | None = None, *, experiment: bool = False,
             replace: bool = False) -> dict[str, str]:
        """Attach a research note (Markdown) to a run or to the experiment; the MLflow UI and the Runs
        panel show it.

        The note goes to `run_id` when given; else to the experiment when `experiment=True`; else to
        the run open in `with lab.run(...)`, or the last run this lab closed (e.g. the last render);
        else, when this lab has made no run yet, to the experiment — the same target `notes()` reads, so
        `lab.note(text)` then `lab.notes()` shows it. Notes add up below one another unless `replace`.
        Returns {"target": "run" | "experiment", "id": …, "note": the whole note}.
        """
        from labkit.plan import check_text

        check_text("note", markdown)  # blank and too long: the store says so, with MLflow's own limits
        _check_bool("replace", replace)
        run_id = self._note_target(run_id, experiment)
        if run_id is not None:
            return {"target": "run", "id": run_id, "note": self.tracker.note(markdown, run_id, replace=replace)}
        note = self.tracker.note(markdown, replace=replace)
        return {"target": "experiment", "id": self.tracker.experiment_id(), "note": note}

    def notes(self, run_id: str | None = None, *, experiment: bool = False) -> str:
        """The note of run `run_id`; else of the experiment when `experiment=True`; else of the run `note()`
        would write to (the open run, or the last run this lab closed; the experiment when it has made none)."""
        return self.tracker.get_note(self._note_target(run_id, experiment))

    def _note_target(self, run_id: str | None, experiment: bool) -> str | None:
        """The run `note()` and `notes()` mean (None: the experiment)."""
        if run_id is not None:
            from labkit.tracking.links import resolve_run

            _check_run_id("run_id", run_id)
            run_id = resolve_run(self.tracker, run_id).info.run_id  # or its first characters
        _check_bool("experiment", experiment)
        if run_id is not None and experiment:
            raise InvalidParameter(f"Both a run ({run_id!r}) and experiment=True were given.", value=run_id,
                                   fix="pass the run id for a run's note, or experiment=True for the experiment's.")
        if run_id is None and not experiment:
            run_id = self._open_runs[-1].run_id if self._open_runs else self.last_run_id
        return run_id

    def runs(self, n: int = 20, *, job: str | None = None, filter_string: str = "") -> list[RunSummary]:
        """The experiment's `n` most recent runs (of one `job`, e.g. "render", when given), newest first."""
        from labkit.plan import check_int, check_text
        from labkit.tracking.compare import RunSummary

        check_int("n", n, lo=1, hi=MAX_RUNS)
        _check_job(job)
        check_text("filter_string", filter_string, max_chars=10_000)
        if job:
            clause = f"tags.`labkit.job` = '{job}'"
            filter_string = f"{filter_string} and {clause}" if filter_string else clause
        found = self.tracker.search_runs(filter_string=filter_string, max_results=n)  # bad syntax: InvalidParameter
        if job and not found:
            _check_job_spelling(job)  # "rendr": a misspelt job of labkit's, not an empty history
        return [RunSummary.from_mlflow(r, self.tracker) for r in found]

    def runs_frame(self, n: int = 100, *, job: str | None = None):
        """`runs(n, job=job)` as a pandas DataFrame: one row per run, plan params, metrics, terms, note."""
        from labkit.tracking.compare import to_frame

        return to_frame(self.runs(n, job=job))  # runs() checks n and job

    def compare(self, run_ids: list[str]) -> Comparison:
        """The runs `run_ids` side by side: the plan params that differ and their per-step timings."""
        from labkit.tracking.compare import RunSummary, compare

        if isinstance(run_ids, str):
            raise InvalidParameter(f"compare takes a list of run ids, got one string {run_ids!r}.", value=run_ids,
                                   fix=f"pass [{run_ids!r}] (a list), e.g. lab.compare([id1, id2]).")
        _check_str_list("run_ids", run_ids)
        if not run_ids:
            raise InvalidParameter("No runs to compare.", value=run_ids, fix="pass one or more run ids.")
        for rid in run_ids:
            _check_run_id("run id", rid)
        from labkit.tracking.links import resolve_run

        client = self.tracker.client
        # each a full id, or its first characters as lab.runs() and the Runs panel show them
        runs = [RunSummary.from_mlflow(resolve_run(self.tracker, rid), self.tracker) for rid in run_ids]
        steps = {r.run_id: [m.value for m in sorted(client.get_metric_history(r.run_id, "time.step_s"),
                                                    key=lambda m: m.step)] for r in runs}
        return compare(runs, {"time.step_s": steps})

    def keep_input(self, data: bytes, name: str) -> Path:
        """Store an input file (e.g. an uploaded image) in the project, named by its content hash, and
        return its path: a plan that names it stays replayable."""
        import hashlib

        from labkit.plan import check_text

        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidParameter(f"keep_input needs the file's bytes, got {_describe(data)}.",
                                   value=type(data).__name__, fix="pass Path(file).read_bytes().")
        check_text("name", name, max_chars=1000, nonempty=True)
        data = bytes(data)
        suffix = Path(name).suffix.lower() or ".png"
        folder = self.config.root / "mlruns" / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
        if not path.exists():
            from labkit.outputs import atomic_write_bytes

            atomic_write_bytes(path, data, mode=0o644)  # another process may read it the moment it appears
        return path

    def doctor(self) -> dict[str, Any]:
        """The lab's self-report: hardware, strategies (family → tier → strategy), this machine's
        strategy per family, the tracking store, and versions."""
        from labkit.errors import LabkitError

        tracking: dict[str, Any] = {
            "uri": self.config.tracking_uri,
            "artifact_root": str(self.config.artifact_root),
            "experiment": self.config.experiment,
            "project_root": str(self.config.root),
        }
        if self.config.tracking_uri.startswith(("http://", "https://")):  # a tracking server keeps the artifacts
            tracking["artifact_root"] = f"on the tracking server (mlflow-artifacts:/), local copies in " \
                                        f"{self.tracker.mirror}"
        try:  # opening the store also ends the runs whose process died (see `cleaned_up`)
            tracking["cleaned_up"] = self.cleaned_up
            tracking["status"] = "ok"
        except LabkitError as e:
            tracking["status"] = f"error: {e}"
        return {
            "hardware": self.hardware.to_dict(),
            "strategies": strategy_matrix(),
            "this_machine": {fam: self.strategy(fam).name for fam in families()},
            "tracking": tracking,
            "compliance_mode": self.config.compliance_mode,
            "versions": versions(),
        }

    def explain_run(self, run_id: str) -> dict[str, Any]:
        """What run `run_id` did; for a failed render what failed, at which rung and stage, and what to change
        (`fixes`). See `labkit.diagnose.explain_run`; `labkit doctor --run RUN_ID` prints it."""
        from labkit.diagnose import explain_run

        return explain_run(self, run_id)

    def demo(self, out: str | Path | None = None) -> dict[str, Any]:
        """The lab's main job on the embedded default, recorded as one MLflow run.

        Reports the hardware and the strategy each model family gets here; when the toy-world
        model is installed, renders `DEMO_PROMPTS` with it (each render a child run holding its
        images with their records) and logs a grid of the results on the demo run.
        """
        from labkit.pipelines.loader import is_available, resolve_model
        from labkit.plan import Plan
        from labkit.render import check_render_args

        check_render_args(Plan(prompt="demo"), out=out)
        report = self.doctor()
        model = self.default_model("image")
        renders: list[Result] = []
        with self.run("demo", params={"job": "demo", "hardware.tier": self.hardware.tier, "model": model},
                      tags={"labkit.job": "demo"}) as run:
            run.log_dict(report, "doctor.json")
            run.log_text(hardware_report(report), "hardware.md")
            if is_available(resolve_model(model, self.catalog)):
                for i, prompt in enumerate(DEMO_PROMPTS):
                    renders.append(self.render(Plan(prompt=prompt, model=model, seed=i), out=out,
                                               tags={"mlflow.parentRunId": run.run_id}))
                from labkit.outputs import captioned_grid

                grid = captioned_grid([r.image for r in renders], list(DEMO_PROMPTS), cols=len(renders))
                with tempfile.TemporaryDirectory() as tmp:
                    grid.save(Path(tmp) / "demo-grid.png")
                    run.log_artifact(Path(tmp) / "demo-grid.png")
                run.log_metrics({"render.mean_total_s": sum(r.timings["total_s"] for r in renders) / len(renders)})
            run_id, artifact_dir = run.run_id, run.artifact_dir
        return {"run_id": run_id, "experiment": self.config.experiment, "tracking_uri": self.config.tracking_uri,
                "artifact_dir": str(artifact_dir), "report": report, "model": model, "renders": renders}


@dataclass(frozen=True)
class ModelStatus:
    """A catalogue model as the model menu shows it (see `Lab.models`).

    fit: "fits", "needs offload", "too large" (GPU) or "too slow on CPU"; fit_detail: the starting
    strategy and its estimate. compliance: "allow", "warn" or "block" under the lab's mode, with the
    reasons. available: whether its weights can load now (a packaged or local model is on disk;
    offline, a hub model is cached).
    """

    id: str
    name: str
    family: str
    tasks: tuple[str, ...]
    licence: str
    fit: str
    fit_detail: str
    strategy: str | None
    compliance: str
    reasons: tuple[str, ...] = ()
    available: bool = True

    @property
    def label(self) -> str:
        """One line for a menu: 'toyworld — fits, allowed'."""
        word = {"allow": "allowed", "warn": "licence warns", "block": "blocked"}[self.compliance]
        return f"{self.id} — {self.fit}, {word}" + ("" if self.available else ", not installed")


#: What `labkit demo` draws with the toy world: one of each kind of prompt it understands.
DEMO_PROMPTS = ("a small red circle on the left", "one large blue square in the centre",
                "a yellow triangle at the top", "a green diamond on the right and a purple circle on the left")


def hardware_report(report: Mapping[str, Any]) -> str:
    """A doctor report as Markdown a person reads: the machine, each family's strategy here and on every VRAM
    tier, the compliance mode, the tracking store and the versions."""
    hw = report["hardware"]
    lines = ["# Hardware", "", f"- device: {hw['device']} (tier {hw['tier']})"]
    if hw.get("gpu_name"):
        lines.append(f"- GPU: {hw['gpu_name']}, {hw['vram_total_gb']} GB total, {hw['vram_free_gb']} GB free")
    lines += [f"- RAM: {hw['ram_total_gb']} GB, {hw['cpu_count']} cores, platform {hw['platform']}",
              *(f"- note: {n}" for n in hw.get("notes", [])), "", "# Memory strategy per model family", ""]
    tier = hw["tier"]
    for fam, name in report["this_machine"].items():
        s = report["strategies"][fam][tier]
        steps = ", ".join(MemoryStrategy(**{**s, "overrides": tuple(s["overrides"]),
                                            "notes": tuple(s.get("notes", ()))}).steps())
        lines.append(f"- {fam}: {name} ({steps})")
    tiers = list(next(iter(report["strategies"].values()), {}))
    lines += ["", "# Memory strategy per VRAM tier (GB)", "",
              "| family | " + " | ".join(f"**{t}** (here)" if t == tier else t for t in tiers) + " |",
              "|---" * (len(tiers) + 1) + "|",
              *(f"| {fam} | " + " | ".join(by_tier[t]["name"] for t in tiers) + " |"
                for fam, by_tier in report["strategies"].items())]
    if report.get("compliance_mode"):
        lines += ["", "# Compliance", "", f"- mode: {report['compliance_mode']}"]
    t = report["tracking"]
    lines += ["", "# Tracking", "", f"- store: {t['uri']} ({t.get('status', 'not opened')})",
              f"- artifacts: {t['artifact_root']}", f"- experiment: {t['experiment']}",
              *(f"- ended KILLED (its process {r['pid']} died): run {r['run_id']} {r['name']}"
                for r in t.get("cleaned_up", [])),
              "", "# Versions", "", *(f"- {k}: {v}" for k, v in report["versions"].items())]
    return "\n".join(lines) + "\n"


# -- argument checks shared by the public methods above ----------------------------------------
# The type and range checks themselves live with the plan data (`labkit.plan`:
# check_text, check_int, check_number); these name the façade's own arguments.

#: The most runs one listing returns.

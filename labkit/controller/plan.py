"""`Plan`: one generation, as data.

A plan is what a controller writes and what the lab renders: JSON in, JSON out, and the same
plan renders the same result. Defaults a user left open (size, steps, guidance, frames, the seed)
are filled in by `resolve()` from the model's catalogue entry and stored in the plan, so the
recorded plan is always complete and replayable.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import CatalogEntry

Modality = Literal["image", "video"]
Task = Literal["txt2img", "img2img", "img2vid", "txt2vid"]

#: Bounds that keep a single plan from asking for more than one machine can hold.
MAX_COUNT = 16
MAX_STEPS = 500
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class ControllerInfo:
    """Which controller wrote a plan: its name ("api", "rules", "local", "remote"), the LLM, its
    revision and licence (which joins the output's licence chain), and why it fell back to
    another controller if it did."""

    name: str = "api"
    model: str | None = None
    revision: str | None = None
    licence: str | None = None
    fallback_reason: str | None = None


@dataclass(frozen=True)
class AdapterRef:
    """An adapter (LoRA) to apply, with its weight."""

    id: str
    weight: float = 1.0


@dataclass(frozen=True)
class Plan:
    """One generation request, complete enough to render and to replay.

    Attributes:
        prompt: what to render.
        modality: "image" or "video".
        negative_prompt: what to steer away from.
        model: a catalogue id, a diffusers repo id, a local folder or a `.safetensors` file;
            None means the lab's default for the modality.
        adapters: LoRA adapters with weights.
        width, height: output size in pixels (None: the model's default).
        steps: denoising steps; guidance: classifier-free guidance scale.
        seed: the seed of the first output; output i uses seed + i. None: chosen by `resolve()`.
        count: how many images (or clips).
        frames, fps: clip length and playback rate (video only).
        image: an input image path, for image-to-image and image-to-video.
        strength: how far image-to-image may move from the input (0–1).
        controller: who wrote the plan; rationale: why, in a sentence.
    """

    prompt: str
    modality: Modality = "image"
    negative_prompt: str = ""
    model: str | None = None
    adapters: tuple[AdapterRef, ...] = ()
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    count: int = 1
    frames: int | None = None
    fps: int | None = None
    image: str | None = None
    strength: float | None = None
    controller: ControllerInfo = field(default_factory=ControllerInfo)
    rationale: str = ""

    @property
    def task(self) -> Task:
        """txt2img, img2img, img2vid or txt2vid — from the modality and whether an image is given."""
        if self.modality == "image":
            return "img2img" if self.image else "txt2img"
        return "img2vid" if self.image else "txt2vid"

    # -- data in, data out ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adapters"] = [dataclasses.asdict(a) for a in self.adapters]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """A plan from its dict form; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidParameter(f"Unknown plan field(s) {sorted(unknown)}.", value=sorted(unknown),
                                   fix=f"use only {sorted(known)}.")
        data = dict(data)
        data["adapters"] = tuple(a if isinstance(a, AdapterRef) else AdapterRef(**a)
                                 for a in data.get("adapters") or ())
        ctrl = data.get("controller")
        if isinstance(ctrl, dict):
            data["controller"] = ControllerInfo(**ctrl)
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise InvalidParameter(f"A plan must be a JSON object: {e}.", value=text[:80],
                                   fix="pass the text written by Plan.to_json().") from e

    def replace(self, **changes: Any) -> Plan:
        return dataclasses.replace(self, **changes)

    # -- completing and checking ---------------------------------------------------------------

    def resolve(self, entry: CatalogEntry | None, *, rng: random.Random | None = None) -> Plan:
        """The plan with every open field filled in from the model's catalogue entry (or
        general defaults for an uncatalogued model) and a seed chosen if none was given."""
        d = entry
        changes: dict[str, Any] = {}
        default_size = tuple(d.default_size) if d and d.default_size else (512, 512)
        if self.width is None:
            changes["width"] = default_size[0]
        if self.height is None:
            changes["height"] = default_size[1]
        if self.steps is None:
            changes["steps"] = d.default_steps if d and d.default_steps else 25
        if self.guidance is None:
            changes["guidance"] = d.default_guidance if d and d.default_guidance is not None else 7.5
        if self.seed is None:
            changes["seed"] = (rng or random.SystemRandom()).randint(0, MAX_SEED)
        if self.modality == "video":
            if self.frames is None:
                changes["frames"] = d.default_frames if d and d.default_frames else 14
            if self.fps is None:
                changes["fps"] = d.default_fps if d and d.default_fps else 7
        if self.task == "img2img" and self.strength is None:
            changes["strength"] = 0.6
        return self.replace(**changes) if changes else self

    def validate(self, entry: CatalogEntry | None = None) -> Plan:
        """Raise `InvalidParameter` naming the first bad field and its fix; return self when valid.

        Checks the plan's own bounds, and with a catalogue entry the model's size range, task
        and frame limit.
        """
        if not isinstance(self.prompt, str) or (not self.prompt.strip() and self.task in ("txt2img", "txt2vid")):
            raise InvalidParameter("The prompt is empty.", value=self.prompt,
                                   fix="describe what to render, e.g. 'a red circle on the left'.")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidParameter(f"The prompt has {len(self.prompt)} characters.", value=len(self.prompt),
                                   fix=f"shorten it to at most {MAX_PROMPT_CHARS} characters.")
        if self.modality not in ("image", "video"):
            raise InvalidParameter(f"Unknown modality {self.modality!r}.", value=self.modality,
                                   fix="use 'image' or 'video'.")
        _int_in("count", self.count, 1, MAX_COUNT)
        if self.steps is not None:
            _int_in("steps", self.steps, 1, MAX_STEPS)
        if self.seed is not None:
            _int_in("seed", self.seed, 0, MAX_SEED)
        if self.guidance is not None and not (0 <= float(self.guidance) <= 50):
            raise InvalidParameter(f"guidance {self.guidance!r} is outside 0–50.", value=self.guidance,
                                   fix="use a guidance scale between 0 (turbo models) and about 12.")
        if self.strength is not None and not (0 < float(self.strength) <= 1):
            raise InvalidParameter(f"strength {self.strength!r} is outside (0, 1].", value=self.strength,
                                   fix="use a strength between 0.1 (close to the input) and 1.0.")
        if self.task == "img2img" and not self.image:
            raise InvalidParameter("Image-to-image needs an input image.", value=None, fix="pass image=PATH.")
        for a in self.adapters:
            if not -4 <= float(a.weight) <= 4:
                raise InvalidParameter(f"Adapter {a.id!r} has weight {a.weight!r}.", value=a.weight,
                                       fix="use a weight between -4 and 4 (1.0 is the trained strength).")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None:
                _int_in(name, v, 8, 4096)
                multiple = entry.size_multiple if entry and entry.size_multiple else 8
                if v % multiple:
                    raise InvalidParameter(f"{name} {v} is not a multiple of {multiple}.", value=v,
                                           fix=f"use {v - v % multiple or multiple} or {v - v % multiple + multiple}.")
        if self.modality == "video":
            if self.frames is not None:
                _int_in("frames", self.frames, 1, 257)
                if entry is not None and entry.is_video:
                    from labkit.catalog import validate_frames

                    validate_frames(entry, self.frames)
            if self.fps is not None:
                _int_in("fps", self.fps, 1, 60)
        if entry is not None:
            if self.task not in entry.tasks and not (self.task == "txt2vid" and "img2vid" in entry.tasks):
                raise InvalidParameter(f"Model {entry.id!r} does not do {self.task}.", value=self.task,
                                       fix=f"it does {', '.join(entry.tasks)}; choose another model for {self.task}.")
            if self.width is not None and self.height is not None:
                from labkit.catalog import validate_size

                validate_size(entry, self.width, self.height)
        return self


def _int_in(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name} must be a whole number, got {value!r}.", value=value,
                               fix=f"use an integer between {lo} and {hi}.")
    if not lo <= value <= hi:
        raise InvalidParameter(f"{name} {value} is outside {lo}–{hi}.", value=value,
                               fix=f"use a {name} between {lo} and {hi}.")


def _schema_for(tp: Any) -> dict[str, Any]:
    import types
    import typing

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        schema = _schema_for(inner[0])
        if type(None) in args:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema
    if origin is typing.Literal:
        return {"type": "string", "enum": list(args)}
    if origin is tuple:
        return {"type": "array", "items": _schema_for(args[0])}
    if dataclasses.is_dataclass(tp):
        return _dataclass_schema(tp)
    return {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"},
            bool: {"type": "boolean"}}[tp]


def _dataclass_schema(cls: type) -> dict[str, Any]:
    import typing

    hints = typing.get_type_hints(cls)
    props = {f.name: _schema_for(hints[f.name]) for f in dataclasses.fields(cls)}
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False,
            "title": cls.__name__, "description": (cls.__doc__ or "").strip().splitlines()[0]}


def plan_schema() -> dict[str, Any]:
    """The JSON Schema of a `Plan`, derived from the dataclass itself (so the two cannot drift)."""
    schema = _dataclass_schema(Plan)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema

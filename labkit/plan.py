"""`Plan`: one generation, as data.

A plan is what a controller writes and what the lab renders: JSON in, JSON out, and the same
plan renders the same result. Defaults a user left open (size, steps, guidance, frames, the seed)
are filled in by `resolve()` from the model's catalogue entry and stored in the plan, so the
recorded plan is always complete and replayable.

Plain data on the base floor: this module imports only `labkit.errors` and `labkit.catalog`, so
pipelines, controllers and views can all use it (`from labkit.plan import Plan`; the old path
`labkit.controller.plan` still works).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import CatalogEntry

Modality = Literal["image", "video"]
Task = Literal["txt2img", "img2img", "img2vid", "txt2vid"]
Speed = Literal["default", "max"]
#: A plan's speed settings: "max" opts in to the family's speed-first `gpu-fast` rung (`labkit.hardware.choose`).
SPEEDS: tuple[str, ...] = ("default", "max")

#: Bounds that keep a single plan from asking for more than one machine can hold.
MAX_COUNT = 16
MAX_STEPS = 500
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 4000
#: The negative prompt has the same cap as the prompt; a rationale may be longer (an LLM explains).
MAX_RATIONALE_CHARS = 20000
#: A model id, input image path or adapter reference longer than this is not a path any filesystem takes.
MAX_PATH_CHARS = 4096
#: Kinds of control map (what a ControlNet was trained on); "none": the image already is a control map.
CONTROL_KINDS = ("canny", "pose", "depth", "layout", "scribble", "none")
#: ControlNets one plan may stack (each holds a copy of half a UNet in memory).
MAX_CONTROLS = 4
#: Families whose image pipelines take ControlNets (`labkit.pipelines.controlnet`).
CONTROL_FAMILIES: tuple[str, ...] = ("sd15", "sdxl", "toy")


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
class ControlRef:
    """A ControlNet steering the render: the kind of control map, the image it is made from (a photo to
    preprocess, a ready map with `preprocess=False`, or an OpenPose keypoint JSON for "pose"), the ControlNet
    (None: the catalogue's for the kind and the model's family), its scale and the fraction of the steps it
    acts on (`start` to `end`), and the preprocessor's parameters (e.g. {"low": 100, "high": 200})."""

    kind: str
    image: str
    model: str | None = None
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = True
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def parse(cls, text: str, *, model: str | None = None) -> ControlRef:
        """A control from "KIND:IMAGE[:SCALE]" (what `--control` takes), e.g. "canny:photo.png:0.8"; `model`
        is the ControlNet. A path with colons works when the scale is given or the last part is no number."""
        check_text("control", text, max_chars=MAX_PATH_CHARS, nonempty=True)
        kind, sep, rest = text.partition(":")
        fix = 'write KIND:IMAGE[:SCALE], e.g. "canny:photo.png:0.8" (kinds: ' + ", ".join(CONTROL_KINDS) + ")."
        if not sep or not rest:
            raise InvalidParameter(f"The control {_short(text)} is not KIND:IMAGE[:SCALE].", value=text, fix=fix)
        if kind not in CONTROL_KINDS:
            raise InvalidParameter(f"The control {_short(text)} has the unknown kind {_short(kind)}.", value=kind,
                                   fix=fix)
        image, scale = rest, 1.0
        head, sep, tail = rest.rpartition(":")
        if sep and head:
            try:
                image, scale = head, float(tail)
            except ValueError:
                image = rest
        return cls(kind=kind, image=image, model=model, scale=scale)


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
        controls: ControlNets with their control images (`ControlRef`), applied together.
        controller: who wrote the plan; rationale: why, in a sentence.
        speed: "default", or "max" to opt in to the speed-first rung (bf16, fused QKV, torch.compile); the run
            records what was applied or why it was not.
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
    controls: tuple[ControlRef, ...] = ()
    controller: ControllerInfo = field(default_factory=ControllerInfo)
    rationale: str = ""
    speed: Speed = "default"

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
        d["controls"] = [dataclasses.asdict(c) for c in self.controls]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """A plan from its dict form (what `to_dict` writes, or JSON from a controller or a file).

        Every field's type is checked (`check_fields`); its range is checked by `validate`. Unknown
        keys are an error, not silently dropped. Raises `InvalidParameter` naming the field, the
        value and the fix — never `TypeError` or `KeyError`.
        """
        if isinstance(data, Plan):
            return data.check_fields()
        if not isinstance(data, Mapping):
            raise InvalidParameter(f"A plan must be a mapping of its fields, got {describe(data)}.", value=data,
                                   fix='pass a dict such as {"prompt": "a red circle"} (what Plan.to_dict() writes).')
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            names = ", ".join(_short(k) for k in unknown)
            raise InvalidParameter(f"Unknown plan field(s): {names}.", value=unknown,
                                   fix=f"use only {', '.join(known)}.")
        if "prompt" not in data:
            raise InvalidParameter("The plan has no 'prompt' field.", value=dict(data),
                                   fix='add "prompt": "what to render" ("" for image-to-video).')
        fields = dict(data)
        fields["adapters"] = _list_field(fields.get("adapters"), "adapters", _adapter_from,
                                         '[{"id": "run:RUN_ID", "weight": 1.0}]')
        fields["controls"] = _list_field(fields.get("controls"), "controls", _control_from,
                                         '[{"kind": "canny", "image": "photo.png"}]')
        ctrl = fields.get("controller")
        if ctrl is None:
            fields.pop("controller", None)
        elif isinstance(ctrl, Mapping):
            fields["controller"] = _controller_from(ctrl)
        return cls(**fields).check_fields()

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """A plan from JSON text (see `from_dict`)."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise InvalidParameter(f"A plan's JSON must be text, got {describe(text)}.", value=text,
                                   fix="pass the text written by Plan.to_json().")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, bytes that are not UTF-8, absurd nesting
            raise InvalidParameter(f"A plan must be a JSON object: {type(e).__name__}: {str(e)[:200]}.",
                                   value=_short(text), fix="pass the text written by Plan.to_json().") from e
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Plan:
        """A copy with `changes` (field names; their types are checked by `check_fields`/`validate`)."""
        unknown = [k for k in changes if k not in _FIELD_NAMES]
        if unknown:
            raise InvalidParameter(f"Unknown plan field(s): {', '.join(unknown)}.", value=unknown,
                                   fix=f"use only {', '.join(_FIELD_NAMES)}.")
        return dataclasses.replace(self, **changes)

    # -- completing and checking ---------------------------------------------------------------

    def resolve(self, entry: CatalogEntry | None, *, rng: random.Random | None = None) -> Plan:
        """The plan with every open field filled in from `entry` (the model's catalogue entry, or for an
        uncatalogued model its family's: `labkit.pipelines.loader.plan_defaults`; general defaults without
        one) and a seed chosen if none was given."""
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

    def check_fields(self) -> Plan:
        """Raise `InvalidParameter` when a field has the wrong type; return self when all are right.

        Text is a `str` that is valid Unicode (no lone surrogates, which cannot be written to PNG,
        JSON or MLflow) and has no NUL character; whole numbers are `int` but not `bool`; scales
        are finite numbers. Ranges are `validate`'s job. Cheap: it runs before any model resolves.
        """
        check_text("prompt", self.prompt, max_chars=MAX_PROMPT_CHARS)
        check_text("negative_prompt", self.negative_prompt, max_chars=MAX_PROMPT_CHARS)
        if self.modality not in ("image", "video"):
            raise InvalidParameter(f"Unknown modality {_short(self.modality)}.", value=self.modality,
                                   fix="use 'image' or 'video'.")
        for name in ("model", "image"):
            check_text(name, getattr(self, name), optional=True, max_chars=MAX_PATH_CHARS, nonempty=True)
        if not isinstance(self.adapters, tuple) or not all(isinstance(a, AdapterRef) for a in self.adapters):
            raise InvalidParameter(f"adapters must be a tuple of AdapterRef, got {describe(self.adapters)}.",
                                   value=self.adapters, fix="use Plan.from_dict, or adapters=(AdapterRef('ID', 1.0),).")
        for i, a in enumerate(self.adapters):
            check_text(f"adapters[{i}].id", a.id, max_chars=MAX_PATH_CHARS, nonempty=True)
            check_number(f"adapters[{i}].weight", a.weight, example="1.0")
        _check_controls(self.controls)
        for name in ("width", "height", "steps", "seed", "frames", "fps"):
            check_int(name, getattr(self, name), optional=True)
        check_int("count", self.count)
        for name in ("guidance", "strength"):
            check_number(name, getattr(self, name), optional=True)
        if not isinstance(self.controller, ControllerInfo):
            raise InvalidParameter(f"controller must be a ControllerInfo, got {describe(self.controller)}.",
                                   value=self.controller, fix='write controller as {"name": "api"} or leave it out.')
        for name in ("name", "model", "revision", "licence", "fallback_reason"):
            check_text(f"controller.{name}", getattr(self.controller, name), optional=name != "name",
                       max_chars=MAX_PROMPT_CHARS)
        check_text("rationale", self.rationale, max_chars=MAX_RATIONALE_CHARS)
        if not isinstance(self.speed, str) or self.speed not in SPEEDS:
            raise InvalidParameter(f"Unknown speed {_short(self.speed)}.", value=self.speed,
                                   fix='use speed "default" (eager, safe) or "max" (compiled, fused: opt-in).')
        return self

    def validate(self, entry: CatalogEntry | None = None) -> Plan:
        """Raise `InvalidParameter` naming the first bad field and its fix; return self when valid.

        Checks the fields' types (`check_fields`), the plan's own bounds, and with a catalogue entry
        the model's size range, task and frame limit.
        """
        self.check_fields()
        if not self.prompt.strip() and self.task in ("txt2img", "txt2vid"):
            raise InvalidParameter("The prompt is empty.", value=self.prompt,
                                   fix="describe what to render, e.g. 'a red circle on the left'.")
        _int_in("count", self.count, 1, MAX_COUNT)
        if self.steps is not None:
            _int_in("steps", self.steps, 1, MAX_STEPS)
        if self.seed is not None:
            _int_in("seed", self.seed, 0, MAX_SEED)
        if self.guidance is not None and not (0 <= self.guidance <= 50):
            raise InvalidParameter(f"guidance {self.guidance!r} is outside 0–50.", value=self.guidance,
                                   fix="use a guidance scale between 0 (turbo models) and about 12.")
        if self.strength is not None and not (0 < self.strength <= 1):
            raise InvalidParameter(f"strength {self.strength!r} is outside (0, 1].", value=self.strength,
                                   fix="use a strength between 0.1 (close to the input) and 1.0.")
        if self.task == "img2img" and not self.image:
            raise InvalidParameter("Image-to-image needs an input image.", value=None, fix="pass image=PATH.")
        _validate_controls(self.controls, entry)
        for i, a in enumerate(self.adapters):
            if not -4 <= a.weight <= 4:
                raise InvalidParameter(f"adapters[{i}] ({a.id!r}) has weight {a.weight!r}.", value=a.weight,
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


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Plan))


def _int_in(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name} must be a whole number, got {value!r}.", value=value,
                               fix=f"use an integer between {lo} and {hi}.")
    if not lo <= value <= hi:
        raise InvalidParameter(f"{name} {value} is outside {lo}–{hi}.", value=value,
                               fix=f"use {name} = a whole number from {lo} to {hi}.")


def describe(value: Any) -> str:
    """A value for an error message: its type and a short repr, e.g. "int 123" or "str '64x64'"."""
    return f"{type(value).__name__} {_short(value)}"


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_text(name: str, value: Any, *, optional: bool = False, max_chars: int | None = None,
               nonempty: bool = False) -> str | None:
    """`value` when it is text labkit can store (a `str`, valid Unicode, no NUL); else `InvalidParameter`.

    `optional` allows None; `nonempty` refuses blank text; `max_chars` caps the length.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"The {name} must be text, got {describe(value)}.", value=value,
                               fix=f"pass the {name} as a string" + (" or None." if optional else "."))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidParameter(f"The {name} is not valid Unicode: {_short(value[e.start:e.end])} at "
                               f"character {e.start} is a lone surrogate.", value=_short(value),
                               fix=f"remove or replace that character in the {name} (it cannot be written "
                                   "to PNG, JSON or MLflow); decode text with errors='replace'.") from None
    if "\x00" in value:
        raise InvalidParameter(f"The {name} contains a NUL character (\\x00) at {value.index(chr(0))}.",
                               value=_short(value), fix=f"remove the NUL character from the {name}.")
    if nonempty and not value.strip():
        raise InvalidParameter(f"The {name} is blank.", value=value,
                               fix=f"give a {name}" + (", or None for the default." if optional else "."))
    if max_chars is not None and len(value) > max_chars:
        raise InvalidParameter(f"The {name} has {len(value)} characters.", value=len(value),
                               fix=f"shorten it to at most {max_chars} characters.")
    return value


def check_int(name: str, value: Any, *, optional: bool = False, lo: int | None = None,
              hi: int | None = None) -> int | None:
    """`value` when it is a whole number (an `int`, not a `bool`) within [lo, hi]; else `InvalidParameter`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        rng = f" between {lo} and {hi}" if lo is not None and hi is not None else ""
        raise InvalidParameter(f"{name} must be a whole number, got {describe(value)}.", value=value,
                               fix=f"pass an integer{rng}" + (" or None." if optional else "."))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidParameter(f"{name} {value} is outside {lo}–{hi}.", value=value,
                               fix=f"use {name} = a whole number from {lo} to {hi}.")
    return value


def check_number(name: str, value: Any, *, optional: bool = False, example: str = "7.5") -> float | None:
    """`value` when it is a finite real number (`int` or `float`, not `bool`); else `InvalidParameter`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter(f"{name} must be a number, got {describe(value)}.", value=value,
                               fix=f"pass {name} as a number such as {example}" + (" or None." if optional else "."))
    if not math.isfinite(value):
        raise InvalidParameter(f"{name} must be a finite number, got {value!r}.", value=value,
                               fix=f"pass {name} as an ordinary number such as {example}.")
    return value


def check_size(name: str, size: Any, *, optional: bool = True) -> tuple[Any, Any]:
    """(width, height) from `size`, a pair of whole numbers (None: (None, None) when `optional`)."""
    if size is None and optional:
        return None, None
    if isinstance(size, (str, bytes)) or not isinstance(size, (list, tuple)) or len(size) != 2:
        raise InvalidParameter(f"{name} must be (width, height), got {describe(size)}.", value=size,
                               fix=f"pass {name}=(64, 64): two whole numbers, width first"
                                   + ("; or None for the model's default." if optional else "."))
    check_int(f"width ({name}[0])", size[0])
    check_int(f"height ({name}[1])", size[1])
    return size[0], size[1]


def _adapter_from(item: Any, i: int) -> AdapterRef:
    if isinstance(item, AdapterRef):
        return item
    if not isinstance(item, Mapping):
        raise InvalidParameter(f"adapters[{i}] must be an object, got {describe(item)}.", value=item,
                               fix='write each adapter as {"id": "run:RUN_ID", "weight": 1.0}.')
    unknown = [k for k in item if k not in ("id", "weight")]
    if unknown or "id" not in item:
        what = f"has unknown key(s) {', '.join(_short(k) for k in unknown)}" if unknown else "has no 'id'"
        raise InvalidParameter(f"adapters[{i}] {what}.", value=dict(item),
                               fix='write each adapter as {"id": "run:RUN_ID", "weight": 1.0}.')
    return AdapterRef(**item)


def _list_field(items: Any, name: str, parse: Any, example: str) -> tuple[Any, ...]:
    """A plan's list field (adapters, controls) from its dict form: None is (), each item parsed by `parse`."""
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise InvalidParameter(f"{name} must be a list, got {describe(items)}.", value=items,
                               fix=f"write {name} as a list: {example} or [].")
    return tuple(parse(item, i) for i, item in enumerate(items))


_CONTROL_FIX = 'write each control as {"kind": "canny", "image": "photo.png", "scale": 1.0}.'


def _control_from(item: Any, i: int) -> ControlRef:
    if isinstance(item, ControlRef):
        return item
    if not isinstance(item, Mapping):
        raise InvalidParameter(f"controls[{i}] must be an object, got {describe(item)}.", value=item,
                               fix=_CONTROL_FIX)
    known = [f.name for f in dataclasses.fields(ControlRef)]
    unknown = [k for k in item if k not in known]
    missing = [k for k in ("kind", "image") if k not in item]
    if unknown or missing:
        what = (f"has unknown key(s) {', '.join(_short(k) for k in unknown)}" if unknown
                else f"has no {' or '.join(repr(k) for k in missing)}")
        raise InvalidParameter(f"controls[{i}] {what}.", value=dict(item), fix=_CONTROL_FIX + f" Keys: {known}.")
    return ControlRef(**item)


def _check_controls(controls: Any) -> None:
    """Types of the controls (ranges: `_validate_controls`)."""
    if not isinstance(controls, tuple) or not all(isinstance(c, ControlRef) for c in controls):
        raise InvalidParameter(f"controls must be a tuple of ControlRef, got {describe(controls)}.", value=controls,
                               fix="use Plan.from_dict, or controls=(ControlRef('canny', 'photo.png'),).")
    for i, c in enumerate(controls):
        if c.kind not in CONTROL_KINDS:
            raise InvalidParameter(f"controls[{i}] has the unknown kind {_short(c.kind)}.", value=c.kind,
                                   fix=f"use one of {', '.join(CONTROL_KINDS)} ('none': the image is the map).")
        check_text(f"controls[{i}].image", c.image, max_chars=MAX_PATH_CHARS, nonempty=True)
        check_text(f"controls[{i}].model", c.model, optional=True, max_chars=MAX_PATH_CHARS, nonempty=True)
        for name in ("scale", "start", "end"):
            check_number(f"controls[{i}].{name}", getattr(c, name), example="1.0")
        if not isinstance(c.preprocess, bool):
            raise InvalidParameter(f"controls[{i}].preprocess must be true or false, got {describe(c.preprocess)}.",
                                   value=c.preprocess, fix="use true to make the map from the image, false when "
                                                           "the image already is the map.")
        if not isinstance(c.params, Mapping) or not all(
                isinstance(k, str) and (v is None or isinstance(v, (str, int, float, bool)))
                for k, v in c.params.items()):
            raise InvalidParameter(f"controls[{i}].params must map names to plain values, got "
                                   f"{describe(c.params)}.", value=c.params, fix='e.g. {"low": 100, "high": 200}.')


def _validate_controls(controls: tuple[ControlRef, ...], entry: CatalogEntry | None) -> None:
    if not controls:
        return
    if len(controls) > MAX_CONTROLS:
        raise InvalidParameter(f"The plan has {len(controls)} controls; at most {MAX_CONTROLS} fit one render.",
                               value=len(controls), fix=f"keep the {MAX_CONTROLS} that matter most.")
    for i, c in enumerate(controls):
        if not 0 <= c.scale <= 2:
            raise InvalidParameter(f"controls[{i}].scale {c.scale!r} is outside 0–2.", value=c.scale,
                                   fix="use a scale between 0 (no control) and 2; 1.0 is the trained strength.")
        if not 0 <= c.start < c.end <= 1:
            raise InvalidParameter(f"controls[{i}] acts from {c.start!r} to {c.end!r} of the steps.",
                                   value=f"{c.start}..{c.end}", fix="use 0 <= start < end <= 1, e.g. 0.0 to 1.0.")
    if entry is not None and (entry.family not in CONTROL_FAMILIES or entry.is_video):
        takes = f"only image models of the {', '.join(CONTROL_FAMILIES)} families take them"
        raise InvalidParameter(f"Model {entry.id!r} ({entry.family}) cannot take controls: {takes}.",
                               value=entry.id, fix="drop the controls, or choose a model that takes them.")


def _controller_from(data: Mapping[str, Any]) -> ControllerInfo:
    known = [f.name for f in dataclasses.fields(ControllerInfo)]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise InvalidParameter(f"Unknown controller field(s): {', '.join(_short(k) for k in unknown)}.",
                               value=unknown, fix=f"use only {', '.join(known)}.")
    return ControllerInfo(**data)


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
    if origin is dict:
        return {"type": "object"}
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

"""The `rules` controller: a request in plain English to a `Plan`, with no model and no randomness.

It is labkit's embedded default and the fallback of the LLM controllers. What it reads:

- modality: "video", "clip", "animate", "gif", "5 seconds", motion words ("flying", "spinning" …);
  image nouns ("photo", "painting") win over motion words ("a photo of a bird flying" is an image);
- duration ("5 seconds", "a 10-minute video"), "N frames", "N fps" → frames and fps within the chosen
  model's limits (1 + k*frame_step, at most max_frames; fps lowered to fit a long duration);
- count ("three images", "4 variations", "a pair of pictures"), clamped to `Plan` bounds;
- aspect and size ("portrait", "landscape", "square format", "16:9", "widescreen", "1024x768");
- styles from `styles.toml` (prompt words and negative-prompt words), extendable by a TOML file;
- speed ("quick", "draft", "preview" → a turbo / fast model; "best", "high quality", "detailed" →
  more steps and the best model that fits);
- a model named in the request ("with sdxl", "using wan");
- toy-world captions ("a small red circle on the left") → the `toyworld` model, caption as prompt;
  toy-world motion captions ("a blue square moving up", "a small red circle grows") and toy captions
  asked as video → the toy motion model (`toyworld-motion`), also from a toy first frame (img2vid).

The prompt is the user's own subject text — the request minus the phrases that became plan fields
("three images of", "in portrait", "10 seconds") — plus the style words, and the plan's one-sentence
`rationale` names every decision and every word added. Requests it cannot honour in full are
clamped and the rationale says so; an empty request raises `InvalidParameter`.

Where each part lives: the words in `vocabulary.toml` (loaded by `vocabulary.words()`, compiled by
`grammar`), the lab's styles in `styles.toml` (`vocabulary.Vocabulary`), reading a request field by
field in `reading` (`read_request`), choosing and fitting the model in `fit`; this module turns those
into a plan (sizes, frames, steps, prompt) and its rationale. The names it always had
(`Vocabulary`, `read_request`, `model_fit`, `parse_number` …) are re-exported here.

Example:

    >>> from labkit.controller.base import PlanContext
    >>> from labkit.controller.rules import RulesController
    >>> plan = RulesController(use_env=False).plan("three watercolor images of a fox, portrait",
    ...                                            PlanContext.simulated("8"))
    >>> plan.count, plan.prompt, (plan.width, plan.height)
    (3, 'a fox, watercolor painting, soft washes, paper texture', (840, 1256))
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.controller.base import PlanContext
from labkit.controller.fit import Fit, choose_model, is_turbo, model_fit
from labkit.controller.grammar import grammar, parse_number
from labkit.controller.reading import MAX_REQUEST_CHARS, Request, read_request
from labkit.controller.vocabulary import ENV_VAR, Style, Vocabulary
from labkit.errors import InvalidParameter, LabkitError
from labkit.plan import MAX_PROMPT_CHARS, ControllerInfo, Plan

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import CatalogEntry

#: Bumped whenever a rule changes what plan a request gets (with the vocabulary hash, the revision).
#: The words of vocabulary.toml are rules too: a change there bumps this and VOCABULARY_DIGEST.
RULES_VERSION = "1.2"
#: `words().digest` of the vocabulary.toml that RULES_VERSION was measured with.
VOCABULARY_DIGEST = "5f8e8b8f8f09"


class RulesController:
    """The embedded, deterministic controller (see the module docstring).

    Args:
        extra: TOML file(s) shaped like styles.toml whose styles and lists extend or replace the
            shipped vocabulary.
        vocabulary: a ready `Vocabulary` instead (tests).
    """

    name = "rules"
    model: str | None = None

    def __init__(self, extra: str | Path | Iterable[str | Path] | None = None, *,
                 vocabulary: Vocabulary | None = None, use_env: bool = True):
        self.vocab = vocabulary or Vocabulary.load(extra, use_env=use_env)

    @property
    def revision(self) -> str:
        """The rules version and a hash of the vocabulary: a different vocabulary is a different revision."""
        return f"{RULES_VERSION}+{self.vocab.digest}"

    @property
    def info(self) -> ControllerInfo:
        return ControllerInfo(name=self.name, model=None, revision=self.revision)

    def __repr__(self) -> str:
        return f"RulesController(revision={self.revision!r}, styles={len(self.vocab.styles)})"

    def plan(self, request: str, context: PlanContext) -> Plan:
        """A validated plan for `request` on `context`; `InvalidParameter` for an empty request,
        `ComplianceViolation` when no model the task needs has an allowed licence."""
        if not isinstance(context, PlanContext):
            raise InvalidParameter(f"context must be a PlanContext, got {type(context).__name__}.", value=context,
                                   fix="build one with PlanContext.simulated('8') or PlanContext.from_lab(lab).")
        try:
            return self._plan(request, context)
        except LabkitError:
            raise
        except Exception as e:  # a rule that broke must still reach the user as one sentence
            raise InvalidParameter(f"The rules controller could not read {str(request)[:80]!r}: "
                                   f"{type(e).__name__}: {e}.", value=str(request)[:200],
                                   fix="rephrase the request, or write the plan's fields yourself.") from e

    # -- the steps ------------------------------------------------------------------------------

    def _plan(self, request: str, ctx: PlanContext) -> Plan:
        # 1. read the request
        r = read_request(request, self.vocab, ctx.catalog)
        if not r.subject and not r.image:
            raise InvalidParameter(f"The request {r.text[:80]!r} names nothing to render.", value=request,
                                   fix="say what to show, e.g. 'three images of a lighthouse at dusk'.")
        decisions: list[str] = []
        modality = r.modality
        task = ("img2vid" if r.image else "txt2vid") if modality == "video" else ("img2img" if r.image else "txt2img")
        decisions.append(f"{modality} ({f'from {r.modality_cue!r}' if r.modality_cue else 'no video words'})")
        if r.image:
            decisions.append(f"input image {r.image}")

        # 2. the model
        entry, why = choose_model(r, task, ctx, self.vocab)
        decisions.append(why)
        is_toy = entry is not None and entry.family == "toy"

        # 3. count, size, frames, steps
        if r.count != 1 and r.count_asked is not None and r.count_asked == r.count:
            decisions.append(f"count {r.count} (from {r.count_cue!r})")
        width, height, size_note = self._size(r, entry, modality, is_toy)
        if size_note:
            decisions.append(size_note)
        frames = fps = None
        if modality == "video":
            frames, fps, note = self._frames(r, entry)
            decisions.append(note)
        steps = r.steps
        if steps is None and r.speed and entry is not None:
            steps, note = self._steps(r, entry)
            if note:
                decisions.append(note)
        elif r.steps is not None:
            decisions.append(f"{r.steps} steps as asked")
        if r.seed is not None:
            decisions.append(f"seed {r.seed} as asked")
        if r.guidance is not None:
            decisions.append(f"guidance {r.guidance:g} as asked")

        # 4. prompt: the user's subject plus style words (none for the toy world's fixed vocabulary)
        prompt, negative, style_note = self._prompt(r, is_toy)
        if style_note:
            decisions.append(style_note)
        decisions.extend(r.notes)
        if not r.english:
            decisions.append("the request does not look like English: kept as written (these text encoders "
                             "read English best)")
        if r.injection:
            decisions.append("text addressed to a language model ('ignore your instructions' …) has no effect "
                             "on rules and stays in the prompt as written")

        plan = Plan(
            prompt=prompt, modality=modality, negative_prompt=negative,
            model=entry.id if entry is not None else ctx.default_model(modality),
            width=width, height=height, steps=steps, guidance=r.guidance, seed=r.seed, count=r.count,
            frames=frames, fps=fps, image=r.image, controller=self.info,
            rationale=f"rules {self.revision}: " + "; ".join(decisions) + ".",
        )
        return plan.validate(entry)

    def _size(self, r: Request, e: CatalogEntry | None, modality: str, is_toy: bool
              ) -> tuple[int | None, int | None, str]:
        if r.size is None and r.ratio is None and r.aspect is None:
            return None, None, ""
        if is_toy:
            return None, None, (f"'{r.aspect_cue}' ignored: the toy world renders square "
                                f"{e.width}x{e.height} scenes" if e is not None else "")
        lo, hi, mult = (e.min_size, e.max_size, e.size_multiple) if e is not None else (64, 2048, 8)
        base_w, base_h = (e.width, e.height) if e is not None else (512, 512)
        if r.size is not None:
            w, h = r.size
            fw, fh = _fit_size(w, h, lo, hi, mult)
            if (fw, fh) == (w, h):
                return w, h, f"size {w}x{h} as asked"
            return fw, fh, (f"size {fw}x{fh}: {w}x{h} asked, but "
                            f"{e.id if e else 'the model'} takes {lo}-{hi} px in steps of {mult}")
        if r.ratio is not None:
            rw, rh = r.ratio
            label = f"{rw:g}:{rh:g}"
        else:
            rw, rh = grammar().aspect_ratios[r.aspect][1 if modality == "video" else 0]
            label = f"{r.aspect} {rw}:{rh}"
        area = base_w * base_h
        w = math.sqrt(area * rw / rh)
        h = math.sqrt(area * rh / rw)
        fw, fh = _fit_size(w, h, lo, hi, mult)
        return fw, fh, f"size {fw}x{fh} ({label} from {r.aspect_cue!r}, at the model's default area)"

    def _frames(self, r: Request, e: CatalogEntry | None) -> tuple[int | None, int | None, str]:
        if e is None or not e.is_video:
            return r.frames, r.fps, "frames and fps as the model's defaults"
        step, top = max(e.frame_step, 1), e.max_frames
        fps = r.fps or e.default_fps
        notes: list[str] = []
        if r.frames is not None:
            want = r.frames
            cue = f"{r.frames} frames asked"
        elif r.duration_s is not None:
            want = round(r.duration_s * fps)
            cue = f"{_duration(r.duration_s)} asked ({r.duration_cue!r})"
            if want > top and r.fps is None:
                low = max(min(self.vocab.min_fps, e.default_fps), 1)
                new_fps = max(low, min(e.default_fps, top // max(int(math.ceil(r.duration_s)), 1)))
                if new_fps < fps:
                    notes.append(f"fps lowered from {fps} to {new_fps} to make it longer")
                    fps = new_fps
                    want = round(r.duration_s * fps)
        else:
            frames = e.default_frames
            return None, r.fps, (f"{frames} frames at {fps} fps ({_duration(frames / fps)}), "
                                 f"{e.id}'s default length")
        frames = 1 + round((max(want, 1) - 1) / step) * step
        frames = max(frames, min(1 + step, top))
        if frames > top:
            frames = top
            notes.append(f"clamped to {top} frames, the longest clip {e.id} makes")
        elif frames != want:
            notes.append(f"{frames} frames since {e.id} takes 1 + a multiple of {step}" if step > 1
                         else f"{frames} frames")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return frames, fps, f"{frames} frames at {fps} fps = {_duration(frames / fps)}: {cue}{extra}"

    def _steps(self, r: Request, e: CatalogEntry) -> tuple[int | None, str]:
        v = self.vocab
        if r.speed == "best":
            steps = (v.best_turbo_steps if is_turbo(e)
                     else min(v.max_steps, round(e.default_steps * v.best_steps_factor)))
            if steps <= e.default_steps:
                return None, ""
            return steps, f"{steps} steps instead of {e.default_steps} for {r.speed_cue!r}"
        if r.speed == "fast" and not is_turbo(e):
            steps = max(1, round(e.default_steps * v.fast_steps_factor))
            return steps, f"{steps} steps instead of {e.default_steps} for {r.speed_cue!r}"
        return None, ""

    def _prompt(self, r: Request, is_toy: bool) -> tuple[str, str, str]:
        subject = r.subject
        asked = ", ".join(r.negative)
        neg_note = f"'{asked}' (asked with no/without) moved to the negative prompt" if asked else ""
        if is_toy or not r.styles:
            if is_toy and r.styles:
                return subject, asked, "; ".join(filter(None, [
                    f"styles {', '.join(r.styles)} not applied: the toy world knows only its grammar", neg_note]))
            return _clip(subject, MAX_PROMPT_CHARS, r), asked, neg_note
        added: list[str] = []
        negative: list[str] = list(r.negative)
        low = subject.lower()
        for name in r.styles:
            s = self.vocab.style(name)
            for w in s.prompt:
                if w.lower() not in low and w not in added:
                    added.append(w)
            for w in s.negative:
                if w not in negative:
                    negative.append(w)
        full_low = (low + " " + " ".join(added).lower())
        negative = r.negative + [w for w in negative[len(r.negative):] if w.lower() not in full_low
                                 and not any(w.lower() in a.lower() or a.lower() in w.lower() for a in added)]
        suffix = ", ".join(added)
        room = MAX_PROMPT_CHARS - (len(suffix) + 2 if suffix else 0)
        subject = _clip(subject, room, r)
        prompt = f"{subject}, {suffix}" if suffix else subject
        note = f"style {', '.join(r.styles)}"
        if added:
            note += f" added '{suffix}' to the prompt"
        style_neg = negative[len(r.negative):]
        if style_neg:
            note += f"{' and' if added else ''} '{', '.join(style_neg)}' to the negative prompt"
        return prompt, ", ".join(negative), "; ".join(filter(None, [note, neg_note]))


def _clip(subject: str, room: int, r: Request) -> str:
    if len(subject) <= room:
        return subject
    cut = subject[:room]
    cut = cut[:cut.rfind(" ")] if " " in cut else cut
    r.notes.append(f"the prompt was cut to {len(cut):,} characters (the plan's limit is {MAX_PROMPT_CHARS:,})")
    return cut.rstrip(" ,;:")


def _fit_size(w: float, h: float, lo: int, hi: int, mult: int) -> tuple[int, int]:
    scale = min(1.0, hi / max(w, h))
    if min(w, h) * scale < lo:
        scale = lo / min(w, h)
    top = hi - hi % mult
    bottom = lo + (-lo) % mult

    def snap(v: float) -> int:
        return int(min(max(mult * round(v * scale / mult), bottom), top))

    return snap(w), snap(h)


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:.1f} s"



__all__ = ["ENV_VAR", "MAX_REQUEST_CHARS", "RULES_VERSION", "VOCABULARY_DIGEST", "Fit", "Request", "RulesController",
           "Style", "Vocabulary", "model_fit", "parse_number", "read_request"]

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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.controller.base import PlanContext
from labkit.errors import ComplianceViolation, ConfigError, InvalidParameter, LabkitError
from labkit.plan import MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS, ControllerInfo, Plan

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import CatalogEntry
    from labkit.hardware import HardwareProfile, MemoryStrategy

#: Bumped whenever a rule changes what plan a request gets (with the vocabulary hash, the revision).
RULES_VERSION = "1.2"
#: Requests longer than this are cut (at a word boundary) before they are read; the rationale says so.
MAX_REQUEST_CHARS = MAX_PROMPT_CHARS
ENV_VAR = "LABKIT_STYLES"

# -- the vocabulary (data) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """A style of `styles.toml`: the phrases that select it and the words it adds."""

    name: str
    match: tuple[str, ...]
    prompt: tuple[str, ...]
    negative: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    """The rules controller's data: styles, model preferences, step factors (see styles.toml)."""

    styles: tuple[Style, ...]
    quality: tuple[str, ...]
    fast: tuple[str, ...]
    cpu_families: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...]
    headroom: float = 0.85
    best_steps_factor: float = 1.5
    best_turbo_steps: int = 4
    fast_steps_factor: float = 0.5
    max_steps: int = 100
    min_fps: int = 8
    digest: str = ""
    sources: tuple[str, ...] = ()

    @classmethod
    def load(cls, extra: str | Path | Iterable[str | Path] | None = None, *, use_env: bool = True) -> Vocabulary:
        """The shipped `styles.toml`, then `$LABKIT_STYLES` (paths joined by os.pathsep), then `extra`."""
        text = resources.files("labkit.controller").joinpath("styles.toml").read_text(encoding="utf-8")
        data = _toml(text, "labkit/controller/styles.toml")
        sources = ["labkit/controller/styles.toml"]
        paths: list[str] = []
        if use_env and os.environ.get(ENV_VAR):
            paths += [p for p in os.environ[ENV_VAR].split(os.pathsep) if p.strip()]
        if extra is not None:
            paths += [str(extra)] if isinstance(extra, (str, Path)) else [str(p) for p in extra]
        for p in paths:
            path = Path(p).expanduser()
            try:
                more = _toml(path.read_text(encoding="utf-8"), str(path))
            except OSError as e:
                raise ConfigError(f"Cannot read style vocabulary {str(path)!r}: {e}.", value=str(path),
                                  fix="pass the path of an existing TOML file shaped like styles.toml.") from e
            for name, spec in (more.get("styles") or {}).items():
                data.setdefault("styles", {})[name] = spec
            for section in ("models", "quality", "video"):
                for k, v in (more.get(section) or {}).items():
                    if k == "aliases" and isinstance(v, dict):
                        data.setdefault(section, {}).setdefault("aliases", {}).update(v)
                    else:
                        data.setdefault(section, {})[k] = v
            sources.append(str(path))
        return cls._build(data, tuple(sources))

    @classmethod
    def _build(cls, data: dict[str, Any], sources: tuple[str, ...]) -> Vocabulary:
        where = " + ".join(sources)
        styles = []
        for name, spec in (data.get("styles") or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("match"), list) or not spec["match"] \
                    or not isinstance(spec.get("prompt"), list):
                raise ConfigError(f"{where} [styles.{name}] needs `match` and `prompt` lists.", value=spec,
                                  fix='write match = ["word", …] and prompt = ["words to add", …].')
            styles.append(Style(name, tuple(str(m).lower() for m in spec["match"]),
                                tuple(str(p) for p in spec["prompt"]),
                                tuple(str(n) for n in spec.get("negative", []))))
        models = data.get("models") or {}
        quality = data.get("quality") or {}
        video = data.get("video") or {}
        try:
            vocab = cls(
                styles=tuple(styles),
                quality=tuple(models.get("quality", ())), fast=tuple(models.get("fast", ())),
                cpu_families=tuple(models.get("cpu_families", ("toy",))),
                aliases=tuple(sorted((str(k).lower(), str(v)) for k, v in (models.get("aliases") or {}).items())),
                headroom=float(models.get("headroom", 0.85)),
                best_steps_factor=float(quality.get("best_steps_factor", 1.5)),
                best_turbo_steps=int(quality.get("best_turbo_steps", 4)),
                fast_steps_factor=float(quality.get("fast_steps_factor", 0.5)),
                max_steps=min(int(quality.get("max_steps", 100)), MAX_STEPS),
                min_fps=int(video.get("min_fps", 8)),
                digest=hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8],
                sources=sources,
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: a number in [models], [quality] or [video] is malformed ({e}).",
                              value=None, fix="see the key list at the top of labkit/controller/styles.toml.") from e
        if not 0 < vocab.headroom <= 1:
            raise ConfigError(f"{where}: headroom {vocab.headroom} is outside (0, 1].", value=vocab.headroom,
                              fix="use e.g. 0.85 (keep 15 % of the tier's VRAM free).")
        return vocab

    def style(self, name: str) -> Style:
        for s in self.styles:
            if s.name == name:
                return s
        raise InvalidParameter(f"Unknown style {name!r}.", value=name,
                               fix=f"use one of {', '.join(s.name for s in self.styles)}.")


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Style vocabulary {source} is not valid TOML: {e}.", value=source,
                          fix="fix the TOML syntax at the position shown.") from e


# -- reading the request ---------------------------------------------------------------------------

_NUM_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_WORDNUM = (r"(?:(?:a|an|" + "|".join(_NUM_WORDS) + r")(?:[\s-]+(?:and[\s-]+)?(?:"
            + "|".join(list(_NUM_WORDS) + list(_SCALES)) + r"))*)")
_DIGITS = r"(?:\d{1,3}(?:[,'_]\d{3})+|\d+)(?:\.\d+)?\s?[km]?"
NUM = rf"(?:{_DIGITS}|{_WORDNUM})"


def parse_number(text: str) -> float | None:
    """'10,000' → 10000, '2.5' → 2.5, '10k' → 10000, 'twenty five' → 25, 'a hundred' → 100."""
    t = text.strip().lower()
    m = re.fullmatch(r"(\d[\d,'_]*)(\.\d+)?\s?([km]?)", t)
    if m:
        value = float(re.sub(r"[,'_]", "", m.group(1)) + (m.group(2) or ""))
        return value * {"": 1, "k": 1000, "m": 10**6}[m.group(3)]
    total, current, seen = 0, 0, False
    for w in re.split(r"[\s-]+", t):
        if w in ("a", "an"):
            current, seen = max(current, 1), True
        elif w in _NUM_WORDS:
            current += _NUM_WORDS[w]
            seen = True
        elif w in _SCALES:
            current = max(current, 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, current = total + current, 0
            seen = True
        elif w == "and":
            continue
        else:
            return None
    return float(total + current) if seen else None


_IMAGE_OUT = (r"images?|pictures?|pics?|photos?|photographs?|variations?|variants?|versions?|options?|samples?|"
              r"renders?|takes?|shots?|outputs?|alternatives?|illustrations?|drawings?|paintings?|portraits?|"
              r"wallpapers?|designs?|candidates?|generations?|stills?|posters?|logos?|icons?|sketch(?:es)?|"
              r"renderings?|artworks?|thumbnails?|stickers?|headshots?|selfies?|panels?|doodles?|mockups?|"
              r"landscapes?|concepts?|stud(?:y|ies)|screenshots?|postcards?|prints?|covers?|banners?|avatars?|emojis?|sprites?|assets?")
_VIDEO_OUT = r"videos?|clips?|animations?|gifs?|movies?|films?|loops?|animated\s+gifs?|timelapses?|time-lapses?"
_OUT_NOUN = rf"(?:{_VIDEO_OUT}|{_IMAGE_OUT})"
_OUT_ADJ = (r"(?:(?:short|long|brief|little|quick|fast|different|distinct|unique|separate|more|new|random|"
            r"animated|looping|seamless|hd|"
            r"\d+(?:\.\d+)?[- ]?(?:seconds?|secs?|s|minutes?|mins?)(?:[- ]long)?)\s+)")
# Any other describing word between a count and its output noun ("three watercolor pictures", "4 cinematic
# shots", "a dozen pixel art icons"), but not one that starts a clause of the subject ("three cats in a
# photo", "three people taking photos"): no function words, no -ing verbs but adjectives like "stunning".
_NOT_ADJ = (r"(?:a|an|the|of|in|on|at|to|for|from|by|with|without|into|onto|over|under|near|and|or|but|nor|"
            r"is|are|was|were|be|been|has|have|had|do|does|did|who|which|that|this|these|those|it|its|"
            r"his|her|their|my|our|your|he|she|they|we|you|i|me|us|them|as|like|than|not|no|while|where|"
            r"when|then|so|each|every|per|about|showing|depicting|featuring|holding|taking|making|"
            r"dozens?|couple|pair|few|handful|batch|set|grid|several)")
_ING_ADJ = (r"(?:stunning|amazing|striking|charming|interesting|breathtaking|relaxing|calming|soothing|"
            r"inspiring|captivating|compelling|eye-catching|interesting|matching|contrasting|looping|"
            r"moving|fitting|appealing|pleasing|refreshing|surprising|glowing|shimmering|sparkling|"
            r"haunting|intriguing|engaging|outstanding|exciting|fascinating|menacing|terrifying|"
            r"frightening|unsettling|cozy-looking)")
_INSTRUCTION_ADJ = re.compile(r"short|long|brief|little|quick|fast|different|distinct|unique|separate|more|new|"
                             r"random|animated|looping|seamless|hd|\d+(?:\.\d+)?[- ]?(?:seconds?|secs?|s|minutes?|"
                             r"mins?)(?:[- ]long)?|[- ]?long", re.I)
_FREE_ADJ = rf"(?:(?!{_NOT_ADJ}\b)(?!(?!{_ING_ADJ}\b)[\w'-]+ing\b)[\w'][\w'-]*\s+)"
# With a count of one ("a photo of a cat", "a cinematic shot of"), only these nouns are pure
# instructions; the others say what the picture looks like and stay in the prompt.
_GENERIC_ONE = re.compile(rf"^(?:{_VIDEO_OUT}|images?|pictures?|pics?)$")
_GENERIC_MANY = re.compile(r"^(?:variations?|variants?|versions?|options?|samples?|renders?|takes?|shots?|outputs?|"
                           r"alternatives?|candidates?|generations?)$")
_OUTPUT_ITEM = re.compile(rf"^(?:(?:as|in)\s+)?(?:an?\s+)?(?:{_VIDEO_OUT}|images?|pictures?|pics?)$", re.I)

_COUNT_RE = re.compile(
    rf"(?:\b(?:in|as|with)\s+)?(?:\b(?P<group>a\s+pair|a\s+couple|a\s+few|several|a\s+dozen|"
    rf"dozens|a\s+handful|a\s+batch|a\s+set|a\s+grid)\s+(?:of\s+)?(?:(?P<gnum>{_DIGITS})\s+)?|\b(?P<num>{NUM})\s+)"
    rf"(?P<adjs>(?:{_OUT_ADJ}|{_FREE_ADJ}|(?:{_IMAGE_OUT})\s+|black\s+and\s+white\s+){{0,4}})(?P<noun>{_OUT_NOUN})\b(?![\w-])(?!\s+(?:games?|gam(?:er|ing)|{_OUT_NOUN})\b)(?:\s*(?P<tail>of|showing|depicting|featuring|with|where|in\s+which|about|:)(?!\w))?",
    re.I)
# "a cinematic video of rain" -> "cinematic rain": the output noun goes, the describing words stay.
_BARE_OUT_RE = re.compile(rf"(?:^|(?<=[\s,;:]))(?:(?:a|an|the|one|some)\s+)?(?P<adj>(?:[\w-]+\s+){{0,2}}?)"
                          rf"(?:{_VIDEO_OUT}|images?|pictures?|pics?)(?:\s+"
                          rf"(?:of|showing|depicting|featuring|where|in\s+which|about)\b|\s*:)\s*", re.I)
_DETERMINER = re.compile(rf"^\s*(?:a|an|the|my|our|his|her|their|this|that|these|those|some|"
                         rf"{'|'.join(_NUM_WORDS)}|\d+)\b", re.I)
_GROUP_COUNTS = {"a pair": 2, "a couple": 2, "a few": 3, "several": 4, "a dozen": 12, "dozens": 24,
                 "a handful": 5, "a batch": 4, "a set": 4, "a grid": 4}
_COUNT_KW_RE = re.compile(r"\b(?:count|batch(?:\s+size)?|n)\s*[:=]\s*(\d[\d,]*)\b|\bx\s?(\d{1,5})\b(?!\s*\d)", re.I)

_DURATION_RE = re.compile(
    rf"(?:\b(?:for|lasting|about|around|approximately|roughly|of|at\s+least|up\s+to)\s+)?"
    rf"(?P<half>\bhalf\s+(?:a|an)\s+)?\b(?P<num>{NUM})?\s*[- ]?\s*"
    rf"(?P<unit>seconds?|secs?|s|minutes?|mins?|hours?|hrs?)\b(?:[- ]long)?", re.I)
_FPS_RE = re.compile(r"\b(?:at\s+)?(\d{1,4})\s*(?:fps|frames?\s+(?:per|a|/)\s*second)\b", re.I)
_FRAMES_RE = re.compile(r"\b(?:with\s+)?(\d{1,6})[- ]?frames?\b(?:[- ]long)?", re.I)
_SEED_RE = re.compile(r"\b(?:with\s+|using\s+)?seed\s*(?:[:=#]|of|is)?\s*(\d{1,20})\b", re.I)
_STEPS_RE = re.compile(r"\b(?:with\s+|in\s+|using\s+)?(\d{1,5})\s*(?:denoising\s+|sampling\s+|inference\s+)?steps\b"
                       r"|\bsteps\s*[:=]\s*(\d{1,5})\b", re.I)
_GUIDANCE_RE = re.compile(r"\b(?:with\s+)?(?:guidance(?:\s+scale)?|cfg(?:\s+scale)?)\s*(?:[:=]|of)?\s*"
                          r"(\d{1,3}(?:\.\d+)?)\b", re.I)
_SIZE_RE = re.compile(r"(?:\b(?:at|in|size|resolution|of)\s+)?(?<![\w.])(\d{2,5})\s*[x×*]\s*(\d{2,5})"
                      r"(?:\s*(?:px|pixels))?\b(?:\s+(?:resolution|pixels|size))?", re.I)
_RATIO_RE = re.compile(r"(?:\b(?:in|at|with)\s+)?"
                       r"(?:\b(?:an?\s+)?(?:aspect(?:\s+ratio)?|ratio|format)\s*(?:of|:|=)?\s*)?"
                       r"(?<![\d.:])(\d{1,2}(?:\.\d{1,2})?)\s*:\s*(\d{1,2}(?:\.\d{1,2})?)(?![\d:])"
                       r"(?:\s+(?:aspect(?:\s+ratio)?|ratio|format|frame))?", re.I)
_COMMON_RATIOS = {(1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16), (21, 9), (9, 21), (5, 4), (4, 5),
                  (2, 1), (1, 2), (7, 5), (5, 7), (2.39, 1), (2.35, 1), (1.85, 1)}
_PATH_RE = re.compile(r"(?<!\S)[\"']?((?:[~.]?/)?(?:[\w.-]+/)*[\w.-]+\.(?:png|jpe?g|webp|bmp))[\"']?(?=$|[\s,;:!?)])",
                      re.I)

# (pattern, aspect name, ratio for images, ratio for video); strong patterns are explicit format talk.
_ASPECT_STRONG = [
    (r"\b(?:in\s+)?portrait\s+(?:mode|format|orientation|aspect)\b|\bin\s+portrait\b", "portrait"),
    (r"\b(?:in\s+)?landscape\s+(?:mode|format|orientation|aspect)\b|\bin\s+landscape\b", "landscape"),
    (r"\b(?:in\s+)?(?:a\s+)?square\s+(?:format|aspect(?:\s+ratio)?|crop|frame|orientation)\b|\bin\s+square\b|"
     r"\bsquare(?=\s+(?:[\w-]+\s+)?(?:images?|pictures?|photos?|videos?|clips?|posters?|icons?|avatars?))", "square"),
    (r"\b(?:in\s+)?vertical\s+(?:format|orientation)\b|\bvertical(?=\s+(?:[\w-]+\s+)?(?:videos?|clips?|images?|pictures?|"
     r"photos?|posters?|wallpapers?|banners?))|\bin\s+vertical\b", "portrait"),
    (r"\b(?:in\s+)?horizontal\s+(?:format|orientation)\b|\bhorizontal(?=\s+(?:[\w-]+\s+)?(?:videos?|clips?|images?|pictures?|"
     r"photos?|posters?|wallpapers?|banners?))|\bin\s+horizontal\b", "landscape"),
    (r"\b(?:in\s+)?wide[- ]?screen\b|\b(?:in\s+)?wide\s+format\b|\bcinemascope\b", "widescreen"),
    (r"\b(?:a\s+)?panoram(?:a|ic)(?:\s+(?:format|view|shot))?\b", "panorama"),
    (r"\b(?:phone|mobile|iphone|android)\s+wallpapers?\b|\b(?:instagram|ig)\s+stor(?:y|ies)\b|\btiktok\b|"
     r"\breels?\b|\bstory\s+format\b|\btall\s+format\b", "portrait"),
    (r"\bdesktop\s+(?:wallpaper|background)\b|\byoutube\s+(?:thumbnail|video)\b|\bbanner\b", "widescreen"),
    (r"\b(?:instagram\s+post|profile\s+picture|avatar|album\s+cover)\b", "square"),
]
_ASPECT_WEAK = [(r"\bportraits?\b", "portrait"), (r"\blandscapes?\b", "landscape")]
_ASPECT_ITEM = re.compile(r"^(?:square|portrait|landscape|vertical|horizontal|widescreen|wide|tall)$", re.I)
_ASPECT_RATIOS = {"portrait": ((2, 3), (9, 16)), "landscape": ((3, 2), (16, 9)), "square": ((1, 1), (1, 1)),
                  "widescreen": ((16, 9), (16, 9)), "panorama": ((2, 1), (2, 1))}

# "quick" asks for speed only where it is about the output ("a quick sketch", "a quick look at", "quick 10
# second video", "quick: a cat", "a cat, quick"), not in the subject ("a quick brown fox").
_QUICK = (r"(?:quick(?=(?:\s+[\w-]+){0,2}?\s+(?:looks?|peeks?|glances?|drafts?|previews?|tests?|renders?|versions?|"
          rf"sketch(?:es)?|doodles?|mockups?|ones?|pass(?:es)?|tries|try|takes?|ideas?|concepts?|iterations?|"
          rf"{_OUT_NOUN})\b|\s*(?:[,.;:!?]|$)|\s+(?:please|pls)\b)|^quick\b|"
          r"quickly(?=\s+(?:draw|make|generate|render|create|sketch|show|give|do|mock|whip)\b|\s*(?:[,.;:!?]|$))|"
          r"^quickly)")
_INSTRUCTION_NOUN = r"(?:renders?|previews?|versions?|drafts?|prototypes?|iterations?|mode|generations?|mock-?ups?)"
_FAST_RE = re.compile(
    rf"\b(?:{_QUICK}|draft(?!\s+(?:horses?|beers?|ales?|lagers?|picks?|dodgers?|excluders?|notices?|animals?))|"
    r"rough\s+draft|preview|low[- ]quality|test\s+render|asap|as\s+fast\s+as\s+possible|"
    r"in\s+a\s+hurry|turbo|fast(?=\s+(?:render|mode|preview|version|draft|generation|please|one))|"
    rf"fast(?=\s*[,.;!]|\s*$)|(?:make|do)\s+it\s+fast|(?:speedy|rapid)(?=\s+{_INSTRUCTION_NOUN}))\b", re.I)
_BEST_RE = re.compile(
    r"\b(?:best(?:\s+(?:quality|possible|you\s+can))?|highest[- ]quality|high[- ]quality|top[- ]quality|"
    r"maximum\s+quality|max\s+quality|hq|high[- ]detail|highly\s+detailed|ultra[- ]detailed|detailed|"
    r"4k|8k|uhd|ultra\s+hd|final\s+render|production[- ]quality|as\s+good\s+as\s+possible|masterful)\b", re.I)
# Pure instructions: removed from the subject. Quality words ("high quality", "detailed") stay:
# they are ordinary prompt words too.
_FAST_STRIP = re.compile(
    rf"(?:\b(?:as\s+)?an?\s+)?\b(?:{_QUICK}|rough\s+draft|"
    r"draft(?!\s+(?:horses?|beers?|ales?|lagers?|picks?|dodgers?|excluders?|notices?|animals?))|preview|"
    r"low[- ]quality|test\s+render|asap|as\s+fast\s+as\s+possible|in\s+a\s+hurry|turbo|"
    r"fast\s+(?:render|mode|preview|version|draft|generation)|(?:make|do)\s+it\s+fast|"
    rf"(?:speedy|rapid)(?=\s+{_INSTRUCTION_NOUN}))\b"
    r"(?:\s+(?:look|peek|glance)(?:\s+at\b)?|\s+(?:version|render|mode|pass|one)\b)?|,\s*fast\s*(?=[,.;!]|$)", re.I)

_VIDEO_RE = re.compile(
    r"\b(?:videos?|clips?|animations?|animated|animate|animating|movies?|gifs?|footage|time-?lapses?|"
    r"slow[- ]motion|looping|seamless\s+loop|mp4|webm|short\s+film|cinemagraph|frames|fps)\b", re.I)
_IMAGE_RE = re.compile(
    r"\b(?:images?|pictures?|pics?|photos?|photographs?|stills?|paintings?|drawings?|illustrations?|sketch(?:es)?|"
    r"portraits?|posters?|wallpapers?|logos?|icons?|artwork|png|jpe?g|thumbnails?|stickers?|snapshots?|"
    r"screenshots?|postcards?|prints?|headshots?|selfies?|watercolou?rs?|aquarelles?|oil\s+paintings?|"
    r"oil\s+on\s+canvas|charcoal|graphite|line[- ]?art|renders?|renderings?)\b", re.I)
# Verbs of motion that, with no output noun, ask for a video ("a hawk flying over a canyon"). Verbs that
# usually name a pose or a state in a still ("an astronaut riding a horse", "a castle floating in the sky",
# "flowers growing on a wall", "a man driving a car") are not here.
_MOTION_RE = re.compile(
    r"\b(?:moving|moves|move|flying|flies|spinning|spins|walking|walks|running|runs|rotating|rotates|swimming|"
    r"dancing|dances|falling|falls|flowing|flows|jumping|jumps|waves\s+(?:crashing|rolling)|"
    r"swaying|bouncing|bounces|rolling|galloping|drifting|orbiting|zooming|zoom(?:s)?\s+(?:in|out)|panning|"
    r"pouring|exploding|melting|flickering|rippling|sliding|crawling|marching|flapping|splashing|"
    r"erupting|twirling|fluttering|gliding|transforming|morphing|turning\s+into|"
    r"in\s+motion|sprinting|skating|surfing|chasing|swirling|blinking)\b", re.I)
# A participle used as an adjective names a kind of thing, not a motion: "a flying car", "a falling star",
# "the dancing queen", "a running shoe" (but "a spinning top" still spins).
_ATTRIBUTIVE_MOTION = re.compile(
    r"\b(?:a|an|the|some|this|that|my|our|his|her|their)\s+(?:[\w-]+\s+)?"
    r"(?P<verb>moving|flying|walking|running|swimming|dancing|falling|flowing|jumping|rolling|drifting|sliding|"
    r"crawling|marching|gliding|sprinting|skating|surfing|chasing|galloping|swaying)\s+"
    r"(?!(?:a|an|the|of|in|on|at|to|for|from|by|with|over|under|through|across|along|around|into|onto|up|"
    r"down|away|off|past|toward|towards|and|or|while|beside|behind|above|below|between|near|his|her|its|their|"
    r"my|our|your|this|that|these|those|some|home|free|fast|slowly|together|alone|[\w-]+ly|[\w-]+ing)\b)[a-z]",
    re.I)
# Phrases where a video word does not ask for video ("a video game", "a movie poster").
_NOT_VIDEO_RE = re.compile(
    r"\b(?:rolling\s+(?:hills?|meadows?|fields?|pin)|running\s+(?:shoes?|water|track)|walking\s+(?:sticks?|canes?|boots?)|"
    r"flying\s+saucers?|flowing\s+(?:hair|dresses?|robes?|gowns?)|swimming\s+pools?|dancing\s+shoes?|"
    r"spinning\s+wheels?|riding\s+(?:boots?|hoods?)|driving\s+range|moving\s+boxe?s?|growing\s+up|"
    r"video\s+games?|video\s+gam(?:er|ing)|(?:movie|film|video)\s+(?:posters?|stills?|frames?|thumbnails?|"
    r"screenshots?|covers?|sets?|stars?|theaters?|theatres?|cameras?|tapes?)|(?:not|no|instead\s+of|rather\s+than)"
    r"\s+(?:an?\s+)?(?:videos?|animations?|clips?|gifs?|movies?|moving))\b", re.I)
_NOT_VIDEO_STRIP = re.compile(r"[,;]?\s*\b(?:(?:just|only)\s+)?(?:not|no|instead\s+of|rather\s+than)\s+"
                              r"(?:an?\s+)?(?:videos?|animations?|clips?|gifs?|movies?)\b", re.I)

_LEAD_RE = re.compile(
    r"^(?:(?:hey|hi|hello|ok(?:ay)?|so|now|please|pls|kindly|can|could|would|will)\b[\s,!]*|you\b\s*|"
    r"(?:i|we)\s+(?:want|need|would\s+like|'d\s+like|d\s+like)(?:\s+to\s+(?:see|have|get))?(?:\s+you\s+to)?\s*|"
    r"i'd\s+like(?:\s+to\s+see)?\s*|"
    r"(?:generate|create|make|draw|render|produce|paint|show|give|design|imagine|visualize|visualise|depict|"
    r"sketch(?=\s+(?:me|us)\b)|get|do|build|animate|film|shoot|illustrate)\b(?:\s+(?:me|us|for\s+me))?\s*|"
    r"(?:me|us)\b\s*)+", re.I)
_TAIL_RE = re.compile(r"(?:[\s,;.!?]*\b(?:please|pls|thanks|thank\s+you|for\s+me|for\s+us|if\s+you\s+can)\b)+[\s.!?]*$",
                      re.I)
_ANIMATE_RE = re.compile(r"(?:,?\s*\band\s+)?\b(?:make\s+it\s+(?:move|animated|an\s+animation)|animate\s+it|"
                         r"(?:as|into)\s+an?\s+(?:video|animation|clip|gif|movie))\b", re.I)
_INJECTION_RE = re.compile(r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+|your\s+|the\s+|previous\s+|prior\s+|"
                           r"above\s+)*(?:instructions?|rules?|prompts?|guidelines?)|\bsystem\s+prompt\b|"
                           r"\byou\s+are\s+now\b|\bjailbreak\b", re.I)

_NEG_ITEM = re.compile(r"^(?:no|without|avoid|exclude|not|don'?t\s+(?:include|show|add))\s+(?:any\s+)?(.+)$", re.I)
_EN_WORDS = frozenset(
    "a an the of in on at with and or to for from by is are my me please make draw show create generate "
    "image picture photo video clip some two three four this that it its into over under near".split())
_FOREIGN_WORDS = frozenset(
    "le la les un une des du et est dans sur avec pour qui que der die das und ein eine mit auf im ist den dem "
    "el los las y con del por para una il di che per gli della sono uno de het een en van op je ik wij".split())


@dataclass
class Request:
    """What the rules read from a request, before any model is chosen (`read_request`)."""

    text: str
    subject: str = ""
    modality: str = "image"
    modality_cue: str = ""
    count: int = 1
    count_cue: str = ""
    count_asked: float | None = None
    duration_s: float | None = None
    duration_cue: str = ""
    frames: int | None = None
    fps: int | None = None
    size: tuple[int, int] | None = None
    ratio: tuple[float, float] | None = None
    aspect: str | None = None
    aspect_cue: str = ""
    styles: list[str] = field(default_factory=list)
    negative: list[str] = field(default_factory=list)
    speed: str | None = None  # "fast" | "best"
    speed_cue: str = ""
    model: str | None = None
    model_cue: str = ""
    image: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    toy: bool = False
    toy_motion: bool = False
    english: bool = True
    injection: bool = False
    notes: list[str] = field(default_factory=list)


def _is_decade(m: re.Match[str], work: str, detect_clean: str) -> bool:
    """'1950s', '80s', "'90s": digits glued to an 's' that name a decade; '30s' is seconds only in a
    request that otherwise asks for a video ("a 30s clip")."""
    num = (m.group("num") or "").strip()
    if not re.fullmatch(r"\d+", num) or not work[m.end("num"):m.end("unit")] == "s":
        return False
    if work[max(m.start("num") - 1, 0):m.start("num")] in ("'", "\u2019"):
        return True
    if re.fullmatch(r"1[0-9]{2}0|20[0-9]0", num):
        return True
    return bool(re.fullmatch(r"[1-9]0", num)) and not _VIDEO_RE.search(detect_clean)


def _strip_fast(m: re.Match[str]) -> str:
    """Take out a speed phrase; "a quick sketch of a fox" keeps its article: "a sketch of a fox"."""
    if re.fullmatch(r"(?:as\s+)?an?\s+quick", m.group(0), re.I):
        rest = m.string[m.end():].lstrip()
        if re.match(r"[a-z]", rest, re.I) and not _DETERMINER.match(rest):
            return f" {'an' if rest[0].lower() in 'aeiou' else 'a'} "
    return " "


def _is_lead(prefix: str) -> bool:
    """Whether the text before a phrase holds only instructions ("please make me", "I'd like") or ends a
    list item, so the phrase starts the request ("three images of …") rather than sits inside the subject
    ("a man holding a picture of his wife")."""
    p = prefix.strip()
    if not p or p[-1] in ",;:.!?":
        return True
    p = _LEAD_RE.sub("", p.strip(" ,;:.!?"))
    p = re.sub(r"\b(?:just|only|maybe|also|let'?s|lets|try|then|and|again|first|now|another|here|"
               r"(?:i|we)\s+(?:want|need))\b", " ", p, flags=re.I)
    return not p.strip(" ,;:.!?")


def _phrase(m: re.Match[str]) -> str:
    return " ".join(m.group(0).split()).strip(" ,;:")


def _whole(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", re.I)


def read_request(request: str, vocab: Vocabulary, catalog: Any = None) -> Request:
    """Read a request into a `Request` (modality, count, duration, size, styles, speed, model …).

    Steps: 1. normalise whitespace and cut over-long text; 2. take out an input-image path;
    3. read each field from the text (detection) and remove the phrases that are pure instructions
    from a working copy (the subject); 4. tidy the subject; 5. check for a toy-world caption.
    """
    if not isinstance(request, str):
        raise InvalidParameter(f"The request must be text, got {type(request).__name__}.", value=request,
                               fix="pass a sentence such as 'a watercolor fox, portrait'.")
    text = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", request).split())
    if not text:
        raise InvalidParameter("The request is empty.", value=request,
                               fix="describe what to render, e.g. 'a small red circle on the left' or "
                                   "'a 5 second video of a paper boat on a river'.")
    r = Request(text=text)
    if len(text) > MAX_REQUEST_CHARS:
        cut = text[:MAX_REQUEST_CHARS]
        cut = cut[:cut.rfind(" ")] if " " in cut[MAX_REQUEST_CHARS // 2:] else cut
        r.notes.append(f"the request had {len(text):,} characters: only its first {len(cut):,} were read")
        text = cut
    work = text

    # 2. an input image
    m = _PATH_RE.search(work)
    if m:
        r.image = m.group(1)
        work = (work[:m.start()] + " " + work[m.end():])
        work = re.sub(r"\b(?:from|of|using|with|on|this|the|my|image|photo|picture|file)\b\s*(?=$|[,;:])", " ",
                      work, flags=re.I)
        work = re.sub(r"\b(?:this|the|that|my|our)\s+(?:image|photo|picture|file|one)\b", " ", work, flags=re.I)
    detect = work.lower()
    detect_clean = _NOT_VIDEO_RE.sub(" ", detect)

    # 3a. numbers the user set directly
    for rx, name in ((_SEED_RE, "seed"), (_GUIDANCE_RE, "guidance")):
        m = rx.search(work)
        if m:
            v = float(m.group(1))
            if name == "seed":
                if v > MAX_SEED:
                    r.notes.append(f"seed {int(v)} is above {MAX_SEED}: used {int(v) % (MAX_SEED + 1)}")
                r.seed = int(v) % (MAX_SEED + 1)
            else:
                r.guidance = min(v, 30.0)
                if v > 30:
                    r.notes.append(f"guidance {v:g} clamped to 30")
            work = work[:m.start()] + " " + work[m.end():]
    m = _STEPS_RE.search(work)
    if m:
        v = int(m.group(1) or m.group(2))
        r.steps = min(max(v, 1), MAX_STEPS)
        if r.steps != v:
            r.notes.append(f"{v} steps clamped to {r.steps}")
        work = work[:m.start()] + " " + work[m.end():]
    m = _FPS_RE.search(work)
    if m:
        v = int(m.group(1))
        r.fps = min(max(v, 1), 60)
        if r.fps != v:
            r.notes.append(f"{v} fps clamped to {r.fps}")
        work = work[:m.start()] + " " + work[m.end():]
    m = _FRAMES_RE.search(work)
    if m:
        r.frames = int(m.group(1))
        work = work[:m.start()] + " " + work[m.end():]

    # 3b. a model named in the request
    if catalog is not None:
        names: list[tuple[str, str]] = list(vocab.aliases)
        for e in catalog:
            names += [(e.id.lower(), e.id), (e.name.lower(), e.id)]
            if e.repo:
                names.append((e.repo.lower(), e.id))
        for phrase, mid in sorted(names, key=lambda p: -len(p[0])):
            mm = re.search(rf"(?:\b(?:with|using|via|on|by|through|in|model)\s+(?:the\s+)?)?(?<![\w.-])"
                           rf"{re.escape(phrase)}(?![\w-])(?:\s+model)?", work, re.I)
            if mm and catalog.find(mid) is not None:
                r.model, r.model_cue = catalog.find(mid).id, _phrase(mm)
                work = work[:mm.start()] + " " + work[mm.end():]
                break

    # 3c. duration
    for m in _DURATION_RE.finditer(work):
        if not m.group("num") and not m.group("half"):
            continue
        unit = m.group("unit").lower()
        if unit == "s" and not re.fullmatch(r"\d+(?:\.\d+)?", (m.group("num") or "").strip()):
            continue  # "s" alone is only a unit right after digits ("5s")
        if unit == "s" and _is_decade(m, work, detect_clean):
            continue  # "a 1950s diner", "a 90s style poster", "the '80s": a decade, not seconds
        n = parse_number(m.group("num")) if m.group("num") else 1.0
        if n is None:
            continue
        if m.group("half"):
            n = 0.5 * (n or 1.0)
        scale = 60.0 if unit.startswith("m") else 3600.0 if unit.startswith("h") else 1.0
        r.duration_s = n * scale
        r.duration_cue = _phrase(m)
        work = work[:m.start()] + " " + work[m.end():]
        break

    # 3d. size and aspect
    m = _SIZE_RE.search(work)
    if m:
        r.size = (int(m.group(1)), int(m.group(2)))
        r.aspect_cue = _phrase(m)
        work = work[:m.start()] + " " + work[m.end():]
    else:
        for m in _RATIO_RE.finditer(work):
            w, h = float(m.group(1)), float(m.group(2))
            key = (int(w) if w.is_integer() else w, int(h) if h.is_integer() else h)
            explicit = re.search(r"aspect|ratio|format|frame", m.group(0), re.I)
            if w > 0 and h > 0 and (key in _COMMON_RATIOS or explicit):
                r.ratio, r.aspect_cue = (w, h), _phrase(m)
                work = work[:m.start()] + " " + work[m.end():]
                break
    if r.size is None and r.ratio is None:
        for pattern, name in _ASPECT_STRONG:
            m = re.search(pattern, work, re.I)
            if m:
                r.aspect, r.aspect_cue = name, _phrase(m)
                work = work[:m.start()] + " " + work[m.end():]
                break
        else:
            # a trailing list item ", square" or ", landscape" is a format instruction
            for item in [p.strip(" .!") for p in re.split(r"[,;]", work)][1:]:
                if _ASPECT_ITEM.match(item):
                    name = {"vertical": "portrait", "tall": "portrait", "horizontal": "landscape",
                            "wide": "widescreen"}.get(item.lower(), item.lower())
                    r.aspect, r.aspect_cue = name, item
                    work = re.sub(rf"[,;]\s*{re.escape(item)}\s*(?=[,;.!]|$)", " ", work, count=1)
                    break
            else:
                for pattern, name in _ASPECT_WEAK:
                    m = re.search(pattern, detect_clean, re.I)
                    if m:
                        r.aspect, r.aspect_cue = name, _phrase(m)
                        break

    # 3e. speed
    fast = _FAST_RE.search(detect)
    best = _BEST_RE.search(detect)
    if fast:
        r.speed, r.speed_cue = "fast", _phrase(fast)
        if best:
            r.notes.append(f"'{_phrase(best)}' and '{r.speed_cue}' both asked: speed won")
    elif best:
        r.speed, r.speed_cue = "best", _phrase(best)
    work = _FAST_STRIP.sub(_strip_fast, work)

    # 3f. modality (read from the whole request, image path removed)
    video = _VIDEO_RE.search(detect_clean)
    image = _IMAGE_RE.search(detect_clean)
    attributive = {m.start("verb") for m in _ATTRIBUTIVE_MOTION.finditer(detect_clean)}
    motion = next((m for m in _MOTION_RE.finditer(detect_clean) if m.start() not in attributive), None)
    if r.duration_s is not None and r.duration_s > 0:
        r.modality, r.modality_cue = "video", r.duration_cue
    elif r.frames is not None or r.fps is not None:
        r.modality, r.modality_cue = "video", "a frame count" if r.frames else "an fps"
    elif video:
        r.modality, r.modality_cue = "video", _phrase(video)
    elif image:
        r.modality, r.modality_cue = "image", _phrase(image)
    elif motion:
        r.modality, r.modality_cue = "video", _phrase(motion)
    else:
        r.modality, r.modality_cue = "image", ""
    work = _NOT_VIDEO_STRIP.sub(" ", work)
    work = _ANIMATE_RE.sub(" ", work)

    # 3g. count
    m = _COUNT_KW_RE.search(work)
    if m:
        n = parse_number(m.group(1) or m.group(2))
        if n is not None:
            r.count_asked, r.count_cue = n, _phrase(m)
            work = work[:m.start()] + " " + work[m.end():]
    for m in _COUNT_RE.finditer(work):
        noun = m.group("noun").lower()
        if m.group("num"):
            n = parse_number(m.group("num"))
        else:
            n = parse_number(m.group("gnum")) if m.group("gnum") else _GROUP_COUNTS.get(
                " ".join(m.group("group").lower().split()))
        if n is None:
            continue
        after = work[m.end():]
        # a count inside the subject ("a man holding three photos of his kids") is not the output count
        if not (_is_lead(work[:m.start()]) or re.match(r"(?:in|as|with)\s", m.group(0), re.I)
                or re.match(r"\s*(?:[,;.!?]|$)", after)):
            continue
        if r.count_asked is None and n != 1:
            r.count_asked, r.count_cue = n, _phrase(m)
        noun = " ".join(noun.split())
        tail = m.group("tail")
        # the describing words between count and noun ("three watercolor pictures"), less instructions
        adjs = [w for w in m.group("adjs").split() if not _INSTRUCTION_ADJ.fullmatch(w)]
        if _GENERIC_ONE.match(noun) or (_GENERIC_MANY.match(noun) and n != 1):
            # "4 cinematic shots of a street" -> "a street" (the style adds its words); "two cat videos" -> "a cat"
            if adjs and not (tail and _DETERMINER.match(after)):
                words = " ".join(adjs)
                keep = f" {words} " if tail else f" {'an' if words[0].lower() in 'aeiou' else 'a'} {words} "
            else:
                keep = " "
        elif n == 1:  # "a photo of a cat": the noun is part of what the user wants to see
            if (m.group("num") or "").lower() in ("one", "1"):  # "one pixel art sprite" -> "a pixel art sprite"
                rest = work[m.end("num"):].lstrip()
                work = work[:m.start("num")] + ("an " if rest[:1].lower() in "aeiou" else "a ") + rest
            continue
        else:
            # "5 logos for a bakery" -> count 5 and "a logo for a bakery": one logo per output
            one = (noun[:-3] + "y" if noun.endswith("studies") else noun[:-2] if re.search(r"(?:ch|sh|x|s)es$", noun)
                   else noun[:-1] if noun.endswith("s") else noun)
            words = " ".join(adjs + [one])
            tail = "of" if tail == ":" else tail
            if not tail:  # "3 photos, a red apple" -> "a photo of a red apple"
                mm = re.match(r"\s*[,:]\s*(?=(?:a|an|the|some)\s)", after, re.I)
                if mm:
                    tail, work = "of", work[:m.end()] + " " + after[mm.end():]
            keep = f" {'an' if words[0].lower() in 'aeiou' else 'a'} {words} {tail or ''} "
            r.notes.append(f"the prompt says '{keep.strip()}' for '{_phrase(m)}'")
        work = work[:m.start()] + keep + work[m.end():]
        break
    # keep "cinematic" of "a cinematic video of rain", not "nice" of "a nice picture of a sunset"; only at the
    # start: "a man holding a picture of his wife" keeps its picture
    m = _BARE_OUT_RE.search(work)
    if m and _is_lead(work[:m.start()]):
        keep = "" if _DETERMINER.match(work[m.end():]) else m.group("adj")
        work = work[:m.start()] + " " + keep + " " + work[m.end():]
    if r.count_asked is not None:
        n = r.count_asked
        r.count = int(min(max(n, 1), MAX_COUNT)) if math.isfinite(n) else MAX_COUNT
        if r.count != n:
            r.notes.append(f"{n:,.0f} outputs asked ('{r.count_cue}'): clamped to {r.count}, the most one plan makes")

    # 3h. styles (whole words, anywhere in the request)
    for s in vocab.styles:
        if any(_whole(p).search(detect) for p in s.match):
            r.styles.append(s.name)

    # 4. the subject: the words left, tidied
    work = re.sub(r"\bwhat\s+(.+?)\s+(?:would|might|could|will|does|do)\s+look\s+like\b", r"\1", work, flags=re.I)
    work = _LEAD_RE.sub("", work.strip(" ,;:.!"))
    work = _TAIL_RE.sub("", work)
    work = re.sub(r"[.!?]?\s*\bmake\s+it\s*(?=$|[,.;!?])", " ", work, flags=re.I)
    r.subject = _tidy(work)
    r.english = _looks_english(r.subject or text)
    r.injection = bool(_INJECTION_RE.search(text))

    items = [p.strip() for p in r.subject.split(",")]
    kept = []
    for item in items:
        m = _NEG_ITEM.match(item)
        if m and len(items) > 1:
            r.negative.append(m.group(1).strip(" .!"))
        else:
            kept.append(item)
    if r.negative:
        r.subject = _tidy(", ".join(kept))

    # 5. the toy world
    r.toy = _is_toy_caption(r.subject)
    r.toy_motion = not r.toy and _is_toy_motion_caption(r.subject)
    return r


# Words left dangling once an instruction is taken out ("three images of" -> "of"). At the start only
# those that cannot begin a description: "on the right, a large triangle" keeps its "on".
_CONNECT = r"(?:of|with|showing|depicting|featuring|in|at|for|and|as|from|into|that|which|where)"
_LEAD_CONNECT = r"(?:of|with|showing|depicting|featuring|for|and|as|from|that|which|where)"


def _tidy(s: str) -> str:
    s = ",".join(p for p in s.split(",") if not _OUTPUT_ITEM.match(p.strip(" .!;:")))
    s = " ".join(s.split())
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", s)
    s = re.sub(rf"\b{_CONNECT}\s*(?=[,;]|$)", "", s, flags=re.I)
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", s)
    for _ in range(4):
        before = s
        s = s.strip(" ,;:-–—.!?")
        s = re.sub(rf"^(?:{_LEAD_CONNECT}|please|me|us)\b\s*", "", s, flags=re.I)
        s = re.sub(rf"\s*\b(?:{_CONNECT}|a|an|the|please)$", "", s, flags=re.I)
        if s == before:
            break
    return " ".join(s.split())


def _looks_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    if sum(1 for c in letters if c.isascii()) / len(letters) < 0.6:
        return False
    words = re.findall(r"[a-zà-ÿ']+", text.lower())
    en = sum(w in _EN_WORDS for w in words)
    foreign = sum(w in _FOREIGN_WORDS for w in words)
    return not (foreign >= 2 and foreign > en)


_TOY_FILLER = frozenset("a an one the on in at of and with shape shapes object objects scene toy world "
                        "its it is are".split())


def _toy_words_only(text: str) -> bool:
    """Every word of `text` is one of the toy world's (shapes, colours, sizes, positions, fillers)."""
    from labkit.toyworld import captions, scenes

    vocab = set(scenes.ALL_SHAPES) | set(scenes.COLOURS) | set(scenes.SIZES) | set(scenes.POSITIONS)
    vocab |= set(captions._SYNONYMS) | {f"{s}s" for s in scenes.ALL_SHAPES} | set(scenes.BACKGROUNDS)
    vocab |= {"background", "dark"}
    words = re.findall(r"[a-z]+", text.lower())
    return bool(words) and all(w in vocab or w in _TOY_FILLER for w in words)


def _is_toy_caption(subject: str) -> bool:
    """A toy-world caption: `captions.parse` reads it, and it has no word outside the grammar."""
    if not subject or len(subject) > 300 or not _toy_words_only(subject):
        return False
    from labkit.toyworld import captions

    try:
        captions.parse(subject)
    except LabkitError:
        return False
    return True


def _is_toy_motion_caption(subject: str) -> bool:
    """A toy-world motion caption ("a blue square moving up"): `motion.parse_motion` reads it, and once its
    motion phrase is taken out no word is left outside the toy grammar."""
    if not subject or len(subject) > 300:
        return False
    from labkit.toyworld import motion

    try:
        motion.parse_motion(subject)
    except LabkitError:
        return False
    rest = subject.lower()
    for pattern in (motion._MOVE_RE, motion._GROW_RE, motion._SHRINK_RE):
        rest = pattern.sub(" ", rest)
    return _toy_words_only(rest)


# -- choosing the model ----------------------------------------------------------------------------


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


def model_fit(entry: CatalogEntry, profile: HardwareProfile, vocab: Vocabulary) -> Fit:
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
        ok = entry.family in vocab.cpu_families
        return Fit(entry, ok, strategy, est, 0 if ok else 3)
    pace = {"none": 0, "model": 1, "group": 1, "sequential": 2}.get(strategy.offload, 2)
    return Fit(entry, est <= vocab.headroom * float(profile.tier), strategy, est, pace)


def _does(entry: CatalogEntry, task: str) -> bool:
    return task in entry.tasks or (task == "txt2vid" and "img2vid" in entry.tasks)


def _is_turbo(entry: CatalogEntry) -> bool:
    return entry.default_steps <= 4


def _rank(order: tuple[str, ...], entry: CatalogEntry) -> tuple[int, int, str]:
    if entry.id in order:
        return (order.index(entry.id), 0, entry.id)
    return (len(order), -entry.width * entry.height, entry.id)


# -- the controller --------------------------------------------------------------------------------


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
        entry, why = self._choose_model(r, task, ctx)
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

    def _choose_model(self, r: Request, task: str, ctx: PlanContext) -> tuple[CatalogEntry | None, str]:
        cat, hw, vocab = ctx.catalog, ctx.hardware, self.vocab
        doers = [e for e in cat if _does(e, task)]
        if not doers:
            default = ctx.default_model(r.modality)
            if not default:
                raise InvalidParameter(f"No catalogued model does {task} and no default {r.modality} model is set.",
                                       value=task, fix=f"add a {task} model to the catalogue or set "
                                                       f"default_{r.modality}_model in labkit.toml.")
            entry = cat.find(default)
            return (entry if entry is not None and _does(entry, task) else None,
                    f"model {default} (the lab's default: no catalogued model does {task})")
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

        # a model the user named
        if r.model:
            e = cat.find(r.model)
            if e is not None and not _does(e, task):
                r.notes.append(f"{e.id} (from {r.model_cue!r}) does not do {task}: chose another model")
            elif e is not None and not ctx.allows(e.licence):
                raise ComplianceViolation(
                    f"{e.id} (asked as {r.model_cue!r}) is under {e.licence}, which compliance mode "
                    f"{ctx.compliance_mode!r} does not allow.", value=e.licence,
                    fix=f"ask for one of {', '.join(a.id for a in allowed)}, or change the compliance mode.")
            elif e is not None:
                f = model_fit(e, hw, vocab)
                warn = "" if f.fits else "; it may not fit this machine (expect offloading or out-of-memory)"
                return e, f"model {e.id} as asked ({r.model_cue!r}; {f.describe(hw)}{warn})"

        # the toy world
        toys = [e for e in allowed if e.family == "toy"]
        if ctx.toy_world and toys:
            if r.toy and task == "txt2img":
                return toys[0], f"model {toys[0].id} (the request is a toy-world caption){refused_note}"
            if (r.toy or r.toy_motion) and task in ("txt2vid", "img2vid"):
                what = "a toy-world motion caption" if r.toy_motion else "a toy-world caption asked as video"
                return toys[0], f"model {toys[0].id} (the request is {what}){refused_note}"
        general = [e for e in allowed if e.family != "toy"] or allowed

        fits = [model_fit(e, hw, vocab) for e in general]
        good = [f for f in fits if f.fits]
        where = "a CPU-only machine" if hw.tier == "cpu" else f"the {hw.tier} GB tier"
        if not good:
            f = min(fits, key=lambda f: (f.est_gb, _rank(vocab.quality, f.entry)))
            return f.entry, (f"model {f.entry.id}: nothing that does {task} fits {where}, so the one needing the "
                             f"least memory ({f.describe(hw)}); expect it to be very slow or run out of "
                             f"memory{refused_note}")
        if r.speed == "fast":
            f = min(good, key=lambda f: (not _is_turbo(f.entry), f.pace, _rank(vocab.fast, f.entry)))
            why = f"the fastest {task} model that fits {where}, for {r.speed_cue!r}"
        elif r.speed == "best":
            f = min(good, key=lambda f: _rank(vocab.quality, f.entry))
            why = f"the best {task} model that fits {where}, for {r.speed_cue!r}"
        else:
            f = min(good, key=lambda f: (f.pace >= 2 and any(g.pace < 2 for g in good), _rank(vocab.quality, f.entry)))
            why = f"the best {task} model that fits {where}" + (
                " without sequential offload" if any(g.pace >= 2 for g in good) and f.pace < 2 else "")
        return f.entry, f"model {f.entry.id} ({why}: {f.describe(hw)}){refused_note}"

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
            rw, rh = _ASPECT_RATIOS[r.aspect][1 if modality == "video" else 0]
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
            steps = (v.best_turbo_steps if _is_turbo(e)
                     else min(v.max_steps, round(e.default_steps * v.best_steps_factor)))
            if steps <= e.default_steps:
                return None, ""
            return steps, f"{steps} steps instead of {e.default_steps} for {r.speed_cue!r}"
        if r.speed == "fast" and not _is_turbo(e):
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


__all__ = ["RULES_VERSION", "Fit", "Request", "RulesController", "Style", "Vocabulary", "model_fit",
           "parse_number", "read_request"]

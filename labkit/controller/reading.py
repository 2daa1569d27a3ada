"""Reading a request: plain English to a `Request` (the fields a plan needs), one small reader per field.

`read_request(text, vocab, catalog)` composes the readers in a fixed order. Each reader takes the
working text, sets its fields on the `Request` and returns the text with the phrase it read taken out
(so "three images of a fox, portrait" ends as the subject "a fox"); pure instructions go, words that
also describe the picture ("cinematic", "high quality") stay. No model is chosen here and nothing is
random: the same text always reads the same. The words come from `vocabulary.toml` (see `grammar`).

Example:

    >>> from labkit.controller.reading import read_request
    >>> from labkit.controller.vocabulary import Vocabulary
    >>> r = read_request("three watercolor images of a fox in the snow, portrait", Vocabulary.load(use_env=False))
    >>> r.subject, r.count, r.aspect, r.styles, r.modality
    ('a fox in the snow', 3, 'portrait', ['watercolor'], 'image')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from labkit.controller.grammar import grammar, parse_number
from labkit.controller.vocabulary import Vocabulary
from labkit.errors import InvalidParameter, LabkitError
from labkit.plan import MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS

#: Requests longer than this are cut (at a word boundary) before they are read; the rationale says so.
MAX_REQUEST_CHARS = MAX_PROMPT_CHARS


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


def read_request(request: str, vocab: Vocabulary, catalog: Any = None) -> Request:
    """Read a request into a `Request` (modality, count, duration, size, styles, speed, model …).

    Steps: 1. normalise whitespace and cut over-long text; 2. take out an input-image path;
    3. read each field from the text (detection) and remove the phrases that are pure instructions
    from a working copy (the subject); 4. tidy the subject; 5. check for a toy-world caption.
    `InvalidParameter` when the request is not text or is empty.
    """
    # 1. the text
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

    # 2. an input image; what is left is what the other readers detect in
    work = read_image(text, r)
    detect = work.lower()
    detect_clean = grammar().not_video.sub(" ", detect)

    # 3. the fields, in this order: numbers set directly, model, duration, size, speed, modality, count
    for reader in (read_seed, read_guidance, read_steps, read_fps, read_frames):
        work = reader(work, r)
    work = read_model(work, r, vocab, catalog)
    work = read_duration(work, r, detect_clean)
    work = read_size(work, r, detect_clean)
    work = read_speed(work, r, detect)
    work = read_modality(work, r, detect_clean)
    work = read_count(work, r)
    read_styles(r, vocab, detect)

    # 4. the prompt: the words left, tidied, and the "no …" items moved to the negative prompt
    read_prompt(work, r, text)
    read_negative(r)

    # 5. the toy world
    read_toy(r)
    return r


# -- the readers, in the order read_request calls them ----------------------------------------------


def read_image(work: str, r: Request) -> str:
    """An input image path (png, jpg, webp, bmp) → `r.image`, for img2img / img2vid; the path and the
    words that pointed at it ("from this photo") are taken out.

    >>> r = Request("animate photos/boat.png")
    >>> read_image(r.text, r).strip(), r.image
    ('animate', 'photos/boat.png')
    """
    m = grammar().path.search(work)
    if not m:
        return work
    r.image = m.group(1)
    work = (work[:m.start()] + " " + work[m.end():])
    work = re.sub(r"\b(?:from|of|using|with|on|this|the|my|image|photo|picture|file)\b\s*(?=$|[,;:])", " ",
                  work, flags=re.I)
    return re.sub(r"\b(?:this|the|that|my|our)\s+(?:image|photo|picture|file|one)\b", " ", work, flags=re.I)


def read_seed(work: str, r: Request) -> str:
    """"seed 42", "with seed: 7" → `r.seed`, wrapped into 0..MAX_SEED (a note says so).

    >>> r = Request("a fox, seed 42")
    >>> read_seed(r.text, r).strip(), r.seed
    ('a fox,', 42)
    """
    m = grammar().seed.search(work)
    if not m:
        return work
    v = int(float(m.group(1)))  # through float, as rules 1.2 reads it: a 20-digit seed keeps its plan
    if v > MAX_SEED:
        r.notes.append(f"seed {v} is above {MAX_SEED}: used {v % (MAX_SEED + 1)}")
    r.seed = v % (MAX_SEED + 1)
    return work[:m.start()] + " " + work[m.end():]


def read_guidance(work: str, r: Request) -> str:
    """"guidance 7.5", "cfg scale of 5" → `r.guidance`, at most 30 (a note says so).

    >>> r = Request("a fox with cfg 40")
    >>> read_guidance(r.text, r).strip(), r.guidance, r.notes
    ('a fox', 30.0, ['guidance 40 clamped to 30'])
    """
    m = grammar().guidance.search(work)
    if not m:
        return work
    v = float(m.group(1))
    r.guidance = min(v, 30.0)
    if v > 30:
        r.notes.append(f"guidance {v:g} clamped to 30")
    return work[:m.start()] + " " + work[m.end():]


def read_steps(work: str, r: Request) -> str:
    """"30 steps", "steps: 12" → `r.steps`, clamped to 1..MAX_STEPS (a note says so).

    >>> r = Request("a fox in 30 steps")
    >>> read_steps(r.text, r).strip(), r.steps
    ('a fox', 30)
    """
    m = grammar().steps.search(work)
    if not m:
        return work
    v = int(m.group(1) or m.group(2))
    r.steps = min(max(v, 1), MAX_STEPS)
    if r.steps != v:
        r.notes.append(f"{v} steps clamped to {r.steps}")
    return work[:m.start()] + " " + work[m.end():]


def read_fps(work: str, r: Request) -> str:
    """"24 fps", "at 12 frames per second" → `r.fps`, clamped to 1..60 (a note says so).

    >>> r = Request("a clip of rain at 12 fps")
    >>> read_fps(r.text, r).strip(), r.fps
    ('a clip of rain', 12)
    """
    m = grammar().fps.search(work)
    if not m:
        return work
    v = int(m.group(1))
    r.fps = min(max(v, 1), 60)
    if r.fps != v:
        r.notes.append(f"{v} fps clamped to {r.fps}")
    return work[:m.start()] + " " + work[m.end():]


def read_frames(work: str, r: Request) -> str:
    """"48 frames", "a 16-frame loop" → `r.frames` as asked (the model's limits apply later).

    >>> r = Request("a bouncing ball, 48 frames")
    >>> read_frames(r.text, r).strip(), r.frames
    ('a bouncing ball,', 48)
    """
    m = grammar().frames.search(work)
    if not m:
        return work
    r.frames = int(m.group(1))
    return work[:m.start()] + " " + work[m.end():]


def read_model(work: str, r: Request, vocab: Vocabulary, catalog: Any) -> str:
    """A catalogue model named in the request ("with sdxl", "using wan") → `r.model` (its catalogue id)
    and `r.model_cue`; the longest name wins; names are catalogue ids, names, repos and the vocabulary's
    aliases. Nothing is read without a catalogue.

    >>> from labkit.catalog import Catalog
    >>> r = Request("a lighthouse using wan")
    >>> read_model(r.text, r, Vocabulary.load(use_env=False), Catalog.load(use_env=False)).strip(), r.model
    ('a lighthouse', 'wan2.1-t2v-1.3b')
    """
    if catalog is None:
        return work
    names: list[tuple[str, str]] = list(vocab.aliases)
    for e in catalog:
        names += [(e.id.lower(), e.id), (e.name.lower(), e.id)]
        if e.repo:
            names.append((e.repo.lower(), e.id))
    for phrase, mid in sorted(names, key=lambda p: -len(p[0])):
        m = re.search(rf"(?:\b(?:with|using|via|on|by|through|in|model)\s+(?:the\s+)?)?(?<![\w.-])"
                      rf"{re.escape(phrase)}(?![\w-])(?:\s+model)?", work, re.I)
        if m and catalog.find(mid) is not None:
            r.model, r.model_cue = catalog.find(mid).id, _phrase(m)
            return work[:m.start()] + " " + work[m.end():]
    return work


def read_duration(work: str, r: Request, detect_clean: str) -> str:
    """"5 seconds", "a 10-minute video", "half a minute", "5s" → `r.duration_s` and `r.duration_cue`.
    A decade is not a duration ("a 1950s diner", "80s style"), and "30s" is seconds only when the rest of
    the request asks for a video (`detect_clean`: the request with "video game"-like phrases removed).

    >>> r = Request("a 10 second clip of rain")
    >>> " ".join(read_duration(r.text, r, r.text).split()), r.duration_s, r.duration_cue
    ('a clip of rain', 10.0, '10 second')
    """
    g = grammar()
    for m in g.duration.finditer(work):
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
        r.duration_s = n * g.unit_seconds(unit)
        r.duration_cue = _phrase(m)
        return work[:m.start()] + " " + work[m.end():]
    return work


def read_size(work: str, r: Request, detect_clean: str) -> str:
    """The output's shape, the first of: a size ("1024x768") → `r.size`; a ratio ("16:9", "aspect ratio
    3:2") → `r.ratio`; format words ("in portrait", "widescreen", "phone wallpaper", a trailing ", square")
    → `r.aspect`; weak cues ("a portrait of", "landscapes") → `r.aspect`, left in the subject.

    >>> r = Request("a harbour at dawn, 16:9")
    >>> read_size(r.text, r, r.text).strip(), r.ratio
    ('a harbour at dawn,', (16.0, 9.0))
    """
    g = grammar()
    m = g.size.search(work)
    if m:
        r.size = (int(m.group(1)), int(m.group(2)))
        r.aspect_cue = _phrase(m)
        return work[:m.start()] + " " + work[m.end():]
    for m in g.ratio.finditer(work):
        w, h = float(m.group(1)), float(m.group(2))
        key = (int(w) if w.is_integer() else w, int(h) if h.is_integer() else h)
        explicit = re.search(r"aspect|ratio|format|frame", m.group(0), re.I)
        if w > 0 and h > 0 and (key in g.common_ratios or explicit):
            r.ratio, r.aspect_cue = (w, h), _phrase(m)
            return work[:m.start()] + " " + work[m.end():]
    for pattern, name in g.aspect_strong:
        m = re.search(pattern, work, re.I)
        if m:
            r.aspect, r.aspect_cue = name, _phrase(m)
            return work[:m.start()] + " " + work[m.end():]
    # a trailing list item ", square" or ", landscape" is a format instruction
    for item in [p.strip(" .!") for p in re.split(r"[,;]", work)][1:]:
        if g.aspect_item.match(item):
            r.aspect, r.aspect_cue = g.aspect_items[item.lower()], item
            return re.sub(rf"[,;]\s*{re.escape(item)}\s*(?=[,;.!]|$)", " ", work, count=1)
    for pattern, name in g.aspect_weak:
        m = re.search(pattern, detect_clean, re.I)
        if m:
            r.aspect, r.aspect_cue = name, _phrase(m)
            break
    return work


def read_speed(work: str, r: Request, detect: str) -> str:
    """Speed words ("quick", "draft", "preview") → `r.speed = "fast"`; quality words ("best", "high
    quality", "detailed") → `"best"`; speed wins when both are asked (a note says so). Speed phrases are
    instructions and go; quality words stay in the prompt.

    >>> r = Request("a quick sketch of a fox")
    >>> " ".join(read_speed(r.text, r, r.text.lower()).split()), r.speed, r.speed_cue
    ('a sketch of a fox', 'fast', 'quick')
    """
    g = grammar()
    fast = g.fast.search(detect)
    best = g.best.search(detect)
    if fast:
        r.speed, r.speed_cue = "fast", _phrase(fast)
        if best:
            r.notes.append(f"'{_phrase(best)}' and '{r.speed_cue}' both asked: speed won")
    elif best:
        r.speed, r.speed_cue = "best", _phrase(best)
    return g.fast_strip.sub(_strip_fast, work)


def read_modality(work: str, r: Request, detect_clean: str) -> str:
    """Image or video → `r.modality` and `r.modality_cue`, the first of: a duration, a frame count or
    fps (video); video words ("clip", "animated"); image words ("photo", "painting"); motion verbs
    ("flying", "spinning", not as an adjective: "a flying car"); otherwise an image. Phrases that say
    "not a video" and "make it move" are taken out.

    >>> r = Request("a hawk flying over a canyon")
    >>> read_modality(r.text, r, r.text.lower()).strip(), r.modality, r.modality_cue
    ('a hawk flying over a canyon', 'video', 'flying')
    """
    g = grammar()
    video = g.video.search(detect_clean)
    image = g.image.search(detect_clean)
    attributive = {m.start("verb") for m in g.attributive_motion.finditer(detect_clean)}
    motion = next((m for m in g.motion.finditer(detect_clean) if m.start() not in attributive), None)
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
    work = g.not_video_strip.sub(" ", work)
    return g.animate.sub(" ", work)


def read_count(work: str, r: Request) -> str:
    """How many outputs → `r.count` (clamped to 1..MAX_COUNT, a note says so) and `r.count_cue`:
    "three images", "4 variations", "a pair of pictures", "count: 6", "x4". Only a count that starts the
    request counts ("a man holding three photos" is one image). The output noun goes; its describing words
    stay, one per output ("5 logos for a bakery" → "a logo for a bakery").

    >>> r = Request("5 logos for a bakery")
    >>> " ".join(read_count(r.text, r).split()), r.count, r.count_cue
    ('a logo for a bakery', 5, '5 logos')
    """
    g = grammar()
    m = g.count_kw.search(work)
    if m:
        n = parse_number(m.group(1) or m.group(2))
        if n is not None:
            r.count_asked, r.count_cue = n, _phrase(m)
            work = work[:m.start()] + " " + work[m.end():]
    for m in g.count.finditer(work):
        noun = m.group("noun").lower()
        if m.group("num"):
            n = parse_number(m.group("num"))
        else:
            n = parse_number(m.group("gnum")) if m.group("gnum") else g.group_counts.get(
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
        adjs = [w for w in m.group("adjs").split() if not g.instruction_adj.fullmatch(w)]
        if g.generic_one.match(noun) or (g.generic_many.match(noun) and n != 1):
            # "4 cinematic shots of a street" -> "a street" (the style adds its words); "two cat videos" -> "a cat"
            if adjs and not (tail and g.determiner.match(after)):
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
    m = g.bare_out.search(work)
    if m and _is_lead(work[:m.start()]):
        keep = "" if g.determiner.match(work[m.end():]) else m.group("adj")
        work = work[:m.start()] + " " + keep + " " + work[m.end():]
    if r.count_asked is not None:
        n = r.count_asked
        r.count = int(min(max(n, 1), MAX_COUNT)) if math.isfinite(n) else MAX_COUNT
        if r.count != n:
            r.notes.append(f"{n:,.0f} outputs asked ('{r.count_cue}'): clamped to {r.count}, the most one plan makes")
    return work


def read_styles(r: Request, vocab: Vocabulary, detect: str) -> None:
    """The styles of `vocab` whose match words occur as whole words anywhere in the request → `r.styles`
    (in the vocabulary's order); the words stay in the subject.

    >>> r = Request("a watercolor fox")
    >>> read_styles(r, Vocabulary.load(use_env=False), r.text); r.styles
    ['watercolor']
    """
    for s in vocab.styles:
        if any(_whole(p).search(detect) for p in s.match):
            r.styles.append(s.name)


def read_prompt(work: str, r: Request, text: str) -> None:
    """The subject → `r.subject`: the words the other readers left, less the opening and closing
    courtesies ("please make me", "thanks") and dangling connectives ("of"); also whether the request
    reads as English (`r.english`) and whether it talks to a language model (`r.injection`).

    >>> r = Request("please draw me   a fox of , thanks")
    >>> read_prompt(r.text, r, r.text); r.subject, r.english
    ('a fox', True)
    """
    g = grammar()
    work = re.sub(r"\bwhat\s+(.+?)\s+(?:would|might|could|will|does|do)\s+look\s+like\b", r"\1", work, flags=re.I)
    work = g.lead.sub("", work.strip(" ,;:.!"))
    work = g.tail.sub("", work)
    work = re.sub(r"[.!?]?\s*\bmake\s+it\s*(?=$|[,.;!?])", " ", work, flags=re.I)
    r.subject = _tidy(work)
    r.english = _looks_english(r.subject or text)
    r.injection = bool(g.injection.search(text))


def read_negative(r: Request) -> None:
    """List items of the subject that say "not this" (", no people", ", without text") → `r.negative`,
    taken out of the subject; a subject of one item keeps its words ("no entry sign").

    >>> r = Request("x", subject="a quiet beach, no people, without boats")
    >>> read_negative(r); r.subject, r.negative
    ('a quiet beach', ['people', 'boats'])
    """
    items = [p.strip() for p in r.subject.split(",")]
    kept = []
    for item in items:
        m = grammar().neg_item.match(item)
        if m and len(items) > 1:
            r.negative.append(m.group(1).strip(" .!"))
        else:
            kept.append(item)
    if r.negative:
        r.subject = _tidy(", ".join(kept))


def read_toy(r: Request) -> None:
    """Whether the subject is a toy-world caption (`r.toy`: "a small red circle on the left") or a toy
    motion caption (`r.toy_motion`: "a blue square moving up"): every word is the toy world's.

    >>> r = Request("x", subject="a blue square moving up")
    >>> read_toy(r); r.toy, r.toy_motion
    (False, True)
    """
    r.toy = _is_toy_caption(r.subject)
    r.toy_motion = not r.toy and _is_toy_motion_caption(r.subject)


# -- helpers -----------------------------------------------------------------------------------------


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
    return bool(re.fullmatch(r"[1-9]0", num)) and not grammar().video.search(detect_clean)


def _strip_fast(m: re.Match[str]) -> str:
    """Take out a speed phrase; "a quick sketch of a fox" keeps its article: "a sketch of a fox"."""
    if re.fullmatch(r"(?:as\s+)?an?\s+quick", m.group(0), re.I):
        rest = m.string[m.end():].lstrip()
        if re.match(r"[a-z]", rest, re.I) and not grammar().determiner.match(rest):
            return f" {'an' if rest[0].lower() in 'aeiou' else 'a'} "
    return " "


def _is_lead(prefix: str) -> bool:
    """Whether the text before a phrase holds only instructions ("please make me", "I'd like") or ends a
    list item, so the phrase starts the request ("three images of …") rather than sits inside the subject
    ("a man holding a picture of his wife")."""
    p = prefix.strip()
    if not p or p[-1] in ",;:.!?":
        return True
    p = grammar().lead.sub("", p.strip(" ,;:.!?"))
    p = re.sub(r"\b(?:just|only|maybe|also|let'?s|lets|try|then|and|again|first|now|another|here|"
               r"(?:i|we)\s+(?:want|need))\b", " ", p, flags=re.I)
    return not p.strip(" ,;:.!?")


def _phrase(m: re.Match[str]) -> str:
    return " ".join(m.group(0).split()).strip(" ,;:")


def _whole(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", re.I)


# Words left dangling once an instruction is taken out ("three images of" -> "of"). At the start only
# those that cannot begin a description: "on the right, a large triangle" keeps its "on".
_CONNECT = r"(?:of|with|showing|depicting|featuring|in|at|for|and|as|from|into|that|which|where)"
_LEAD_CONNECT = r"(?:of|with|showing|depicting|featuring|for|and|as|from|that|which|where)"


def _tidy(s: str) -> str:
    s = ",".join(p for p in s.split(",") if not grammar().output_item.match(p.strip(" .!;:")))
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
    g = grammar()
    words = re.findall(r"[a-zà-ÿ']+", text.lower())
    en = sum(w in g.en_words for w in words)
    foreign = sum(w in g.foreign_words for w in words)
    return not (foreign >= 2 and foreign > en)


def _toy_words_only(text: str) -> bool:
    """Every word of `text` is one of the toy world's (shapes, colours, sizes, positions, fillers)."""
    from labkit.toyworld import captions, scenes

    vocab = set(scenes.ALL_SHAPES) | set(scenes.COLOURS) | set(scenes.SIZES) | set(scenes.POSITIONS)
    vocab |= set(captions._SYNONYMS) | {f"{s}s" for s in scenes.ALL_SHAPES} | set(scenes.BACKGROUNDS)
    words = re.findall(r"[a-z]+", text.lower())
    filler = grammar().toy_filler
    return bool(words) and all(w in vocab or w in filler for w in words)


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

"""The patterns the rules controller reads requests with, built once from `vocabulary.toml`.

`grammar()` joins the word lists of `words()` into compiled regular expressions (cached: built on the
first request, not at import). The sentence structure (where a count, a duration or a size may stand)
is here; the words themselves are data. `parse_number` reads the numbers those patterns find.

Example:

    >>> from labkit.controller.grammar import grammar, parse_number
    >>> bool(grammar().video.search("a short clip of rain"))
    True
    >>> parse_number("twenty five"), parse_number("10k"), parse_number("a dozen")
    (25.0, 10000.0, None)
"""

from __future__ import annotations

import re
from functools import cache

from labkit.controller.vocabulary import words


def _alt(items: object) -> str:
    return "|".join(items)  # type: ignore[call-overload]


def _spaced(phrase: str) -> str:
    return r"\s+".join(phrase.split())


class Grammar:
    """Compiled patterns and tables of the request reader (attributes named after what they find)."""

    def __init__(self) -> None:
        w = words()
        # numbers: "10,000", "2.5", "10k", "twenty five", "a hundred"
        self.num_words: dict[str, int] = dict(w["numbers.words"])
        self.scales: dict[str, int] = dict(w["numbers.scales"])
        wordnum = (r"(?:(?:a|an|" + _alt(self.num_words) + r")(?:[\s-]+(?:and[\s-]+)?(?:"
                   + _alt(list(self.num_words) + list(self.scales)) + r"))*)")
        digits = r"(?:\d{1,3}(?:[,'_]\d{3})+|\d+)(?:\.\d+)?\s?[km]?"
        self.digits = digits
        self.NUM = num = rf"(?:{digits}|{wordnum})"

        # outputs and counts: "three watercolor pictures of", "a pair of", "4 variations"
        image_out = _alt(w["outputs.image_nouns"])
        self.video_out = video_out = _alt(w["outputs.video_nouns"])
        self.out_noun = out_noun = rf"(?:{video_out}|{image_out})"
        plain = _alt(w["outputs.plain_image_nouns"])
        seconds = r"\d+(?:\.\d+)?[- ]?(?:seconds?|secs?|s|minutes?|mins?)(?:[- ]long)?"
        instr = _alt(w["outputs.instruction_adjectives"]) + "|" + seconds
        out_adj = rf"(?:(?:{instr})\s+)"
        not_adj = rf"(?:{_alt(w['outputs.function_words'])})"
        ing_adj = rf"(?:{_alt(w['outputs.ing_adjectives'])})"
        self.instruction_adj = re.compile(instr + r"|[- ]?long", re.I)
        # any other describing word between a count and its noun, but not one that starts a clause of the
        # subject: no function words, no -ing verbs but adjectives like "stunning"
        free_adj = rf"(?:(?!{not_adj}\b)(?!(?!{ing_adj}\b)[\w'-]+ing\b)[\w'][\w'-]*\s+)"
        self.generic_one = re.compile(rf"^(?:{video_out}|{plain})$")
        self.generic_many = re.compile(rf"^(?:{_alt(w['outputs.generic_many'])})$")
        self.output_item = re.compile(rf"^(?:(?:as|in)\s+)?(?:an?\s+)?(?:{video_out}|{plain})$", re.I)
        self.group_counts: dict[str, int] = dict(w["counts.groups"])
        groups = _alt(_spaced(g) for g in self.group_counts)
        self.count = re.compile(
            rf"(?:\b(?:in|as|with)\s+)?(?:\b(?P<group>{groups})\s+(?:of\s+)?(?:(?P<gnum>{digits})\s+)?"
            rf"|\b(?P<num>{num})\s+)"
            rf"(?P<adjs>(?:{out_adj}|{free_adj}|(?:{image_out})\s+|black\s+and\s+white\s+){{0,4}})"
            rf"(?P<noun>{out_noun})\b(?![\w-])(?!\s+(?:games?|gam(?:er|ing)|{out_noun})\b)"
            rf"(?:\s*(?P<tail>of|showing|depicting|featuring|with|where|in\s+which|about|:)(?!\w))?",
            re.I)
        # "a cinematic video of rain" -> "cinematic rain": the output noun goes, the describing words stay
        self.bare_out = re.compile(rf"(?:^|(?<=[\s,;:]))(?:(?:a|an|the|one|some)\s+)?(?P<adj>(?:[\w-]+\s+){{0,2}}?)"
                                   rf"(?:{video_out}|{plain})(?:\s+"
                                   rf"(?:of|showing|depicting|featuring|where|in\s+which|about)\b|\s*:)\s*", re.I)
        self.determiner = re.compile(rf"^\s*(?:a|an|the|my|our|his|her|their|this|that|these|those|some|"
                                     rf"{_alt(self.num_words)}|\d+)\b", re.I)
        self.count_kw = re.compile(r"\b(?:count|batch(?:\s+size)?|n)\s*[:=]\s*(\d[\d,]*)\b|\bx\s?(\d{1,5})\b(?!\s*\d)",
                                   re.I)

        # durations and the numbers set directly
        self.units: dict[str, float] = dict(w["durations.units"])
        self.duration = re.compile(
            rf"(?:\b(?:{_alt(w['durations.leads'])})\s+)?"
            rf"(?P<half>\bhalf\s+(?:a|an)\s+)?\b(?P<num>{num})?\s*[- ]?\s*"
            rf"(?P<unit>{_alt(self.units)})\b(?:[- ]long)?", re.I)
        self.fps = re.compile(r"\b(?:at\s+)?(\d{1,4})\s*(?:fps|frames?\s+(?:per|a|/)\s*second)\b", re.I)
        self.frames = re.compile(r"\b(?:with\s+)?(\d{1,6})[- ]?frames?\b(?:[- ]long)?", re.I)
        self.seed = re.compile(r"\b(?:with\s+|using\s+)?seed\s*(?:[:=#]|of|is)?\s*(\d{1,20})\b", re.I)
        self.steps = re.compile(r"\b(?:with\s+|in\s+|using\s+)?(\d{1,5})\s*(?:denoising\s+|sampling\s+|inference\s+)?"
                                r"steps\b|\bsteps\s*[:=]\s*(\d{1,5})\b", re.I)
        self.guidance = re.compile(r"\b(?:with\s+)?(?:guidance(?:\s+scale)?|cfg(?:\s+scale)?)\s*(?:[:=]|of)?\s*"
                                   r"(\d{1,3}(?:\.\d+)?)\b", re.I)

        # sizes and aspects
        self.size = re.compile(r"(?:\b(?:at|in|size|resolution|of)\s+)?(?<![\w.])(\d{2,5})\s*[x×*]\s*(\d{2,5})"
                               r"(?:\s*(?:px|pixels))?\b(?:\s+(?:resolution|pixels|size))?", re.I)
        self.ratio = re.compile(r"(?:\b(?:in|at|with)\s+)?"
                                r"(?:\b(?:an?\s+)?(?:aspect(?:\s+ratio)?|ratio|format)\s*(?:of|:|=)?\s*)?"
                                r"(?<![\d.:])(\d{1,2}(?:\.\d{1,2})?)\s*:\s*(\d{1,2}(?:\.\d{1,2})?)(?![\d:])"
                                r"(?:\s+(?:aspect(?:\s+ratio)?|ratio|format|frame))?", re.I)
        self.common_ratios = set(w["aspect.common_ratios"])
        self.aspect_ratios = {name: (r["image"], r["video"]) for name, r in w["aspect.ratios"].items()}
        self.aspect_strong: list[tuple[str, str]] = list(w["aspect.strong"])
        self.aspect_weak: list[tuple[str, str]] = list(w["aspect.weak"])
        self.aspect_items: dict[str, str] = dict(w["aspect.items"])
        self.aspect_item = re.compile(rf"^(?:{_alt(self.aspect_items)})$", re.I)
        self.path = re.compile(r"(?<!\S)[\"']?((?:[~.]?/)?(?:[\w.-]+/)*[\w.-]+\.(?:png|jpe?g|webp|bmp))[\"']?"
                               r"(?=$|[\s,;:!?)])", re.I)

        # speed: "quick" only where it is about the output ("a quick sketch", "quick: a cat"), not in the
        # subject ("a quick brown fox")
        quick = (r"(?:quick(?=(?:\s+[\w-]+){0,2}?\s+(?:" + _alt(w["speed.quick_objects"]) + "|"
                 + rf"{out_noun})\b|\s*(?:[,.;:!?]|$)|\s+(?:please|pls)\b)|^quick\b|"
                 + r"quickly(?=\s+(?:" + _alt(w["speed.quickly_verbs"]) + r")\b|\s*(?:[,.;:!?]|$))|"
                 + r"^quickly)")
        nouns = rf"(?:{_alt(w['speed.instruction_nouns'])})"
        draft = rf"draft(?!\s+(?:{_alt(w['speed.draft_not_before'])}))"
        fast = _alt(w["speed.fast"])
        modes = _alt(w["speed.fast_modes"])
        self.fast = re.compile(
            rf"\b(?:{quick}|{draft}|rough\s+draft|{fast}|fast(?=\s+(?:{modes}|please|one))|"
            rf"fast(?=\s*[,.;!]|\s*$)|(?:make|do)\s+it\s+fast|(?:speedy|rapid)(?=\s+{nouns}))\b", re.I)
        self.best = re.compile(rf"\b(?:{_alt(w['speed.best'])})\b", re.I)
        # pure instructions, taken out of the subject; quality words stay (they are prompt words too)
        self.fast_strip = re.compile(
            rf"(?:\b(?:as\s+)?an?\s+)?\b(?:{quick}|rough\s+draft|{draft}|{fast}|fast\s+(?:{modes})|"
            rf"(?:make|do)\s+it\s+fast|(?:speedy|rapid)(?=\s+{nouns}))\b"
            r"(?:\s+(?:look|peek|glance)(?:\s+at\b)?|\s+(?:version|render|mode|pass|one)\b)?|,\s*fast\s*(?=[,.;!]|$)",
            re.I)

        # modality
        self.video = re.compile(rf"\b(?:{_alt(w['modality.video_words'])})\b", re.I)
        self.image = re.compile(rf"\b(?:{_alt(w['modality.image_words'])})\b", re.I)
        self.motion = re.compile(rf"\b(?:{_alt(w['modality.motion_verbs'])})\b", re.I)
        # a participle used as an adjective names a kind of thing, not a motion ("a flying car")
        self.attributive_motion = re.compile(
            r"\b(?:a|an|the|some|this|that|my|our|his|her|their)\s+(?:[\w-]+\s+)?"
            rf"(?P<verb>{_alt(w['modality.attributive_verbs'])})\s+"
            r"(?!(?:a|an|the|of|in|on|at|to|for|from|by|with|over|under|through|across|along|around|into|onto|up|"
            r"down|away|off|past|toward|towards|and|or|while|beside|behind|above|below|between|near|his|her|its|"
            r"their|my|our|your|this|that|these|those|some|home|free|fast|slowly|together|alone|[\w-]+ly|[\w-]+ing)"
            r"\b)[a-z]", re.I)
        self.not_video = re.compile(rf"\b(?:{_alt(w['modality.not_video'])})\b", re.I)
        self.not_video_strip = re.compile(r"[,;]?\s*\b(?:(?:just|only)\s+)?(?:not|no|instead\s+of|rather\s+than)\s+"
                                          r"(?:an?\s+)?(?:videos?|animations?|clips?|gifs?|movies?)\b", re.I)
        self.animate = re.compile(r"(?:,?\s*\band\s+)?\b(?:make\s+it\s+(?:move|animated|an\s+animation)|animate\s+it|"
                                  r"(?:as|into)\s+an?\s+(?:video|animation|clip|gif|movie))\b", re.I)

        # the words around the subject
        self.lead = re.compile(
            r"^(?:(?:hey|hi|hello|ok(?:ay)?|so|now|please|pls|kindly|can|could|would|will)\b[\s,!]*|you\b\s*|"
            r"(?:i|we)\s+(?:want|need|would\s+like|'d\s+like|d\s+like)(?:\s+to\s+(?:see|have|get))?(?:\s+you\s+to)?\s*|"
            r"i'd\s+like(?:\s+to\s+see)?\s*|"
            rf"(?:{_alt(w['request.lead_verbs'])})\b(?:\s+(?:me|us|for\s+me))?\s*|"
            r"(?:me|us)\b\s*)+", re.I)
        self.tail = re.compile(rf"(?:[\s,;.!?]*\b(?:{_alt(w['request.polite_tail'])})\b)+[\s.!?]*$", re.I)
        self.injection = re.compile(r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+|your\s+|the\s+|previous\s+|"
                                    r"prior\s+|above\s+)*(?:instructions?|rules?|prompts?|guidelines?)|"
                                    r"\bsystem\s+prompt\b|\byou\s+are\s+now\b|\bjailbreak\b", re.I)
        self.neg_item = re.compile(rf"^(?:{_alt(w['request.negations'])})\s+(?:any\s+)?(.+)$", re.I)
        self.en_words = frozenset(w["language.english"])
        self.foreign_words = frozenset(w["language.foreign"])
        self.toy_filler = frozenset(w["toy.filler"])

    def unit_seconds(self, unit: str) -> float:
        """Seconds in one `unit` as written ("minutes" -> 60, "s" -> 1)."""
        return next(float(s) for u, s in self.units.items() if re.fullmatch(u, unit, re.I))


@cache
def grammar() -> Grammar:
    """The patterns, built on first use from `words()` (see the module docstring)."""
    return Grammar()


def parse_number(text: str) -> float | None:
    """A number written in digits or words; None when `text` is not one.

    '10,000' -> 10000, '2.5' -> 2.5, '10k' -> 10000, 'twenty five' -> 25, 'a hundred' -> 100.
    """
    g = grammar()
    t = text.strip().lower()
    m = re.fullmatch(r"(\d[\d,'_]*)(\.\d+)?\s?([km]?)", t)
    if m:
        value = float(re.sub(r"[,'_]", "", m.group(1)) + (m.group(2) or ""))
        return value * {"": 1, "k": 1000, "m": 10**6}[m.group(3)]
    total, current, seen = 0, 0, False
    for w in re.split(r"[\s-]+", t):
        if w in ("a", "an"):
            current, seen = max(current, 1), True
        elif w in g.num_words:
            current += g.num_words[w]
            seen = True
        elif w in g.scales:
            current = max(current, 1) * g.scales[w]
            if g.scales[w] >= 1000:
                total, current = total + current, 0
            seen = True
        elif w == "and":
            continue
        else:
            return None
    return float(total + current) if seen else None

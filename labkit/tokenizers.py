"""Tokenizer vocabularies trained locally: the shipped toy model's tokenizer, and the tiny test models'.

    vocab, merges = train_clip_bpe()        # the same call gives the same files, byte for byte

Two kinds, matching what the real pipelines load:

- a CLIP-style byte-level BPE (``vocab.json`` + ``merges.txt``) for the Stable Diffusion families. Its
  base alphabet is all 256 byte symbols, with and without the ``</w>`` end-of-word mark, so it can
  spell any word — also words it was never trained on ("hexagon", "sks") — one symbol at a time.
- a T5-style unigram vocabulary (a list of ``(piece, log-probability)``) for UMT5 text encoders.

Both are built by small deterministic functions from the word list below: the same call gives the
same files, byte for byte.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

# Words a test prompt is likely to use; merges are learned from these so that common words become
# one token and everything else still spells out from bytes.
CORPUS_WORDS: tuple[str, ...] = tuple(
    """
    a an the of in on with and at photo picture painting
    red green blue yellow white black orange purple
    circle square triangle star cat dog car tree house sky
    left right top bottom center small large bright dark
    astronaut riding horse mountain sunset video walking running
    """.split()
)

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _word_symbols(word: str, byte_map: dict[int, str]) -> tuple[str, ...]:
    symbols = [byte_map[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    return tuple(symbols)


def train_clip_bpe(words: tuple[str, ...] = CORPUS_WORDS, max_merges: int = 256) -> tuple[dict[str, int], list[str]]:
    """Learn CLIP-style BPE merges from ``words``; return ``(vocab, merges)``.

    Vocabulary order follows CLIP's: the 256 byte symbols, the same with ``</w>``, one token per merge
    in merge order, then ``<|startoftext|>`` and ``<|endoftext|>``. Ties between equally frequent pairs
    break lexicographically, so training is deterministic.
    """
    byte_map = bytes_to_unicode()
    base = list(byte_map.values())
    vocab_tokens = base + [s + "</w>" for s in base]
    counts = Counter(_word_symbols(w.lower(), byte_map) for w in words)
    merges: list[str] = []
    for _ in range(max_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, freq in counts.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += freq
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(f"{best[0]} {best[1]}")
        vocab_tokens.append(best[0] + best[1])
        merged: Counter[tuple[str, ...]] = Counter()
        for symbols, freq in counts.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += freq
        counts = merged
    vocab_tokens += [CLIP_BOS, CLIP_EOS]
    return {tok: i for i, tok in enumerate(vocab_tokens)}, merges


def write_clip_bpe_files(folder: str | Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` for the tiny CLIP BPE into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = train_clip_bpe()
    vocab_path = folder / "vocab.json"
    merges_path = folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def clip_vocab_size() -> int:
    return len(train_clip_bpe()[0])


T5_SPECIALS: tuple[str, ...] = ("<pad>", "</s>", "<unk>")


def t5_unigram_vocab(words: tuple[str, ...] = CORPUS_WORDS) -> list[tuple[str, float]]:
    """A SentencePiece-style unigram vocabulary: specials, whole words, then single characters.

    Whole words (with the ``▁`` word-start mark) get higher scores than characters, so known words
    are one piece and unknown ones spell out character by character.
    """
    pieces: list[tuple[str, float]] = [(tok, 0.0) for tok in T5_SPECIALS]
    seen = {tok for tok, _ in pieces}
    for w in sorted(set(words)):
        piece = "\u2581" + w
        if piece not in seen:
            pieces.append((piece, -2.0 - 0.01 * len(pieces)))
            seen.add(piece)
    chars = "\u2581abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()/"
    for c in chars:
        if c not in seen:
            pieces.append((c, -10.0 - 0.01 * len(pieces)))
            seen.add(c)
    return pieces


def t5_vocab_size() -> int:
    return len(t5_unigram_vocab())

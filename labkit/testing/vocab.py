"""Moved to `labkit.tokenizers` (production code builds the toy model's tokenizer with it); kept so old
imports work."""

from labkit.tokenizers import (  # noqa: F401
    CLIP_BOS,
    CLIP_EOS,
    CORPUS_WORDS,
    bytes_to_unicode,
    clip_vocab_size,
    t5_unigram_vocab,
    t5_vocab_size,
    train_clip_bpe,
    write_clip_bpe_files,
)

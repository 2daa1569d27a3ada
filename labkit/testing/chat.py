"""A tiny random-weight transformers chat model, built locally, for testing LLM controllers.

``build_tiny_chat_model(folder)`` writes a folder in the layout of a hub chat model — ``config.json``,
``generation_config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``, a
ChatML chat template and a model card (``README.md``, licence apache-2.0) — so that::

    AutoTokenizer.from_pretrained(folder)
    AutoModelForCausalLM.from_pretrained(folder)

load it offline through exactly the path an instruct model from the hub takes. The model is a
`Qwen2ForCausalLM` (hidden size 32, two layers, ~40 k parameters); the tokenizer is a byte-level BPE
trained here on JSON-shaped plan text, so it spells any text (byte fallback) and has single tokens for
JSON punctuation, digits and the words plans use.

The weights are random: what it says is noise, but it is noise that goes through the real tokenizer,
chat template, generation loop and any logits processor a controller adds. The same ``seed`` gives
byte-identical weights and the same tokenizer; the caller's global torch RNG is left as it was.
Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

#: ChatML, as Qwen2 instruct models ship it (without the tool-calling branches).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: Text the BPE merges are learned from: plan-shaped JSON, digits and everyday request words.
_WORDS = """
    image video prompt negative_prompt model width height steps guidance count frames fps rationale
    modality null true false a an the of in on with and at to for one two three four photo picture
    painting watercolor sketch red green blue yellow white black orange purple circle square triangle
    star cat dog car tree house sky left right top bottom center small large bright dark quick draft
    seconds clip animate moving astronaut riding horse mountain sunset walking running blurry toyworld
    system user assistant you turn request into generation plan answer JSON object schema type string
    integer number properties required default use keep words style added
""".split()


def _corpus() -> list[str]:
    samples = [
        {"modality": "image", "prompt": "a red circle on the left", "negative_prompt": "blurry", "model": "toyworld",
         "width": 64, "height": 64, "steps": 20, "guidance": 7.5, "count": 2, "frames": None, "fps": None,
         "rationale": "one image"},
        {"modality": "video", "prompt": "a cat walking", "negative_prompt": "", "model": None, "width": 512,
         "height": 320, "steps": 25, "guidance": 0.0, "count": 1, "frames": 14, "fps": 7,
         "rationale": "a five second clip"},
    ]
    lines = [json.dumps(s) for s in samples] + [json.dumps(s, indent=2) for s in samples]
    lines += [" ".join(_WORDS), " ".join(str(i) for i in range(1025)), '{"": [], "": {}, "": null}']
    return lines * 4


def build_tokenizer(seed: int = 0):
    """The tiny chat tokenizer as a `PreTrainedTokenizerFast` (ChatML template, eos ``<|im_end|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    del seed  # the tokenizer depends only on the corpus; the argument keeps builders uniform
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=640, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None,
        unk_token=None, additional_special_tokens=["<|im_start|>"], chat_template=CHATML_TEMPLATE,
        model_max_length=4096, clean_up_tokenization_spaces=False,
    )


def build_tiny_chat_model(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight chat model (Qwen2 architecture, ChatML) to ``folder``; return it.

    About 0.2 MB on disk; loads in well under a second, and a constrained plan from it takes a
    second or two on a laptop CPU.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=eos, pad_token_id=pad,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=False)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    # a model card as the hub has one: its front matter carries the licence the local controller records
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n\n"
        f"# tiny-chat\n\nA random-weight Qwen2 chat model written by labkit.testing (seed {seed}), for tests.\n",
        encoding="utf-8")
    return folder

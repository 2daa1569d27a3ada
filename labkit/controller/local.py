"""The `local` controller: a transformers chat model on this machine writes the plan.

The model is a local folder (``local:/models/qwen2.5-1.5b-instruct``) or a hub id already in the
Hugging Face cache (``local:Qwen/Qwen2.5-1.5B-Instruct``). Nothing is downloaded unless the caller
asks for it (``allow_download=True`` and ``HF_HUB_OFFLINE`` unset); a model that is not there ends in
`ControllerFailed` naming the ``hf download`` command.

How a plan is made:

1. The request goes through the model's own chat template, with the same system prompt as the
   `remote` controller (`labkit.controller.remote.system_prompt`).
2. Decoding is greedy (``do_sample=False``), so the same request, model and revision give the same
   plan, token for token.
3. Every generated token is constrained by llguidance to the plan's JSON Schema (`llm_schema()`,
   tightened here with bounds: counts, sizes and frame numbers in range, strings of bounded length,
   model ids from the context's catalogue), so even a random-weight model writes a parseable,
   schema-valid object.
4. The object is validated as a `Plan` and repaired where a field is valid JSON but not a valid plan
   (a blank prompt, a size off the model's grid): each repair resets a field to the model's default
   and is noted in the plan's `rationale`.

The plan records ``ControllerInfo(name="local", model=<id>, revision=<rev>)``: for a cached hub model
the id and the snapshot's commit hash; for a plain folder the config's ``_name_or_path`` (or the
folder) and ``sha256:<hex>`` over its weight, config and tokenizer files. Anything that goes wrong —
missing model, a failure inside generation, output that is still invalid after repair — raises
`ControllerFailed`, which the lab turns into a fallback to the `rules` controller.

Why llguidance (and not xgrammar, outlines, lm-format-enforcer or transformers-cfg): the comparison and
its figures are in docs/decisions/0001-constrained-decoding-llguidance.md. One fact the code depends on:
its torch helper ``apply_token_bitmask_inplace`` is wrapped in ``torch.compile`` (27 s on the first call on
CPU), so `_GuidanceProcessor` unpacks the bitmask with plain tensor ops instead.

If llguidance is not installed the controller still runs, unconstrained: the answer is parsed
(`labkit.controller.remote.parse_answer`), validated and repaired the same way, and the rationale
says that decoding was not constrained. A small instruct model usually manages; a random one does not
and ends in `ControllerFailed`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.controller.remote import LLM_FIELDS, llm_schema, parse_answer, system_prompt
from labkit.errors import ControllerFailed, InvalidParameter, LabkitError
from labkit.files import card_licence
from labkit.plan import MAX_COUNT, MAX_PROMPT_CHARS, MAX_STEPS, ControllerInfo, Plan

#: Numeric bounds added to the LLM schema: the same as `Plan.validate()` checks.
NUMBER_BOUNDS: dict[str, tuple[float, float]] = {
    "count": (1, MAX_COUNT), "steps": (1, MAX_STEPS), "width": (8, 4096), "height": (8, 4096),
    "frames": (1, 257), "fps": (1, 60), "guidance": (0, 50),
}
#: Longest string per field, so that every constrained answer ends: 920 characters of strings fit in
#: the default `max_new_tokens` even when a model spells them one (ASCII) byte per token.
STRING_LENGTHS: dict[str, int] = {"prompt": 400, "negative_prompt": 200, "model": 120, "rationale": 200}

#: Field groups reset to the model's default, in this order, when a plan does not validate.
_REPAIRS: tuple[tuple[str, ...], ...] = (("width", "height"), ("frames", "fps"), ("steps",), ("guidance",),
                                         ("count",), ("negative_prompt",), ("model",))
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_META_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
               "special_tokens_map.json")


def constrained_schema(models: list[str] | None = None) -> dict[str, Any]:
    """`llm_schema()` with bounds: numbers in range, strings of bounded length, a non-empty prompt,
    and `model` one of ``models`` (or null) when the caller knows which models may be chosen."""
    schema = copy.deepcopy(llm_schema())
    for name, prop in schema["properties"].items():
        inner = next((a for a in prop.get("anyOf", [prop]) if a.get("type") != "null"), prop)
        if name in NUMBER_BOUNDS:
            inner["minimum"], inner["maximum"] = NUMBER_BOUNDS[name]
        if name in STRING_LENGTHS:
            inner["maxLength"] = STRING_LENGTHS[name]
        if name == "prompt":
            inner["minLength"] = 1
        if name == "model" and models:
            inner["enum"] = list(models)
    return schema


@dataclass
class LocalController:
    """A transformers chat model on this machine as a controller.

    Args:
        model: a local folder with a transformers causal LM and its tokenizer, or a hub id already in
            the Hugging Face cache (``Qwen/Qwen2.5-1.5B-Instruct``).
        device: where the model runs ("cpu", "cuda", "cuda:1", …).
        max_new_tokens: the most tokens one answer may take; an answer cut short is a failure.
        name: the controller's name in the plan record.
        allow_download: fetch a hub model that is not cached (never when ``HF_HUB_OFFLINE`` is set).
        cache_dir: the Hugging Face hub cache to look in (default: huggingface_hub's).
        constrained: constrain decoding to the plan schema when llguidance is installed.
        licence: the LLM's licence id (joins the output's licence chain); default the ``license:``
            of the model card (README.md front matter), else `$LABKIT_LLM_LICENCE`.
    """

    model: str
    device: str = "cpu"
    max_new_tokens: int = 1536
    name: str = "local"
    allow_download: bool = False
    cache_dir: str | None = None
    constrained: bool = True
    licence: str | None = None
    _resolved: tuple[Path, str, str] | None = field(default=None, init=False, repr=False, compare=False)
    _loaded: tuple[Any, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _ll_tokenizer: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> LocalController:
        """From "local:<folder or hub id>"; the model may also come from `$LABKIT_LOCAL_MODEL`."""
        model = spec.removeprefix("local:").strip() or os.environ.get("LABKIT_LOCAL_MODEL", "")
        if not model:
            raise InvalidParameter(f"Controller {spec!r} needs a model.", value=spec,
                                   fix="write local:Qwen/Qwen2.5-1.5B-Instruct or local:/path/to/model "
                                       "(or set LABKIT_LOCAL_MODEL).")
        return cls(model, **kwargs)

    # -- identity ---------------------------------------------------------------------------------

    @property
    def revision(self) -> str | None:
        """The model's revision (commit hash or ``sha256:…``); None while the model cannot be found."""
        try:
            return self.resolve()[2]
        except ControllerFailed:
            return None

    def info(self) -> ControllerInfo:
        """The record this controller writes into each plan; `ControllerFailed` if the model is missing."""
        folder, model_id, revision = self.resolve()
        licence = self.licence or card_licence(folder) or os.environ.get("LABKIT_LLM_LICENCE") or None
        return ControllerInfo(name=self.name, model=model_id, revision=revision, licence=licence)

    def resolve(self) -> tuple[Path, str, str]:
        """``(folder, model id, revision)``, found once and remembered; never downloads unless allowed."""
        if self._resolved is None:
            self._resolved = _resolve(self.model, self.cache_dir, self.allow_download)
        return self._resolved

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, request: str, context: Any = None) -> Plan:
        """Ask the model for a plan; `ControllerFailed` when none valid comes out."""
        try:
            return self._plan(request, context)
        except ControllerFailed:
            raise
        except Exception as e:  # a failure inside torch/transformers must not reach the user raw
            raise ControllerFailed(f"The local model {self.model!r} failed while planning ({type(e).__name__}: {e}).",
                                   value=self.model, fix="try another model or --controller rules.") from e

    def _plan(self, request: str, context: Any) -> Plan:
        if not isinstance(request, str) or not request.strip():
            raise ControllerFailed("The request is empty.", value=request, fix="describe what to render.")
        info = self.info()
        summary = context.summary() if hasattr(context, "summary") else ""
        models = _model_choices(context)
        messages = [{"role": "system", "content": system_prompt(summary)},
                    {"role": "user", "content": request[:MAX_PROMPT_CHARS]}]
        text, constrained = self.complete(messages, constrained_schema(models))
        notes = [] if constrained or not self.constrained else [
            "decoding was not constrained (llguidance is not installed); the answer was validated and repaired"]
        try:
            data = parse_answer(text)
        except ValueError as e:
            raise ControllerFailed(f"{info.model} gave no JSON plan: {e}.", value=text[:200],
                                   fix="try a larger instruct model, or --controller rules.") from e
        plan = _repair(data, request, context, notes)
        if notes:
            plan = plan.replace(rationale=" ".join([plan.rationale.strip(), *(f"[local: {n}]" for n in notes)]).strip())
        return plan.replace(controller=info)

    def complete(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None) -> tuple[str, bool]:
        """The model's greedy answer to ``messages`` and whether it was constrained to ``schema``."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        model, tokenizer = self._load()
        enc = _apply_chat_template(tokenizer, messages).to(model.device)
        eos = _eos_ids(model, tokenizer)
        processors = LogitsProcessorList()
        constrained = False
        if schema is not None and self.constrained:
            processor = self._guidance(tokenizer, model, schema)
            if processor is not None:
                processors.append(processor)
                constrained = True
        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens,
                                  eos_token_id=eos, pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id
                                  is not None else eos[0])
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=config, logits_processor=processors)
        new = out[0, enc["input_ids"].shape[1]:]
        if constrained and len(new) >= self.max_new_tokens and int(new[-1]) not in eos:
            raise ControllerFailed(f"{self.model} did not finish its answer in {self.max_new_tokens} tokens.",
                                   value=self.max_new_tokens, fix="raise max_new_tokens, or --controller rules.")
        return tokenizer.decode(new, skip_special_tokens=True), constrained

    # -- loading ----------------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            folder = self.resolve()[0]
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                dtype = torch.float32 if self.device == "cpu" else "auto"
                model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
                model = model.to(self.device).eval()
            except Exception as e:
                raise ControllerFailed(f"Cannot load {self.model!r} as a transformers chat model "
                                       f"({type(e).__name__}: {e}).", value=str(folder),
                                       fix="point local:<model> at a causal LM with its tokenizer "
                                           "(for example Qwen/Qwen2.5-1.5B-Instruct).") from e
            if not getattr(tokenizer, "chat_template", None):
                raise ControllerFailed(f"{self.model!r} has no chat template.", value=str(folder),
                                       fix="use an instruct/chat model, whose tokenizer carries a chat template.")
            self._loaded = (model, tokenizer)
        return self._loaded

    def _guidance(self, tokenizer: Any, model: Any, schema: dict[str, Any]) -> Any:
        """A fresh logits processor for one answer, or None when llguidance is not installed."""
        try:
            import llguidance
            import llguidance.hf
        except ImportError:
            return None
        if self._ll_tokenizer is None:
            n_vocab = max(int(model.config.get_text_config().vocab_size), len(tokenizer))
            self._ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        matcher = llguidance.LLMatcher(self._ll_tokenizer, grammar)
        if matcher.is_error():
            raise ControllerFailed(f"The plan schema did not compile for llguidance: {matcher.get_error()}",
                                   value=None, fix="report this as a labkit bug; use --controller rules meanwhile.")
        return _GuidanceProcessor(matcher, self._ll_tokenizer.vocab_size)


class _GuidanceProcessor:
    """A transformers logits processor that masks every token llguidance's matcher would reject.

    One per `generate()` call, batch size 1. The first call sees only the prompt; each later call
    first feeds the matcher the token chosen last step.
    """

    def __init__(self, matcher: Any, vocab_size: int):
        import torch

        self.matcher = matcher
        self.mask = torch.full((1, (vocab_size + 31) // 32), -1, dtype=torch.int32)
        self.started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch
        from llguidance.torch import fill_next_token_bitmask

        if self.started and not self.matcher.consume_token(int(input_ids[0, -1])):
            raise ControllerFailed(f"The constrained decoder rejected a token: {self.matcher.get_error()}",
                                   value=int(input_ids[0, -1]), fix="use --controller rules.")
        self.started = True
        fill_next_token_bitmask(self.matcher, self.mask, 0)
        if self.matcher.is_error():
            raise ControllerFailed(f"The constrained decoder stopped: {self.matcher.get_error()}", value=None,
                                   fix="use --controller rules.")
        # Unpack 32 allowed-bits per int32 with plain tensor ops (llguidance's own helper is
        # torch.compile'd, which costs tens of seconds on CPU the first time).
        shifts = torch.arange(32, dtype=torch.int32)
        allowed = ((self.mask.unsqueeze(-1) >> shifts) & 1).reshape(1, -1).bool()
        vocab = scores.shape[-1]
        if allowed.shape[1] < vocab:
            allowed = torch.nn.functional.pad(allowed, (0, vocab - allowed.shape[1]))
        return scores.masked_fill(~allowed[:, :vocab].to(scores.device), float("-inf"))


# -- finding the model ------------------------------------------------------------------------------


def _offline() -> bool:
    from labkit.deps import offline  # one reading of HF_HUB_OFFLINE for the whole lab

    return offline()


def _resolve(model: str, cache_dir: str | None, allow_download: bool) -> tuple[Path, str, str]:
    path = Path(model).expanduser()
    if path.is_dir():
        return _resolve_folder(path)
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ControllerFailed(f"Model folder {model!r} does not exist or is not a folder.", value=model,
                               fix="point local:<model> at a folder with config.json, the weights and the tokenizer.")
    return _resolve_hub(model, cache_dir, allow_download and not _offline())


def _resolve_folder(folder: Path) -> tuple[Path, str, str]:
    config = folder / "config.json"
    if not config.is_file():
        raise ControllerFailed(f"{str(folder)!r} has no config.json: it is not a transformers model folder.",
                               value=str(folder), fix="point local:<model> at a saved causal LM (save_pretrained).")
    # A snapshot inside the hub cache: .../models--ORG--NAME/snapshots/<commit>/
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        repo_id = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
        return folder, repo_id, folder.name
    try:
        name = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path") or ""
    except (OSError, ValueError):
        name = ""
    model_id = name if name and not Path(name).is_absolute() else str(folder.resolve())
    return folder, model_id, _folder_hash(folder)


def _folder_hash(folder: Path) -> str:
    """``sha256:<hex>`` over the weight, config and tokenizer files (names and contents)."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and (p.name.endswith(_WEIGHT_SUFFIXES) or p.name in _META_FILES))
    if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in files):
        raise ControllerFailed(f"{str(folder)!r} has no weight files.", value=str(folder),
                               fix="save the model with save_pretrained (model.safetensors).")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0")
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _resolve_hub(repo_id: str, cache_dir: str | None, download: bool) -> tuple[Path, str, str]:
    from huggingface_hub import snapshot_download

    fix = (f"run `hf download {repo_id}` on a machine with internet access (it fills the Hugging Face cache), "
           "or point local:<model> at a folder with the model.")
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=not download))
    except Exception as e:
        why = "is not in the Hugging Face cache" if not download else f"could not be fetched ({type(e).__name__})"
        raise ControllerFailed(f"Model {repo_id!r} {why}"
                               + (" and HF_HUB_OFFLINE is set." if _offline() else "."), value=repo_id,
                               fix=fix) from e
    if not (folder / "config.json").is_file():
        raise ControllerFailed(f"The cached snapshot of {repo_id!r} has no config.json.", value=str(folder), fix=fix)
    return folder, repo_id, folder.name


# -- prompting and repair ---------------------------------------------------------------------------


def _apply_chat_template(tokenizer: Any, messages: list[dict[str, str]]) -> Any:
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                             return_dict=True)
    except Exception:
        # Some templates (Gemma's, Mistral's older ones) refuse a system turn: fold it into the user's.
        merged = [{"role": "user", "content": messages[0]["content"] + "\n\nRequest: " + messages[1]["content"]}]
        return tokenizer.apply_chat_template(merged, add_generation_prompt=True, return_tensors="pt",
                                             return_dict=True)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ControllerFailed("The model's tokenizer has no end-of-sequence token.", value=None,
                               fix="use a chat model whose tokenizer sets eos_token.")
    return ids


def _model_choices(context: Any) -> list[str] | None:
    """The catalogue ids the context allows, for the schema's `model` enum (None: any string)."""
    catalog = getattr(context, "catalog", None)
    if catalog is None:
        return None
    allows = getattr(context, "allows", None)
    try:
        ids = sorted({e.id for e in catalog if allows is None or allows(getattr(e, "licence", ""))})
    except Exception:
        return None
    return ids or None


def _catalog_entry(context: Any, model: str | None) -> Any:
    find = getattr(getattr(context, "catalog", None), "find", None)
    if model is None or find is None:
        return None
    try:
        return find(model)
    except Exception:
        return None


def _repair(data: dict[str, Any], request: str, context: Any, notes: list[str]) -> Plan:
    """A valid `Plan` from the model's object: unknown keys dropped, a blank prompt replaced by the
    request, then field groups that fail validation reset to the model default, each noted."""
    fields = {k: v for k, v in data.items() if k in LLM_FIELDS and v is not None}
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        fields["prompt"] = request.strip()[:MAX_PROMPT_CHARS]
        notes.append("the model's prompt was blank, so the request is the prompt")
    if fields.get("modality") not in ("image", "video"):
        fields["modality"] = "image"
        notes.append("modality reset to image")
    if not isinstance(fields.get("rationale", ""), str):
        fields.pop("rationale")
    last: LabkitError | None = None
    for group in ((), *_REPAIRS):
        reset = [k for k in group if k in fields]
        if group and not reset:
            continue
        for k in reset:
            fields.pop(k)
        if reset:
            notes.append(f"reset {', '.join(reset)} to the model's default")
        try:
            plan = Plan.from_dict(fields)
            return plan.validate(_catalog_entry(context, plan.model))
        except (LabkitError, TypeError, ValueError) as e:
            last = e if isinstance(e, LabkitError) else InvalidParameter(str(e))
    raise ControllerFailed(f"The local model's plan is invalid even after repair: {last}", value=fields,
                           fix="try a larger instruct model, or --controller rules.")

"""Phase 2 of the toy-base recipe (`labkit.training.toy_base`): the text encoder's pre-training, and the
tokenizing and data description the recipe's phases share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labkit.toyworld.model import LICENCE
from labkit.training.task import TrainTask, Validation

DATA_DESCRIPTION = ("labkit.toyworld procedural scenes (64x64, 1-4 flat shapes on black), train split only: "
                    "about 15% of (shape, colour, size, position) combinations, and of count and relation "
                    "combinations, are held out and never shown")


class ToyTextTask(TrainTask):
    """Phase 2: the text encoder learns to say what each caption asks for, before the UNet sees it.

    From the mean of its last hidden states, linear heads predict three order-free targets, so every paraphrase
    and every object order maps to the same answer:

    - for each of the five positions, the colour, shape and size of the object there (or "nothing"), when the
      caption names positions ("a small red circle on the left and …"), which binds each attribute to its place;
    - how many objects of each shape, and of each colour, the caption asks for (0–4): "three blue circles" and
      every positional caption alike, so one scale of counts covers both (shape and colour apart: a count
      combination never seen still has each of its factors seen);
    - for each ordered pair of different shapes, whether the first is left of, right of, above or below the
      second: stated by a relation caption ("a red square left of a green circle"; the other axis unknown) or
      read from a positional caption's anchors;
    - from the hidden state of the last token of each object's phrase in a positional caption (not pooled),
      that object's colour, shape, size and position. The pooled heads alone did not bind: on held-out
      two-object captions they read every slot's colour right for 20% of captions, three objects 1%
      (`heldout_binding` below measures the per-phrase head on both). The UNet reads token states through
      cross-attention, so the token that ends a phrase is where it can find one object whole.

    A target a caption does not determine is left out of the loss. Starting the diffusion phase from an encoder
    that already separates "red circle on the left" from "red circle on the right", "two" from "three" and
    "left of" from "right of" is what makes those learnable within the CPU budget; the heads are thrown away
    afterwards.
    """

    name = "toy-text"

    def __init__(self, text_encoder, tokenizer, data_seed: int = 0, data_mix: dict[str, float] | None = None):
        import torch

        from labkit.toyworld.geneval import NUMBERS, RELATIONS
        from labkit.toyworld.scenes import BASE_SHAPES, COLOURS, POSITIONS, SIZES

        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.data_seed = data_seed
        self.data_mix = data_mix
        self.vocab = {"colour": list(COLOURS), "shape": list(BASE_SHAPES), "size": list(SIZES)}
        self.positions = list(POSITIONS)
        self.max_count = max(NUMBERS)
        self.pairs = [(a, b) for a in BASE_SHAPES for b in BASE_SHAPES if a != b]
        self.relations = list(RELATIONS)
        hidden = text_encoder.config.hidden_size
        # +1 class per position: nothing there
        heads = {k: torch.nn.Linear(hidden, len(self.positions) * (len(v) + 1)) for k, v in self.vocab.items()}
        for k, v in self.vocab.items():
            if k != "size":
                heads[f"n_{k}"] = torch.nn.Linear(hidden, len(v) * (self.max_count + 1))
        heads["relation"] = torch.nn.Linear(hidden, len(self.pairs) * len(self.relations))
        self.object_parts = {**self.vocab, "position": self.positions}
        heads["object"] = torch.nn.Linear(hidden, sum(len(v) for v in self.object_parts.values()))
        self.heads = torch.nn.ModuleDict(heads)

    def models(self):
        return {"text_encoder": self.text_encoder, "heads": self.heads}

    def _targets(self, items: Sequence[tuple[Any, str]]) -> dict[str, Any]:
        """Targets of (scene, caption) items: class indices (-100: not said) and relation bits (-1: not said)."""
        import torch

        from labkit.toyworld.captions import phrases
        from labkit.toyworld.geneval import RELATION_MARGIN, RELATIONS, read

        opposite = {r: q for r, (ax, sign) in RELATIONS.items() for q, (ax2, sign2) in RELATIONS.items()
                    if ax2 == ax and sign2 == -sign}
        counted = [k for k in self.vocab if k != "size"]
        out: dict[str, list[Any]] = {k: [] for k in (*self.vocab, *(f"n_{k}" for k in counted), "relation", "object")}
        length = self.tokenizer.model_max_length
        for scene, text in items:
            req = read(text)
            objs = scene.objects if req.kind == "objects" else ()
            token_targets = [[-100] * len(self.object_parts) for _ in range(length)]
            for end, obj in phrases(text) if objs else ():
                last = len(self.tokenizer(text[:end]).input_ids) - 2   # after the start token, before the end one
                if last < length - 1:
                    token_targets[last] = [names.index(getattr(obj, attr))
                                           for attr, names in self.object_parts.items()]
            out["object"].append(token_targets)
            for attr, names in self.vocab.items():
                row = [0] * len(self.positions) if objs else [-100] * len(self.positions)
                for o in objs:
                    row[self.positions.index(o.position)] = names.index(getattr(o, attr)) + 1
                out[attr].append(row)
            asked = list(req.things) * (req.count or 1) if req.kind != "objects" else list(objs)
            for k in counted:
                said = [getattr(o, k) for o in asked]
                out[f"n_{k}"].append([min(said.count(v), self.max_count) for v in self.vocab[k]])
            rel = [[-1.0] * len(self.relations) for _ in self.pairs]
            if req.kind == "relation":
                a, b = (t.shape for t in req.things)
                for (x, y), r in (((a, b), req.relation), ((b, a), opposite[req.relation])):
                    rel[self.pairs.index((x, y))][self.relations.index(r)] = 1.0
                    rel[self.pairs.index((x, y))][self.relations.index(opposite[r])] = 0.0
            else:
                at = {o.shape: o.xy for o in objs if sum(p.shape == o.shape for p in objs) == 1}
                for i, (x, y) in enumerate(self.pairs):
                    if x in at and y in at:
                        rel[i] = [float(s * (at[x][ax] - at[y][ax]) >= RELATION_MARGIN)
                                  for ax, s in (RELATIONS[r] for r in self.relations)]
            out["relation"].append(rel)
        return {k: torch.tensor(v) for k, v in out.items()}

    def batches(self, batch_size, start):
        from labkit.toyworld.data import make_item

        i = start
        while True:
            # a different stream from the image phases' (seed + 1): captions are cheap, images are not
            items = [make_item(self.data_seed + 1, i * batch_size + j, "train", mix=self.data_mix)
                     for j in range(batch_size)]
            yield tokenize(self.tokenizer, [t for _, t in items]), self._targets(items)
            i += 1

    def _logits(self, ids):
        states = self.text_encoder(ids)[0]
        pooled = states.mean(dim=1)
        n = ids.shape[0]
        out = {k: self.heads[k](pooled).view(n, len(self.positions), -1) for k in self.vocab}
        for k in self.heads:
            if k.startswith("n_"):
                out[k] = self.heads[k](pooled).view(n, len(self.vocab[k[2:]]), -1)
        out["relation"] = self.heads["relation"](pooled).view(n, len(self.pairs), len(self.relations))
        sizes = [len(v) for v in self.object_parts.values()]
        out["object"] = self.heads["object"](states).split(sizes, dim=-1)   # each [n, tokens, classes]
        return out

    def loss(self, batch, ctx):
        import torch.nn.functional as F

        ids, targets = batch
        logits = self._logits(ids.to(ctx.device))
        loss = 0.0
        for k in (*self.vocab, *(k for k in self.heads if k.startswith("n_"))):
            t = targets[k].to(ctx.device).flatten()
            if (t != -100).any():
                loss = loss + F.cross_entropy(logits[k].flatten(0, 1), t, ignore_index=-100)
        rel, said = targets["relation"].to(ctx.device), targets["relation"].to(ctx.device) >= 0
        if said.any():
            loss = loss + F.binary_cross_entropy_with_logits(logits["relation"][said], rel[said]) * len(self.relations)
        marked = targets["object"].to(ctx.device)
        if (marked != -100).any():
            for i, part in enumerate(logits["object"]):
                loss = loss + F.cross_entropy(part.flatten(0, 1), marked[..., i].flatten(), ignore_index=-100)
        return loss

    def validate(self, prompts, seeds, step):
        """Accuracy on held-out captions (combinations the encoder never saw): every slot of positional captions
        ("heldout_colour" …, one and two objects), the counts of count captions, the relation of relation ones."""
        import torch

        from labkit.toyworld.captions import parse
        from labkit.toyworld.captions import prompts as heldout_prompts
        from labkit.toyworld.geneval import category_prompts, read

        self.text_encoder.eval()
        device = self.text_encoder.device  # where the engine put it

        def read_out(captions):  # the heads' logits of `captions`, on the CPU beside the targets
            out = self._logits(tokenize(self.tokenizer, captions).to(device))
            return {k: tuple(t.cpu() for t in v) if isinstance(v, tuple) else v.cpu() for k, v in out.items()}

        texts = [t for k in (1, 2) for t in heldout_prompts("heldout", n=100, seed=5, n_objects=k)]
        targets = self._targets([(parse(t), t) for t in texts])
        logits = read_out(texts)
        right = [(logits[k].argmax(-1) == targets[k]).all(dim=1) for k in self.vocab]
        metrics = {f"heldout_{k}": float(r.float().mean()) for k, r in zip(self.vocab, right, strict=True)}
        metrics["heldout_all"] = float((right[0] & right[1] & right[2]).float().mean())
        counted = [(s, t) for t, s in category_prompts("counting", 100, seed=5)]
        lg, tg = read_out([t for _, t in counted]), self._targets(counted)
        metrics["heldout_count"] = float(((lg["n_shape"].argmax(-1) == tg["n_shape"]).all(dim=1)
                                          & (lg["n_colour"].argmax(-1) == tg["n_colour"]).all(dim=1)).float().mean())
        related = [(s, t) for t, s in category_prompts("position", 200, seed=5) if read(t).kind == "relation"]
        lg, tg = read_out([t for _, t in related])["relation"], self._targets(related)
        said = tg["relation"] >= 0
        ok = ((lg > 0).float() == tg["relation"]) | ~said
        metrics["heldout_relation"] = float(ok.flatten(1).all(dim=1).float().mean())
        # per phrase: two- and three-object captions where every phrase's last token names its object whole
        attributed = [(s, t) for t, s in category_prompts("colour_attribution", 200, seed=5)]
        lg = read_out([t for _, t in attributed])["object"]
        tg = self._targets(attributed)["object"]
        ok = torch.stack([(part.argmax(-1) == tg[..., i]) | (tg[..., i] == -100) for i, part in enumerate(lg)])
        metrics["heldout_binding"] = float(ok.all(dim=0).all(dim=1).float().mean())
        return Validation([], metrics=metrics)

    def export(self, folder):
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.text_encoder.state_dict().items()}
        save_file(state, str(folder / "text_encoder.safetensors"))

    def data_card(self):
        return {"description": DATA_DESCRIPTION + " (captions only)", "licence": LICENCE,
                "source": f"labkit.toyworld seed={self.data_seed + 1}"}


def tokenize(tokenizer, texts: Sequence[str]):
    """Token ids of `texts`, padded to the tokenizer's full length (what the toy text encoder is trained on)."""
    return tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


__all__ = ["DATA_DESCRIPTION", "ToyTextTask", "tokenize"]

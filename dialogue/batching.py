"""Training examples: dialogues -> windows of exchanges with cached turn embeddings.

Pipeline (`build_examples`):

1. `dialogue.steps.exchanges` rewrites each dialogue's turns into alternating user /
   assistant turns (``datasets.map``, batched);
2. the decoder BPE tokenises every turn (`tokenize_dialogues`, counted length limits,
   cached as Arrow files in ``cache_dir``);
3. every distinct turn text is embedded once by the frozen encoder (`EmbeddingCache`,
   stored as safetensors keyed by the encoder fingerprint and the texts);
4. quality labels and value targets are computed per whole dialogue (`dialogue.labels`),
   then the dialogue is cut into windows of ``max_steps`` exchanges; each window starts
   from the initial latent state (``is_first``).

When the encoder is fine-tuned (``model.encoder.trainable``), the cached embeddings are
only used for the proxy labels; `make_batch` adds the windows' turns as word pieces and
the model re-embeds them in its forward pass (`embed_turns`), with gradients.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from dialogue.bpe import PAD_ID
from dialogue.config import DialogueConfig
from dialogue.data.tokenize import tokenize_dialogues
from dialogue.encoder import TurnEncoder
from dialogue.labels import discounted_future, quality_labels, rewards
from dialogue.steps import exchanges
from worldmodel.checkpoint import atomic_write_bytes


@dataclass
class Example:
    """One window of T exchanges; embedding rows index `StepData.embeddings` (-1: no response)."""

    user_rows: list[int]
    assistant_rows: list[int]
    user_ids: list[list[int]]
    assistant_ids: list[list[int]]
    quality: Tensor  # [T, 4]
    quality_mask: Tensor  # [T, 4]
    value_target: Tensor  # [T]


@dataclass
class StepData:
    """All windows of a dialogue set plus the embedding table ``[U, E]`` they index."""

    examples: list[Example]
    embeddings: Tensor
    texts: list[str]

    def __len__(self) -> int:
        return len(self.examples)


class EmbeddingCache:
    """Embeddings of distinct texts by a frozen encoder, cached in ``directory`` (optional)."""

    def __init__(self, encoder: TurnEncoder, directory: str | Path | None = None):
        self.encoder, self.directory = encoder, Path(directory) if directory else None

    def key(self, texts: list[str]) -> str:
        h = hashlib.sha1(json.dumps([self.encoder.fingerprint(), self.encoder.max_length]).encode())
        for text in texts:
            h.update(text.encode("utf-8", "replace") + b"\0")
        return h.hexdigest()[:16]

    def embed(self, texts: list[str], show_progress: bool = True) -> Tensor:
        """``[len(texts), E]`` float32, computed once per (encoder, texts) and then loaded."""
        path = (
            self.directory / f"embeddings-{self.key(texts)}.safetensors" if self.directory else None
        )
        if path is not None and path.is_file():
            return load_file(str(path))["embeddings"]
        table = self.encoder.encode(texts, show_progress=show_progress)
        if path is not None:
            atomic_write_bytes(path, safetensors_bytes({"embeddings": table.contiguous()}))
        return table


def _alternating_turns(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    turns_out = []
    for turns in batch["turns"]:
        flat = []
        for user, reply in exchanges(turns):
            flat.append({"role": "user", "text": user})
            if reply is not None:
                flat.append({"role": "assistant", "text": reply})
        turns_out.append(flat)
    return {"turns": turns_out}


def build_examples(
    dialogues: datasets.Dataset,
    encoder: TurnEncoder,
    bpe: Any,
    config: DialogueConfig,
    cache_dir: str | Path | None = None,
    max_turns: int = 64,
    show_progress: bool = True,
) -> StepData:
    """Dialogues (schema of `dialogue.data`) -> `StepData` of windows (see the module docstring)."""
    steps = dialogues.map(_alternating_turns, batched=True, desc="exchanges")
    steps = tokenize_dialogues(
        steps, bpe, max_turn_tokens=config.decoder.max_tokens, max_turns=max_turns, cache_dir=cache_dir
    )
    texts = sorted({t["text"] for turns in steps["turns"] for t in turns[:max_turns]})
    row = {text: i for i, text in enumerate(texts)}
    table = EmbeddingCache(encoder, cache_dir).embed(texts, show_progress=show_progress)
    examples = []
    for record in steps:
        turns, ids = record["turns"][: len(record["input_ids"])], record["input_ids"]
        user_rows, asst_rows, user_ids, asst_ids = [], [], [], []
        for turn, tok in zip(turns, ids, strict=True):
            if turn["role"] == "user":
                user_rows.append(row[turn["text"]])
                user_ids.append(tok)
                asst_rows.append(-1)
                asst_ids.append([])
            else:
                asst_rows[-1], asst_ids[-1] = row[turn["text"]], tok
        has = torch.tensor([r >= 0 for r in asst_rows])
        user_emb = table[user_rows]
        asst_emb = table[torch.tensor(asst_rows).clamp_min(0)] * has[:, None]
        user_texts = [texts[r] for r in user_rows]
        labels, mask = quality_labels(user_texts, user_emb, asst_emb, has, record.get("labels"))
        reward = rewards(labels, mask, config.reward_weights)
        value = discounted_future(reward[None], has[None].float(), config.gamma)[0]
        for s in range(0, len(user_rows), config.max_steps):
            w = slice(s, s + config.max_steps)
            examples.append(
                Example(
                    user_rows[w],
                    asst_rows[w],
                    user_ids[w],
                    asst_ids[w],
                    labels[w],
                    mask[w],
                    value[w],
                )
            )
    return StepData(examples, table, texts)


def _pad_ids(rows: list[list[list[int]]], steps: int) -> Tensor:
    length = max((len(x) for r in rows for x in r), default=1) or 1
    out = torch.full((len(rows), steps, length), PAD_ID, dtype=torch.long)
    for b, r in enumerate(rows):
        for t, ids in enumerate(r):
            out[b, t, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def collate(examples: list[Example], embeddings: Tensor) -> dict[str, Tensor]:
    """Pad a list of windows into the batch `DialogueWorldModel.forward` takes (shapes there)."""
    steps = max(len(e.user_rows) for e in examples)
    size, dim = len(examples), embeddings.shape[1]
    batch = {
        "user_emb": torch.zeros(size, steps, dim),
        "assistant_emb": torch.zeros(size, steps, dim),
        "valid": torch.zeros(size, steps, dtype=torch.bool),
        "has_response": torch.zeros(size, steps, dtype=torch.bool),
        "is_first": torch.zeros(size, steps, dtype=torch.bool),
        "quality": torch.zeros(size, steps, 4),
        "quality_mask": torch.zeros(size, steps, 4, dtype=torch.bool),
        "value_target": torch.zeros(size, steps),
    }
    batch["is_first"][:, 0] = True
    for b, e in enumerate(examples):
        n = len(e.user_rows)
        rows = torch.tensor(e.assistant_rows)
        batch["user_emb"][b, :n] = embeddings[e.user_rows]
        batch["assistant_emb"][b, :n] = embeddings[rows.clamp_min(0)] * (rows >= 0)[:, None]
        batch["valid"][b, :n] = True
        batch["has_response"][b, :n] = rows >= 0
        batch["quality"][b, :n], batch["quality_mask"][b, :n] = e.quality, e.quality_mask
        batch["value_target"][b, :n] = e.value_target
    batch["user_ids"] = _pad_ids([e.user_ids for e in examples], steps)
    batch["assistant_ids"] = _pad_ids([e.assistant_ids for e in examples], steps)
    return batch


def make_batch(
    examples: list[Example], data: StepData, encoder: TurnEncoder | None = None
) -> dict[str, Tensor]:
    """`collate`, plus, for a trainable ``encoder``, the windows' distinct turns as word pieces.

    Added keys: ``turn_input_ids`` / ``turn_attention_mask`` ``[R, L]`` (R distinct turns) and
    ``user_rows`` / ``assistant_rows`` ``[B, T]`` indexing them (-1: no turn).
    """
    batch = collate(examples, data.embeddings)
    if encoder is None or not encoder.trainable:
        return batch
    rows = sorted({r for e in examples for r in (*e.user_rows, *e.assistant_rows) if r >= 0})
    local = {r: i for i, r in enumerate(rows)}
    for key in ("user_rows", "assistant_rows"):
        index = torch.full(batch["valid"].shape, -1, dtype=torch.long)
        for b, e in enumerate(examples):
            index[b, : len(e.user_rows)] = torch.tensor([local.get(r, -1) for r in getattr(e, key)])
        batch[key] = index
    tokens = encoder.tokenize([data.texts[r] for r in rows])
    batch["turn_input_ids"] = tokens["input_ids"].cpu()
    batch["turn_attention_mask"] = tokens["attention_mask"].cpu()
    return batch


def embed_turns(encoder: TurnEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """``user_emb`` / ``assistant_emb`` ``[B, T, E]`` re-embedded from a `make_batch` batch's word pieces."""
    table = encoder.encode_tokens(batch["turn_input_ids"], batch["turn_attention_mask"])[0]
    out = {}
    for name in ("user", "assistant"):
        rows = batch[f"{name}_rows"]
        out[f"{name}_emb"] = table[rows.clamp_min(0)] * (rows >= 0).unsqueeze(-1).to(table.dtype)
    return out

"""Tokenise normalised dialogues with `datasets.map(batched=True)` and length limits.

Per-turn limit: a turn longer than ``max_turn_tokens`` is truncated. Per-dialogue limit:
turns after the first ``max_turns`` are dropped. Both are counted (columns
``n_truncated_turns`` / ``n_dropped_turns``) and reported as one warning per call, so a
cached ``map`` (which does not re-run the function) still reports correct counts.

With ``cache_dir``, the result is stored there as an Arrow file named by a hash of the
turn texts, the tokenizer and the limits, and later calls with the same inputs load it
instead of tokenising again.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import datasets


class LengthLimitWarning(UserWarning):
    """Turns were truncated or dropped by the length limits."""


def tokenize_dialogues(
    dialogues: datasets.Dataset,
    tokenizer: Any,
    max_turn_tokens: int = 128,
    max_turns: int = 32,
    column: str = "input_ids",
    batch_size: int = 256,
    cache_dir: str | Path | None = None,
) -> datasets.Dataset:
    """Add ``column``: per dialogue a list (one per kept turn) of token-id lists.

    Args:
        dialogues: dataset with a ``turns`` column (`load_dialogues` output).
        tokenizer: a Hugging Face tokenizer (``PreTrainedTokenizerBase``) or a
            ``tokenizers.Tokenizer``; special tokens are added by the tokenizer itself.
        max_turn_tokens: per-turn limit, in tokens, special tokens included.
        max_turns: per-dialogue limit, in turns.
        cache_dir: where to keep the tokenised dataset between runs (None: not cached).
    Returns:
        the dataset with ``column``, ``n_truncated_turns`` and ``n_dropped_turns``.
    """
    if max_turn_tokens < 2 or max_turns < 1:
        raise ValueError(
            f"length limits must be positive (max_turn_tokens={max_turn_tokens}, max_turns={max_turns})"
        )

    def encode(texts: list[str]) -> list[list[int]]:
        if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
            return [enc.ids for enc in tokenizer.encode_batch(texts)]
        return tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]

    def tokenize_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        flat, sizes, dropped = [], [], []
        for turns in batch["turns"]:
            kept = turns[:max_turns]
            dropped.append(len(turns) - len(kept))
            sizes.append(len(kept))
            flat += [t["text"] for t in kept]
        ids = encode(flat) if flat else []
        truncated_flags = [len(x) > max_turn_tokens for x in ids]
        ids = [x if len(x) <= max_turn_tokens else x[: max_turn_tokens - 1] + x[-1:] for x in ids]
        out_ids, out_trunc, start = [], [], 0
        for size in sizes:
            out_ids.append(ids[start : start + size])
            out_trunc.append(sum(truncated_flags[start : start + size]))
            start += size
        return {column: out_ids, "n_truncated_turns": out_trunc, "n_dropped_turns": dropped}

    cache_file = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        key = _cache_key(dialogues, tokenizer, [max_turn_tokens, max_turns, column])
        cache_file = str(Path(cache_dir) / f"tokens-{key}.arrow")
    out = dialogues.map(
        tokenize_batch,
        batched=True,
        batch_size=batch_size,
        desc="tokenising turns",
        cache_file_name=cache_file,
        load_from_cache_file=cache_file is not None,
    )
    truncated = sum(out["n_truncated_turns"]) if len(out) else 0
    dropped = sum(out["n_dropped_turns"]) if len(out) else 0
    if truncated or dropped:
        warnings.warn(
            f"length limits: {truncated} turns truncated to {max_turn_tokens} tokens, "
            f"{dropped} turns dropped beyond {max_turns} turns per dialogue",
            LengthLimitWarning,
            stacklevel=2,
        )
    return out


def _cache_key(dialogues: datasets.Dataset, tokenizer: Any, settings: list[Any]) -> str:
    """sha1 over every turn text, the tokenizer's full definition and the settings."""
    digest = hashlib.sha1(json.dumps(settings).encode())
    if hasattr(tokenizer, "to_str"):  # tokenizers.Tokenizer: its whole JSON definition
        digest.update(tokenizer.to_str().encode())
    else:  # a transformers tokenizer: its vocabulary and class
        digest.update(type(tokenizer).__name__.encode())
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    for turns in dialogues["turns"]:
        for turn in turns:
            digest.update(turn["text"].encode() + b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()[:16]

"""Evaluation helpers for a compression: coverage per turn, selection entropy, stability.

All take plain per-word lists/tensors of one dialogue (``N`` words, ``T`` messages).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def coverage_per_turn(kept: Sequence[bool], message_of_word: Sequence[int], num_messages: int) -> list[float]:
    """Fraction of each message's words that were kept ([T]; 1.0 for a message without words)."""
    total = [0] * num_messages
    hits = [0] * num_messages
    for keep, m in zip(kept, message_of_word, strict=True):
        total[m] += 1
        hits[m] += bool(keep)
    return [h / t if t else 1.0 for h, t in zip(hits, total, strict=True)]


def selection_entropy(kept: Sequence[bool], message_of_word: Sequence[int], num_messages: int) -> float:
    """Normalised entropy (0..1) of how the kept words spread over the messages.

    1 = spread evenly over all messages, 0 = all in one message (or nothing kept).
    """
    counts = torch.zeros(num_messages)
    for keep, m in zip(kept, message_of_word, strict=True):
        counts[m] += bool(keep)
    if counts.sum() == 0 or num_messages < 2:
        return 0.0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum()) / math.log(num_messages)


def stability(previous: Sequence[bool], current: Sequence[bool]) -> float:
    """Jaccard overlap of the kept words shared by two successive compressions of a growing dialogue.

    ``previous`` covers the first words of ``current`` (the dialogue only grew); words that
    are new in ``current`` are ignored. 1.0 when neither keeps any of the shared words.
    """
    if len(previous) > len(current):
        raise ValueError("the current compression must cover at least the previous one's words")
    a = {i for i, k in enumerate(previous) if k}
    b = {i for i, k in enumerate(current[: len(previous)]) if k}
    return len(a & b) / len(a | b) if a | b else 1.0

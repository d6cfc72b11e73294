"""Exact word budgets and order-preserving selection.

Every method keeps exactly ``B`` context words, in their original order; speaker tags
are forced and not counted. Primary track: ``B = floor(r * N)``; long track: absolute
budgets (capped at ``N``). ``r = 0`` is the empty context, ``r = 1`` the full one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from benches.relevance.data import Instance, Turn, render_turns

PRIMARY_RATIOS: tuple[float, ...] = (0.1, 0.25, 0.5)
LONG_WORDS: tuple[int, ...] = (64, 128, 256)


class BudgetError(ValueError):
    """A budget outside [0, 1] (ratio) or below zero (word count)."""


def budget_words(n_words: int, ratio: float | None = None, words: int | None = None) -> int:
    """``floor(ratio * n_words)`` or ``min(words, n_words)``; exactly one of the two is given."""
    if (ratio is None) == (words is None):
        raise BudgetError("give exactly one of ratio= or words=")
    if ratio is not None:
        if not 0.0 <= ratio <= 1.0:
            raise BudgetError(f"budget ratio must be in [0, 1], got {ratio}")
        return math.floor(ratio * n_words + 1e-9)
    if words < 0:
        raise BudgetError(f"budget in words must be >= 0, got {words}")
    return min(words, n_words)


def budget_labels(track: str) -> list[str]:
    """Budget names of a track in increasing order (``"0.25"`` or ``"128w"``)."""
    return [f"{r:g}" for r in PRIMARY_RATIOS] if track == "primary" else [f"{w}w" for w in LONG_WORDS]


def budget_for(label: str, n_words: int) -> int:
    """Word budget of a label from `budget_labels` (or ``"0"`` / ``"1"`` for the bounds)."""
    if label.endswith("w"):
        return budget_words(n_words, words=int(label[:-1]))
    return budget_words(n_words, ratio=float(label))


def select_top(scores: np.ndarray, budget: int) -> np.ndarray:
    """Boolean mask ``[N]`` with exactly ``budget`` True at the highest scores.

    Ties are broken toward later words (recency), deterministically.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise BudgetError(f"scores must be 1-D [N], got shape {scores.shape}")
    if not 0 <= budget <= len(scores):
        raise BudgetError(f"budget {budget} outside [0, {len(scores)}]")
    if not np.isfinite(scores).all():
        raise BudgetError("scores contain NaN or inf")
    position = np.arange(len(scores))
    order = np.lexsort((-position, -scores))  # primary key: score desc, then later first
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[:budget]] = True
    return mask


def compress(instance: Instance, mask: np.ndarray) -> tuple[Turn, ...]:
    """Context turns with only the kept words; every turn keeps its (forced) speaker tag."""
    mask = np.asarray(mask, dtype=bool)
    if len(mask) != instance.n_words:
        raise BudgetError(f"mask has {len(mask)} entries for {instance.n_words} context words")
    out, start = [], 0
    for turn in instance.context:
        keep = mask[start : start + len(turn.words)]
        out.append(Turn(turn.role, tuple(w for w, k in zip(turn.words, keep, strict=False) if k)))
        start += len(turn.words)
    return tuple(out)


def compressed_text(instance: Instance, mask: np.ndarray) -> str:
    return render_turns(compress(instance, mask))


def kept_words(turns: Sequence[Turn]) -> int:
    """Counted words of compressed turns (speaker tags excluded)."""
    return sum(len(t.words) for t in turns)

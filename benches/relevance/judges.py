"""Token-level judges: J4 (synthetic ground truth), J5 (silver labels), J2 retention.

J1/J1b/J3 live in `retrieval`; the J2 judge LM itself is a `lm.SmallLM` trained on half B.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from benches.relevance.budget import select_top
from benches.relevance.data import Instance
from benches.relevance.scorers import is_content, norm_word

SILVER_SPAN = 4  # turns t..t+3


def j4_metrics(inst: Instance, scores: np.ndarray, budget: int) -> dict[str, float]:
    """recall@B of the needed (gold) value words and the fraction of decoy words kept."""
    if not inst.needed:
        raise ValueError(f"instance {inst.root_id} has no needed-word labels (not a J4 dialogue)")
    mask = select_top(scores, budget)
    out = {"j4_recall": float(mask[list(inst.needed)].mean())}
    out["j4_decoy"] = float(mask[list(inst.decoy)].mean()) if inst.decoy else 0.0
    return out


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of ``scores`` for binary ``labels`` (NaN when there is no positive)."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return float("nan")
    return float(average_precision_score(labels, np.asarray(scores, dtype=np.float64)))


def j4_labels(inst: Instance) -> np.ndarray:
    labels = np.zeros(inst.n_words, dtype=bool)
    labels[list(inst.needed)] = True
    return labels


def silver_labels(inst: Instance) -> np.ndarray:
    """``[N]`` True for content words of the context that reappear in turns t..t+3."""
    reused = {norm_word(w) for t in inst.targets[:SILVER_SPAN] for w in t.words}
    return np.array([is_content(n) and n in reused for n in (norm_word(w) for w in inst.flat_words())])


def retention(nll: np.ndarray, nll_empty: np.ndarray, nll_full: np.ndarray) -> float:
    """``(M - M_empty) / (M_full - M_empty)`` on the mean NLLs (1 = as good as full, 0 = as empty)."""
    gap = float(np.mean(nll_empty) - np.mean(nll_full))
    if gap == 0.0:
        return float("nan")
    return float((np.mean(nll_empty) - np.mean(nll)) / gap)

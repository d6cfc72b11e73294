"""Paired statistics over conversations: bootstrap CIs, McNemar, Wilcoxon, Holm.

The unit is the conversation: every resample draws conversations with replacement and
keeps all methods' values of a drawn conversation together (paired).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import binomtest, wilcoxon


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """``[R, n]`` conversation indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_ci(
    columns: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    n_resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Point estimate and percentile CI of ``statistic(column means)``.

    ``columns`` is ``[K, n]`` (K paired quantities over n conversations); ``statistic``
    maps means ``[K, ...]`` to a value ``[...]``, e.g. ``lambda m: m[0] - m[1]``.
    """
    columns = np.atleast_2d(np.asarray(columns, dtype=np.float64))
    n = columns.shape[1]
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    point = float(statistic(columns.mean(axis=1)))
    idx = bootstrap_indices(n, n_resamples, seed)
    means = columns[:, idx].mean(axis=2)  # [K, R]
    values = statistic(means)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(values, [alpha, 1.0 - alpha])
    return point, float(lo), float(hi)


def mean_ci(x: np.ndarray, **kwargs) -> tuple[float, float, float]:
    return bootstrap_ci(np.asarray(x)[None], lambda m: m[0], **kwargs)


def diff_ci(a: np.ndarray, b: np.ndarray, **kwargs) -> tuple[float, float, float]:
    """Mean of ``a - b`` with its paired bootstrap CI."""
    return bootstrap_ci(np.stack([a, b]), lambda m: m[0] - m[1], **kwargs)


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact (binomial) two-sided McNemar p-value for paired binary outcomes."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired ``a - b`` (1.0 when all differences are 0)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox").pvalue)


def is_binary(x: np.ndarray) -> bool:
    return bool(np.isin(np.asarray(x), (0.0, 1.0)).all())


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """McNemar when both are 0/1 (e.g. R@1), Wilcoxon otherwise (e.g. NLL, recall)."""
    return mcnemar(a, b) if is_binary(a) and is_binary(b) else wilcoxon_p(a, b)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as the input)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted

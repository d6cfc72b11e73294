"""Attending: allocate a word budget over a dialogue (the ARR-COC allocator, for text).

Hard mode keeps *exactly* the budgeted number of non-forced words, subject to per-turn
minima and maxima whose maxima follow a budget curve over the turns (older turns may
get less), or to discrete levels of detail per turn. Soft and straight-through (Gumbel)
modes give a differentiable mask so scorers and balancer can be trained end to end,
which ARR-COC v0.1's hard top-k could not.

Shapes: ``N`` words of one dialogue, ``T`` turns (messages), ``B`` batch of dialogues.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

CURVES = ("flat", "linear", "power", "exponential")
_DIGIT = re.compile(r"\d")


class AllocationError(ValueError):
    """A budget or allocation setting is invalid or cannot be met."""


@dataclass
class AllocationConfig:
    """How the budget is spread over the turns.

    budget: below 1 a ratio of the dialogue's words (``floor(r * N)``), 1 or more a word count.
    min_per_turn: words every turn keeps at least (all of them if it has fewer).
    max_per_turn: cap per turn, in words (>= 1) or as a fraction of the turn's words (< 1);
        None = no cap.
    curve: how the cap grows from the oldest turn to the newest: ``flat`` (same cap),
        ``linear``, ``power`` (``p ** curve_param``) or ``exponential``
        (``(e^{a p} - 1) / (e^a - 1)``, ``a = curve_param``); ``p`` in [0, 1] is the turn position.
    curve_floor: share of the cap above the minimum that the oldest turn gets (0..1).
    levels: discrete levels of detail (fractions of a turn's words, e.g. ``(0, 0.25, 0.5, 1)``);
        when set, turns are kept at these levels (one turn takes the remainder so the
        total stays exact) and the per-turn min/max/curve are not used.
    force_digits: always keep words containing a digit (not counted against the budget).
    force_terms: always keep these words (case-insensitive, punctuation around them ignored).
    """

    budget: float = 0.25
    min_per_turn: int = 0
    max_per_turn: float | None = None
    curve: str = "flat"
    curve_param: float = 2.0
    curve_floor: float = 0.0
    levels: tuple[float, ...] | None = None
    force_digits: bool = False
    force_terms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.budget, (int, float)) and self.budget > 0 and math.isfinite(self.budget)):
            raise AllocationError(
                f"budget must be a positive number (ratio < 1 or word count >= 1), got {self.budget!r}"
            )
        if self.budget >= 1 and float(self.budget) != int(self.budget):
            raise AllocationError(f"a word-count budget must be a whole number, got {self.budget}")
        if self.min_per_turn < 0:
            raise AllocationError(f"min_per_turn must be >= 0, got {self.min_per_turn}")
        if self.max_per_turn is not None and self.max_per_turn <= 0:
            raise AllocationError(f"max_per_turn must be positive, got {self.max_per_turn}")
        if self.curve not in CURVES:
            raise AllocationError(f"unknown budget curve {self.curve!r}; expected one of {', '.join(CURVES)}")
        if not 0.0 <= self.curve_floor <= 1.0:
            raise AllocationError(f"curve_floor must be in [0, 1], got {self.curve_floor}")
        if self.curve in ("power", "exponential") and self.curve_param <= 0:
            raise AllocationError(
                f"curve_param must be positive for the {self.curve} curve, got {self.curve_param}"
            )
        if self.levels is not None:
            levels = tuple(float(x) for x in self.levels)
            if not levels or any(not 0.0 <= x <= 1.0 for x in levels) or list(levels) != sorted(set(levels)):
                raise AllocationError(
                    f"levels must be strictly increasing fractions in [0, 1], got {self.levels}"
                )
            self.levels = levels


@dataclass
class Allocation:
    """The result of hard allocation for one dialogue.

    kept: [N] bool, forced words included. forced: [N] bool. budget: non-forced words kept
    (exactly). per_turn: [T] kept non-forced words per turn. caps: [T] the per-turn maxima
    used. levels: [T] achieved fraction of each turn's free words (levels mode), else None.
    """

    kept: torch.Tensor
    forced: torch.Tensor
    budget: int
    per_turn: torch.Tensor
    caps: torch.Tensor
    levels: torch.Tensor | None = None


def resolve_budget(budget: float, num_words: int) -> int:
    """Words to keep: ``floor(budget * num_words)`` for a ratio, else ``min(budget, num_words)``."""
    if budget < 1:
        return int(math.floor(budget * num_words + 1e-9))
    return int(min(int(budget), num_words))


def curve_weights(num_turns: int, curve: str = "linear", param: float = 2.0) -> torch.Tensor:
    """[T] weights in [0, 1] from the oldest turn (position 0) to the newest (weight 1)."""
    if curve not in CURVES:
        raise AllocationError(f"unknown budget curve {curve!r}; expected one of {', '.join(CURVES)}")
    if num_turns == 1 or curve == "flat":
        return torch.ones(num_turns)
    p = torch.linspace(0.0, 1.0, num_turns, dtype=torch.float64)
    if curve == "linear":
        w = p
    elif curve == "power":
        w = p**param
    else:
        w = torch.expm1(param * p) / math.expm1(param)
    return w.float()


def forced_mask(
    words: Sequence[str], force_digits: bool = False, force_terms: Sequence[str] = ()
) -> torch.Tensor:
    """[N] bool: words with a digit (if asked) or equal to a user term.

    Terms match case-insensitively, ignoring punctuation around the word.
    """
    terms = {t.strip().lower() for t in force_terms if t.strip()}
    out = torch.zeros(len(words), dtype=torch.bool)
    for i, word in enumerate(words):
        bare = word.strip(".,;:!?\"'()[]{}<>").lower()
        if (force_digits and _DIGIT.search(word)) or (terms and (bare in terms or word.lower() in terms)):
            out[i] = True
    return out


def turn_bounds(free_sizes: torch.Tensor, config: AllocationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-turn (minimum, maximum) kept free words, [T] each; maxima follow the budget curve."""
    n = free_sizes.long()
    lo = torch.clamp(torch.full_like(n, config.min_per_turn), max=n)
    if config.max_per_turn is None:
        cap = n.double()
    elif config.max_per_turn < 1:
        cap = torch.floor(config.max_per_turn * n.double() + 1e-9)
    else:
        cap = torch.full_like(n, int(config.max_per_turn)).double()
    w = config.curve_floor + (1.0 - config.curve_floor) * curve_weights(
        len(n), config.curve, config.curve_param
    )
    hi = lo.double() + (cap - lo.double()).clamp(min=0) * w.double()
    hi = torch.minimum(torch.floor(hi + 1e-9).long(), n)
    return lo, torch.maximum(hi, lo)


def _rank_within_turn(scores: torch.Tensor, turn_ids: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """[N] rank of each eligible word among eligible words of its turn (0 = best); ties by position."""
    order = torch.argsort(-scores.double(), stable=True)
    order = order[eligible[order]]
    ranks = torch.full_like(turn_ids, torch.iinfo(torch.long).max)
    seen: dict[int, int] = {}
    for idx in order.tolist():
        t = int(turn_ids[idx])
        ranks[idx] = seen.get(t, 0)
        seen[t] = ranks[idx].item() + 1
    return ranks


def allocate(
    scores: torch.Tensor,
    turn_ids: torch.Tensor,
    budget: int,
    lo: torch.Tensor,
    hi: torch.Tensor,
    forced: torch.Tensor | None = None,
) -> Allocation:
    """Keep exactly ``budget`` non-forced words maximising the total score, with ``lo <= per-turn <= hi``.

    scores: [N]; turn_ids: [N] long in [0, T); lo, hi: [T]; forced: [N] bool (kept, not counted).
    The greedy choice (each turn's top ``lo`` words, then the best remaining words of turns
    below their cap) is optimal for this separable objective.
    """
    n_turns = len(lo)
    forced = torch.zeros_like(scores, dtype=torch.bool) if forced is None else forced
    free = ~forced
    if int(lo.sum()) > budget:
        raise AllocationError(f"per-turn minima need {int(lo.sum())} words but the budget is {budget}")
    if int(hi.sum()) < budget:
        raise AllocationError(f"per-turn maxima allow only {int(hi.sum())} words but the budget is {budget}")
    rank = _rank_within_turn(scores, turn_ids, free)
    turn_lo, turn_hi = lo[turn_ids], hi[turn_ids]
    mandatory = free & (rank < turn_lo)
    optional = free & ~mandatory & (rank < turn_hi)
    rest = budget - int(mandatory.sum())
    kept = mandatory.clone()
    if rest > 0:
        idx = optional.nonzero().squeeze(1)
        top = idx[torch.argsort(-scores[idx].double(), stable=True)[:rest]]
        kept[top] = True
    per_turn = torch.bincount(turn_ids[kept], minlength=n_turns)
    return Allocation(kept | forced, forced, budget, per_turn, hi)


def allocate_levels(
    scores: torch.Tensor,
    turn_ids: torch.Tensor,
    budget: int,
    levels: Sequence[float],
    forced: torch.Tensor | None = None,
) -> Allocation:
    """Keep each turn at a discrete level of detail (a fraction of its free words), ``budget`` words in total.

    All turns start at the lowest level; the upgrade (turn to its next level) with the
    highest mean score per added word is taken while it fits; the best remaining upgrade
    then takes the leftover words, so the total is exact. Returns the achieved fraction
    per turn in ``levels``.
    """
    forced = torch.zeros_like(scores, dtype=torch.bool) if forced is None else forced
    free = ~forced
    n_turns = int(turn_ids.max()) + 1 if len(turn_ids) else 0
    sorted_scores: list[torch.Tensor] = []
    for t in range(n_turns):
        s = scores[(turn_ids == t) & free].double()
        sorted_scores.append(torch.sort(s, descending=True).values)
    sizes = [len(s) for s in sorted_scores]
    counts = [[int(math.floor(f * n + 1e-9)) for f in levels] for n in sizes]
    level = [0] * n_turns
    kept_n = [counts[t][0] for t in range(n_turns)]
    remaining = budget - sum(kept_n)
    if remaining < 0:
        raise AllocationError(
            f"the lowest level of detail already needs {sum(kept_n)} words; budget is {budget}"
        )
    while remaining > 0:
        best, best_gain, best_fits = -1, -math.inf, False
        for t in range(n_turns):
            if level[t] + 1 >= len(levels) or counts[t][level[t] + 1] == kept_n[t]:
                continue
            add = counts[t][level[t] + 1] - kept_n[t]
            gain = float(sorted_scores[t][kept_n[t] : kept_n[t] + add].mean())
            fits = add <= remaining
            if (fits, gain) > (best_fits, best_gain):
                best, best_gain, best_fits = t, gain, fits
        if best < 0:
            raise AllocationError(f"levels of detail cannot hold {budget} words")
        add = min(counts[best][level[best] + 1] - kept_n[best], remaining)
        kept_n[best] += add
        remaining -= add
        if best_fits:
            level[best] += 1
    kept = forced.clone()
    for t in range(n_turns):
        idx = ((turn_ids == t) & free).nonzero().squeeze(1)
        kept[idx[torch.argsort(-scores[idx].double(), stable=True)[: kept_n[t]]]] = True
    per_turn = torch.tensor(kept_n, dtype=torch.long)
    achieved = torch.tensor([k / n if n else 0.0 for k, n in zip(kept_n, sizes, strict=True)])
    return Allocation(kept, forced, budget, per_turn, torch.tensor([c[-1] for c in counts]), achieved)


def allocate_dialogue(
    scores: torch.Tensor, turn_ids: torch.Tensor, words: Sequence[str], config: AllocationConfig
) -> Allocation:
    """Hard allocation for one dialogue: forced words, then the budget over the free words.

    The budget is resolved against all ``N`` words (``floor(r * N)``) and capped by the
    number of free (non-forced) words.
    """
    forced = forced_mask(words, config.force_digits, config.force_terms)
    budget = min(resolve_budget(config.budget, len(words)), int((~forced).sum()))
    if config.levels is not None:
        return allocate_levels(scores, turn_ids, budget, config.levels, forced)
    n_turns = int(turn_ids.max()) + 1 if len(turn_ids) else 0
    free_sizes = torch.bincount(turn_ids[~forced], minlength=n_turns)
    lo, hi = turn_bounds(free_sizes, config)
    return allocate(scores, turn_ids, budget, lo, hi, forced)


def soft_topk(
    scores: torch.Tensor, k: torch.Tensor, tau: float = 0.1, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Differentiable relaxed top-k: ``sigmoid((s - theta) / tau)``, ``theta`` set so rows sum to ``k``.

    scores: [B, N]; k: [B] words per row; mask: [B, N] bool of valid words. Returns [B, N]
    in (0, 1), zero on masked-out words. ``theta`` is found by bisection without gradient.
    """
    mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
    k = k.to(scores.dtype)
    with torch.no_grad():
        s = scores.masked_fill(~mask, 0.0)
        lo = s.masked_fill(~mask, math.inf).amin(1) - 20 * tau
        hi = s.masked_fill(~mask, -math.inf).amax(1) + 20 * tau
        for _ in range(60):
            mid = (lo + hi) / 2
            total = (torch.sigmoid((s - mid[:, None]) / tau) * mask).sum(1)
            too_many = total > k
            lo = torch.where(too_many, mid, lo)
            hi = torch.where(too_many, hi, mid)
        theta = (lo + hi) / 2
    return torch.sigmoid((scores - theta[:, None]) / tau) * mask


def straight_through_topk(
    scores: torch.Tensor,
    k: torch.Tensor,
    tau: float = 0.1,
    mask: torch.Tensor | None = None,
    gumbel: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact hard top-k in the forward pass, relaxed top-k gradient in the backward pass.

    With ``gumbel`` the scores are perturbed by ``tau * Gumbel(0, 1)`` noise first
    (sampling k words without replacement, Kool et al. 2019). scores: [B, N]; k: [B] long;
    mask: [B, N] bool. Returns [B, N] with exactly ``k[b]`` ones per row (values) whose
    gradient is that of `soft_topk`.
    """
    mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
    if gumbel:
        u = torch.rand(scores.shape, generator=generator, dtype=scores.dtype).clamp(1e-9, 1 - 1e-9)
        scores = scores - tau * torch.log(-torch.log(u))
    soft = soft_topk(scores, k, tau, mask)
    hard = torch.zeros_like(soft)
    ranked = torch.argsort(scores.detach().masked_fill(~mask, -math.inf), dim=1, descending=True, stable=True)
    keep = torch.arange(scores.shape[1])[None, :] < k.long()[:, None]
    hard.scatter_(1, ranked, keep.to(soft.dtype))
    return hard + soft - soft.detach()

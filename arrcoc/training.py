"""End-to-end training of a learned scorer and the balancer through the allocator.

ARR-COC v0.1's hard top-k cut the gradient, so its scorers could not learn. Here the
allocator's straight-through (Gumbel) top-k feeds the kept mask into the encoder's
pooling as token weights, the world model imagines the future from the compressed
context, and the loss asks that future to match the one imagined from the full
context (future preservation):

    L = (V_kept - V_full)^2 + ||P (g_kept - g_full)||^2

Gradients reach the `TokenHead` (a learned per-word scorer on the encoder's word
vectors, which can stand in for the coupling scorer) and a learned `Balancer`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from arrcoc.attending import resolve_budget, straight_through_topk
from arrcoc.balancing import Balancer
from arrcoc.future_coupling import PooledTurns
from arrcoc.knowing import WorldModelScorer


class TokenHead(nn.Module):
    """A learned word scorer: word vectors [N, H] -> scores [N]."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, vectors: Tensor) -> Tensor:
        return self.net(vectors).squeeze(-1)


def weighted_turns(pooled: PooledTurns, weights: Tensor) -> Tensor:
    """[T, H] turn embeddings with word ``i`` weighted by ``weights[i]`` in [0, 1] (differentiable).

    All ones gives `PooledTurns.pooled`; a zero removes the word like `PooledTurns.occluded`.
    Special tokens keep weight one.
    """
    drop = (1 - weights)[:, None]
    turns = len(pooled.turn_sum)
    removed_sum = torch.zeros_like(pooled.turn_sum).index_add(0, pooled.word_turn, drop * pooled.word_sum)
    removed_count = torch.zeros(turns).index_add(0, pooled.word_turn, drop[:, 0] * pooled.word_count)
    raw = (pooled.turn_sum - removed_sum) / (pooled.turn_count - removed_count).clamp(min=1e-9)[:, None]
    return nn.functional.normalize(raw, dim=-1) if pooled.normalize else raw


def future_preservation_loss(
    scorer: WorldModelScorer,
    messages: Sequence[Mapping[str, str]],
    head: TokenHead,
    balancer: Balancer,
    budget: float = 0.25,
    tau: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The future-preservation loss of one dialogue under a straight-through Gumbel top-k mask.

    The learned head fills the coupling slot; information and salience come from the
    scorer (fixed features). Returns a scalar with gradients to ``head`` and ``balancer``.
    """
    pooled, vectors = scorer.pool(messages)
    fixed = scorer.score(messages, "fast").scores
    learned = head(vectors)
    stacked = torch.stack([learned, fixed["information"], fixed["salience"]], dim=-1)[None]
    mask = torch.ones(1, len(learned), dtype=torch.bool)
    balanced = balancer(stacked, mask).balanced
    k = torch.tensor([resolve_budget(budget, len(learned))])
    keep = straight_through_topk(balanced, k, tau, mask, gumbel=True, generator=generator)[0]
    with torch.no_grad():
        v_full, g_full = scorer._imagine(pooled.pooled()[None, : pooled.model_turns])
    v, g = scorer._imagine(weighted_turns(pooled, keep)[None, : pooled.model_turns])
    return ((v - v_full) ** 2).sum() + (((g - g_full) @ scorer.proj.T) ** 2).sum()

"""Balancing: mix the three ways of knowing into one relevance score per word.

Explicit tensions, each in [0, 1] (Vervaeke's opponent processing):

* ``compress_particularize``: 0 = compress (a word scores like its neighbourhood, so
  whole spans are kept), 1 = particularize (each word on its own score).
* ``exploit_explore``: 0 = exploit the world model's future coupling, 1 = explore
  surprising (high-information) words; 0.5 leaves the base weights unchanged.
* ``focus_diversify``: 0 = focus on the top scores, 1 = diversify (subtract a redundancy
  term: the score mass of nearby, or semantically similar, words).

A reserved share (``Balancer(reserved_share=s)``, with a ``reserved`` score per word): the balanced
ranking and the reserved score's ranking are merged (`reserved_ranking`), so that the top B words of
the output contain the reserved score's best ``ceil(s B)`` and the balanced score's best ``B -
ceil(s B)``, for every B. The output is then a rank score (``1 - rank / N``), not a scaled mix, and the
guarantee holds for a plain top-B; forced words and per-turn limits in the allocator can change what
is kept. The hybrid method reserves 0.4 of every budget for the future-reuse head's ranking (slot
values) and 0.2 for the most recent words (below); the rest keeps fluent spans.

A recent share (``Balancer(recent_share=r)``): that share of every budget goes to the most recent
words, as H2O (Zhang et al. 2023) keeps a window of recent tokens beside its heavy hitters and
LLMLingua can keep the last sentence. The most recent words are merged in first, then the reserved
score's: for every B the top B words hold the last ``ceil(r' B')`` words of the dialogue, with ``B' = B
- ceil(s B)`` and ``r' = r / (1 - s)``, the reserved score's best ``ceil(s B)`` and the balanced
score's best for the rest, so about ``r B`` recent words.

Scores are normalised per sample (min-max over that sample's valid words only), never
across the batch. In learned mode a small MLP reads per-sample score statistics and
outputs the scorer weights and the three tensions.

Shapes: ``B`` dialogues, ``N`` words, ``S`` scorers (coupling, information, salience).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SCORERS: tuple[str, ...] = ("coupling", "information", "salience")
TENSIONS: tuple[str, ...] = ("compress_particularize", "exploit_explore", "focus_diversify")


class BalancingError(ValueError):
    """A tension or weight setting is invalid."""


@dataclass
class Tensions:
    """The three opponent-processing dials, each in [0, 1]."""

    compress_particularize: float = 0.7
    exploit_explore: float = 0.5
    focus_diversify: float = 0.2

    def __post_init__(self) -> None:
        for name in TENSIONS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BalancingError(f"tension {name} must be in [0, 1], got {value}")

    def as_tensor(self) -> torch.Tensor:
        """[3] in the order of `TENSIONS`."""
        return torch.tensor([getattr(self, name) for name in TENSIONS])


@dataclass
class Balanced:
    """Balancer output: balanced [B, N] in [0, 1], weights [B, S], tensions [B, 3]."""

    balanced: torch.Tensor
    weights: torch.Tensor
    tensions: torch.Tensor


def normalize_per_sample(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Min-max normalise over each sample's valid words: [B, N, ...] -> same shape, in [0, 1].

    A sample whose valid scores are all equal maps to 0.5; masked words map to 0.
    """
    m = mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim())).to(x.dtype)
    big = torch.finfo(x.dtype).max
    lo = torch.where(m > 0, x, torch.full_like(x, big)).amin(1, keepdim=True)
    hi = torch.where(m > 0, x, torch.full_like(x, -big)).amax(1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 1e-12, (x - lo) / span.clamp(min=1e-12), torch.full_like(x, 0.5))
    return out * m


def tension_weights(exploit_explore: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Scorer weights [B, S] from the exploit/explore tension [B] and base weights [S].

    Coupling is scaled by ``2 (1 - t)``, information by ``2 t``, salience unchanged, then
    the weights are renormalised to sum to one (t = 0.5 returns ``base`` normalised).
    """
    t = exploit_explore[:, None]
    scale = torch.cat([2 * (1 - t), 2 * t, torch.ones_like(t)], dim=1)
    w = base[None, :] * scale
    return w / w.sum(1, keepdim=True).clamp(min=1e-12)


def local_average(x: torch.Tensor, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Masked mean over a window of ``2 radius + 1`` positions: [B, N] -> [B, N]."""
    kernel = torch.ones(1, 1, 2 * radius + 1, dtype=x.dtype)
    m = mask.to(x.dtype)[:, None]
    num = F.conv1d((x * mask)[:, None], kernel, padding=radius)
    den = F.conv1d(m, kernel, padding=radius)
    return (num / den.clamp(min=1e-12))[:, 0] * mask


def redundancy(
    x: torch.Tensor, mask: torch.Tensor, embeddings: torch.Tensor | None = None, bandwidth: float = 4.0
) -> torch.Tensor:
    """The diversity term: score mass around each word, excluding the word itself, [B, N] in [0, 1].

    Positional (default): Gaussian-weighted mean of the other words' scores within
    ``3 * bandwidth`` positions. Semantic (``embeddings`` [B, N, D]): mean of the other
    words' scores weighted by the positive part of their cosine similarity (O(N^2)).
    """
    m = mask.to(x.dtype)
    if embeddings is None:
        radius = max(1, int(3 * bandwidth))
        offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
        kernel = torch.exp(-(offsets**2) / (2 * bandwidth**2))
        kernel[radius] = 0.0
        num = F.conv1d((x * m)[:, None], kernel[None, None], padding=radius)[:, 0]
        den = F.conv1d(m[:, None], kernel[None, None], padding=radius)[:, 0]
    else:
        e = F.normalize(embeddings, dim=-1)
        sim = (e @ e.transpose(1, 2)).clamp(min=0) * m[:, None, :]
        sim = sim * (1 - torch.eye(x.shape[1], dtype=x.dtype))[None]
        num = (sim * (x * m)[:, None, :]).sum(-1)
        den = sim.sum(-1)
    return (num / den.clamp(min=1e-12)) * m


def reserved_ranking(primary: torch.Tensor, reserved: torch.Tensor, share: float) -> torch.Tensor:
    """Merge two rankings of the same words: [N], [N] -> [N] scores in (0, 1], higher = earlier.

    Slot ``j`` (0-based) of the merged ranking takes the best word not yet placed by ``reserved``
    when ``ceil((j + 1) share) > ceil(j share)``, else the best not yet placed by ``primary`` (ties:
    the earlier word). For every budget B, the first B words hold the best ``ceil(share B)`` of
    ``reserved`` and the best ``B - ceil(share B)`` of ``primary``. No gradient flows through it.
    """
    if not 0.0 <= share <= 1.0:
        raise BalancingError(f"reserved share must be in [0, 1], got {share}")
    n = primary.shape[0]
    rank = [x.detach().float() for x in (primary, reserved)]
    orders = [torch.sort(x, descending=True, stable=True).indices.tolist() for x in rank]
    placed = [False] * n
    pointers = [0, 0]
    out = torch.zeros(n, dtype=primary.dtype)
    for j in range(n):
        src = int(math.ceil((j + 1) * share - 1e-9) > math.ceil(j * share - 1e-9))
        order = orders[src]
        while placed[order[pointers[src]]]:
            pointers[src] += 1
        word = order[pointers[src]]
        placed[word] = True
        out[word] = 1.0 - j / n
    return out.to(primary.device)


class Balancer(nn.Module):
    """Mix per-word scorer scores [B, N, S] into balanced relevance [B, N].

    Fixed mode uses ``tensions`` and ``base_weights``; learned mode (``learned=True``)
    predicts weights and tensions from per-sample statistics (mean, std, max of each
    normalised scorer) with an MLP whose last layer starts at zero (uniform weights,
    tensions 0.5).

    ``keep_peaks``: the compress side lifts a word to its neighbourhood's mean but never lowers it
    (``max(local mean, score)``), so spans grow around high-scoring words and an isolated peak (a
    booking code, a date) keeps its score instead of being averaged away.

    ``reserved_share``: when ``forward`` gets a ``reserved`` score [B, N], that share of every
    budget goes to its best words (`reserved_ranking`; fixed mode only, it has no gradient).
    ``recent_share``: that share of every budget goes to the most recent words (fixed mode only;
    ``reserved_share + recent_share <= 1``; see the module docstring).
    """

    def __init__(
        self,
        tensions: Tensions | None = None,
        base_weights: tuple[float, float, float] = (0.5, 0.25, 0.25),
        learned: bool = False,
        radius: int = 2,
        bandwidth: float = 4.0,
        hidden: int = 32,
        keep_peaks: bool = False,
        reserved_share: float = 0.0,
        recent_share: float = 0.0,
    ) -> None:
        super().__init__()
        for name, share in (("reserved_share", reserved_share), ("recent_share", recent_share)):
            if not 0.0 <= share <= 1.0:
                raise BalancingError(f"{name} must be in [0, 1], got {share}")
            if learned and share > 0:
                raise BalancingError(f"{name} is a ranking step without gradient: needs learned=False")
        if reserved_share + recent_share > 1.0 + 1e-9:
            raise BalancingError(
                f"reserved_share + recent_share must be <= 1, got {reserved_share} + {recent_share}"
            )
        if len(base_weights) != len(SCORERS) or min(base_weights) < 0 or sum(base_weights) <= 0:
            raise BalancingError(f"base_weights must be 3 non-negative numbers, not all zero: {base_weights}")
        self.tensions = tensions or Tensions()
        self.register_buffer("base_weights", torch.tensor(base_weights, dtype=torch.float32))
        self.learned = learned
        self.radius = radius
        self.bandwidth = bandwidth
        self.keep_peaks = keep_peaks
        self.reserved_share = reserved_share
        self.recent_share = recent_share
        if learned:
            n = len(SCORERS)
            self.mlp = nn.Sequential(
                nn.Linear(3 * n, hidden), nn.SiLU(), nn.Linear(hidden, n + len(TENSIONS))
            )
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def _weights_and_tensions(
        self, normed: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = normed.shape[0]
        if not self.learned:
            tensions = self.tensions.as_tensor().to(normed)[None].expand(batch, -1)
            return tension_weights(tensions[:, 1], self.base_weights.to(normed)), tensions
        m = mask.to(normed.dtype)[..., None]
        count = m.sum(1).clamp(min=1)
        mean = (normed * m).sum(1) / count
        std = (((normed - mean[:, None]) ** 2 * m).sum(1) / count).sqrt()
        top = (normed * m).amax(1)
        out = self.mlp(torch.cat([mean, std, top], dim=-1))
        n = len(SCORERS)
        return torch.softmax(out[:, :n], dim=-1), torch.sigmoid(out[:, n:])

    def forward(
        self,
        scores: torch.Tensor,
        mask: torch.Tensor,
        embeddings: torch.Tensor | None = None,
        reserved: torch.Tensor | None = None,
    ) -> Balanced:
        """scores [B, N, S], mask [B, N] bool, embeddings [B, N, D] (semantic diversity), reserved
        [B, N] (the score whose ranking gets ``reserved_share`` of every budget) -> `Balanced`."""
        if scores.dim() != 3 or scores.shape[-1] != len(SCORERS):
            raise BalancingError(f"scores must be [B, N, {len(SCORERS)}], got {list(scores.shape)}")
        if scores.shape[1] == 0:  # no words: one masked-out placeholder keeps every reduction defined
            out = self.forward(
                scores.new_zeros(scores.shape[0], 1, scores.shape[2]), mask.new_zeros(mask.shape[0], 1)
            )
            return Balanced(out.balanced[:, :0], out.weights, out.tensions)
        normed = normalize_per_sample(scores, mask)
        weights, tensions = self._weights_and_tensions(normed, mask)
        mixed = (normed * weights[:, None, :]).sum(-1)
        particular = tensions[:, 0:1]
        smooth = local_average(mixed, mask, self.radius)
        if self.keep_peaks:
            smooth = torch.maximum(smooth, mixed)
        mixed = particular * mixed + (1 - particular) * smooth
        mixed = mixed - tensions[:, 2:3] * redundancy(mixed, mask, embeddings, self.bandwidth)
        balanced = normalize_per_sample(mixed, mask)
        if reserved is not None and reserved.shape != mask.shape:
            raise BalancingError(f"reserved must be [B, N] = {list(mask.shape)}, got {list(reserved.shape)}")
        if any(self.shares(reserved is not None).values()):
            merged = torch.zeros_like(balanced)
            for b, valid in enumerate(mask):
                merged[b, valid] = self._merge(
                    balanced[b, valid], None if reserved is None else reserved[b][valid]
                )
            balanced = merged
        return Balanced(balanced, weights, tensions)

    def shares(self, has_reserved: bool) -> dict[str, float]:
        """The budget shares applied: ``reserved`` (only with a reserved score) and ``recent``."""
        return {"reserved": self.reserved_share if has_reserved else 0.0, "recent": self.recent_share}

    def _merge(self, balanced: torch.Tensor, reserved: torch.Tensor | None) -> torch.Tensor:
        """[n] balanced, [n] reserved (or None) -> [n] rank scores with the recent and reserved shares."""
        share = self.shares(reserved is not None)["reserved"]
        if self.recent_share > 0:
            recent = torch.arange(len(balanced), dtype=balanced.dtype, device=balanced.device)
            rest = 1.0 - share  # the recent share is of the whole budget; it is merged into the rest
            inner = min(self.recent_share / rest, 1.0) if rest > 0 else 0.0
            balanced = reserved_ranking(balanced, recent, inner)
        return balanced if share == 0 else reserved_ranking(balanced, reserved, share)

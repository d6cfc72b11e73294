"""Small DreamerV3 formulas: symlog, two-hot regression, lambda-returns, return
normalisation, KL balancing with free bits and unimix categoricals.

Every function here is pure tensor math with shapes in its docstring; the modules
that use them (rssm, heads, behavior) hold no formulas of their own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def symlog(x: Tensor) -> Tensor:
    """``sign(x) * log(1 + |x|)``, elementwise, any shape."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """``sign(x) * (exp(|x|) - 1)``, the inverse of `symlog`, elementwise, any shape."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHot(nn.Module):
    """Discrete regression over fixed bins (DreamerV3 reward and value heads).

    The bins are ``linspace(low, high, num_bins)`` in the transformed space (symlog by
    default, so the 255 default bins span ``symexp(-20)..symexp(20)``). A scalar target
    ``y`` is encoded as weights on the two bins around ``symlog(y)``, linearly
    interpolated; a prediction is decoded as ``symexp(sum(softmax(logits) * bins))``.

    Args:
        num_bins: number of bins K.
        low, high: range of the bins in the transformed space.
        transform: apply symlog/symexp around the bins (False: identity).
    """

    def __init__(
        self, num_bins: int = 255, low: float = -20.0, high: float = 20.0, transform: bool = True
    ) -> None:
        super().__init__()
        if num_bins < 2 or not low < high:
            raise ValueError(f"TwoHot needs num_bins >= 2 and low < high, got {num_bins}, {low}, {high}")
        bins = torch.linspace(low, high, num_bins, dtype=torch.float64)
        if low == -high:  # make the bins exactly antisymmetric (the middle bin exactly 0)
            bins = (bins - bins.flip(0)) / 2
        self.register_buffer("bins", bins.float(), persistent=False)
        self.transform = transform

    @property
    def num_bins(self) -> int:
        return self.bins.numel()

    def neighbours(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The two bins around each target and the upper one's weight: ``below``, ``above``
        (bin indices ``[...]``, ``above = below + 1``) and ``w_hi [...]`` in [0, 1]."""
        x = symlog(y) if self.transform else y
        bins = self.bins
        x = x.clamp(bins[0], bins[-1])
        above = torch.searchsorted(bins, x.detach().contiguous(), right=True).clamp(1, len(bins) - 1)
        below = above - 1
        lo, hi = bins[below], bins[above]
        return below, above, (x - lo) / (hi - lo)

    def encode(self, y: Tensor) -> Tensor:
        """Two-hot target weights. ``y [...]`` -> ``[..., K]`` summing to 1 per row."""
        below, above, w_hi = self.neighbours(y)
        target = F.one_hot(below, len(self.bins)) * (1 - w_hi).unsqueeze(-1)
        return target + F.one_hot(above, len(self.bins)) * w_hi.unsqueeze(-1)

    def decode(self, logits: Tensor) -> Tensor:
        """Expected value of the bins under ``softmax(logits)``. ``[..., K]`` -> ``[...]``."""
        weighted = logits.softmax(-1) * self.bins
        half = self.num_bins // 2
        # pair bin i with bin K-1-i so that symmetric probabilities decode to exactly 0
        low, high = weighted[..., :half].flip(-1), weighted[..., self.num_bins - half :]
        x = (low + high).sum(-1) + weighted[..., half:self.num_bins - half].sum(-1)
        return symexp(x) if self.transform else x

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy of ``logits [..., K]`` against the two-hot code of ``y [...]`` -> ``[...]``.

        Equal to ``-(encode(y) * log_softmax(logits)).sum(-1)``, but reads only the two
        non-zero bins of the code instead of materialising ``[..., K]`` targets.
        """
        below, above, w_hi = (t.detach() for t in self.neighbours(y))
        logp = logits.log_softmax(-1)
        lo = logp.gather(-1, below.unsqueeze(-1)).squeeze(-1)
        hi = logp.gather(-1, above.unsqueeze(-1)).squeeze(-1)
        return -((1 - w_hi) * lo + w_hi * hi)


def lambda_return(
    reward: Tensor, cont: Tensor, value: Tensor, gamma: float, lam: float | Tensor
) -> Tensor:
    """TD(lambda) returns over an imagined trajectory, computed backwards in time.

    All inputs are ``[N, H]`` and aligned on the *next* state: for step t,
    ``reward[:, t]`` is r_{t+1}, ``cont[:, t]`` is c_{t+1} (0 after a terminal) and
    ``value[:, t]`` is v(s_{t+1}). Returns ``[N, H]`` with::

        R_t = r_{t+1} + gamma * c_{t+1} * ((1 - lam) * v(s_{t+1}) + lam * R_{t+1}),
        R_{H} = v(s_H)   (the bootstrap).

    ``lam`` may also be a ``[N, H]`` tensor (0 where the return must not chain past
    step t+1, e.g. at the end of a replayed episode).
    """
    if not reward.shape == cont.shape == value.shape:
        raise ValueError(f"lambda_return shapes differ: {reward.shape}, {cont.shape}, {value.shape}")
    lam = torch.as_tensor(lam, dtype=reward.dtype, device=reward.device).expand_as(reward)
    disc = gamma * cont
    interm = reward + disc * (1 - lam) * value
    out = []
    last = value[:, -1]
    for t in reversed(range(reward.shape[1])):
        last = interm[:, t] + disc[:, t] * lam[:, t] * last
        out.append(last)
    return torch.stack(out[::-1], dim=1)


class ReturnNormalizer(nn.Module):
    """Percentile return scale (DreamerV3): EMA of the 5th and 95th percentiles.

    ``scale = max(limit, high - low)``; advantages are divided by it, so returns are
    shrunk when large but small returns are never amplified.

    Args:
        low_pct, high_pct: percentiles (0-100).
        rate: EMA rate (0.01 = the 2023 "decay 0.99").
        limit: lower bound of the scale.
    """

    def __init__(
        self, low_pct: float = 5.0, high_pct: float = 95.0, rate: float = 0.01, limit: float = 1.0
    ) -> None:
        super().__init__()
        self.low_pct, self.high_pct, self.rate, self.limit = low_pct, high_pct, rate, limit
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: Tensor) -> None:
        """Move the EMA towards the percentiles of ``returns`` (any shape)."""
        flat = returns.detach().float().flatten()
        q = torch.quantile(flat, torch.tensor([self.low_pct, self.high_pct], device=flat.device) / 100)
        self.low.lerp_(q[0], self.rate)
        self.high.lerp_(q[1], self.rate)

    def scale(self) -> Tensor:
        """The current scale, a scalar tensor ``>= limit``."""
        return torch.clamp(self.high - self.low, min=self.limit)


def unimix_logits(logits: Tensor, unimix: float) -> Tensor:
    """Log-probabilities of ``(1 - unimix) * softmax(logits) + unimix / K`` over the last dim.

    ``[..., K]`` -> ``[..., K]``; every probability is at least ``unimix / K``.
    """
    if unimix <= 0:
        return logits.log_softmax(-1)
    probs = logits.softmax(-1)
    probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return torch.log(probs)


def categorical_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """KL(p || q) of independent categoricals, summed over the last two dims.

    ``logits_p, logits_q [..., S, C]`` -> ``[...]``.
    """
    logp = logits_p.log_softmax(-1)
    logq = logits_q.log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum((-2, -1))


def kl_balance(
    post_logits: Tensor,
    prior_logits: Tensor,
    free: float = 1.0,
    dyn_scale: float = 0.5,
    rep_scale: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DreamerV3 KL balancing with free bits.

    ``dyn = max(free, KL(sg(post) || prior))`` trains the prior towards the posterior;
    ``rep = max(free, KL(post || sg(prior)))`` trains the posterior (the representation).
    Inputs ``[..., S, C]``; returns ``loss = dyn_scale * dyn + rep_scale * rep`` of shape
    ``[...]`` and the metrics ``dyn``, ``rep`` (clamped) and ``kl`` (unclamped), ``[...]``.
    """
    dyn_raw = categorical_kl(post_logits.detach(), prior_logits)
    rep_raw = categorical_kl(post_logits, prior_logits.detach())
    dyn = torch.clamp(dyn_raw, min=free)
    rep = torch.clamp(rep_raw, min=free)
    loss = dyn_scale * dyn + rep_scale * rep
    return loss, {"dyn": dyn, "rep": rep, "kl": dyn_raw.detach()}

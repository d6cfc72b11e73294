"""Prediction heads on model features: two-hot symlog regression and Bernoulli continue."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from worldmodel.math import TwoHot
from worldmodel.nets import MLP


class TwoHotHead(nn.Module):
    """MLP -> logits over symlog-spaced bins (reward, value).

    ``forward(feat [..., F])`` -> logits ``[..., K]``; `mean` decodes through symexp to
    ``[...]``; `loss` is the two-hot cross-entropy ``[...]``. The output layer starts at
    zero, so the first predictions are exactly 0.
    """

    def __init__(self, feat_dim: int, units: int, layers: int, bins: int = 255) -> None:
        super().__init__()
        self.twohot = TwoHot(bins)
        self.mlp = MLP(feat_dim, bins, units, layers, zero_out=True)

    def forward(self, feat: Tensor) -> Tensor:
        return self.mlp(feat)

    def mean(self, feat: Tensor) -> Tensor:
        return self.twohot.decode(self(feat))

    def loss(self, feat: Tensor, target: Tensor) -> Tensor:
        return self.twohot.loss(self(feat), target)


class ContinueHead(nn.Module):
    """MLP -> Bernoulli logit of "the episode continues" (1 - is_terminal).

    ``prob(feat [..., F])`` -> ``[...]`` in (0, 1); `loss` is binary cross-entropy ``[...]``.
    """

    def __init__(self, feat_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(feat_dim, 1, units, layers)

    def forward(self, feat: Tensor) -> Tensor:
        return self.mlp(feat).squeeze(-1)

    def prob(self, feat: Tensor) -> Tensor:
        return self(feat).sigmoid()

    def loss(self, feat: Tensor, cont: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(self(feat), cont.to(feat.dtype), reduction="none")

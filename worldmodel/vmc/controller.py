"""C: the linear controller of Ha & Schmidhuber (2018), ``out = tanh(W [z, h] + b)``.

The controller is a flat parameter vector (what CMA-ES searches over). A whole CMA-ES
population is evaluated at once: parameters ``[P, n]`` act on features ``[P, M, Z + H]``
(``M`` rollouts per candidate) with one batched matrix product.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LinearController:
    """Shapes and batched evaluation of ``tanh(W x + b)`` with ``W [out, in]``, ``b [out]``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        self.in_dim, self.out_dim = in_dim, out_dim

    @property
    def num_params(self) -> int:
        return self.out_dim * self.in_dim + self.out_dim

    def unpack(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """``params [P, n]`` -> ``(W [P, out, in], b [P, out])``."""
        if params.shape[-1] != self.num_params:
            raise ValueError(f"controller expects {self.num_params} parameters, got {params.shape[-1]}")
        split = self.out_dim * self.in_dim
        return params[:, :split].reshape(-1, self.out_dim, self.in_dim), params[:, split:]

    def __call__(self, params: Tensor, features: Tensor) -> Tensor:
        """``params [P, n]``, ``features [P, M, in]`` -> outputs ``[P, M, out]`` in (-1, 1)."""
        weight, bias = self.unpack(params)
        return torch.tanh(features @ weight.transpose(1, 2) + bias[:, None, :])

    def rows(self, params: Tensor, features: Tensor, candidate: Tensor) -> Tensor:
        """Row-wise: ``params [P, n]``, ``features [N, in]``, ``candidate [N]`` (the row's index
        into ``params``) -> outputs ``[N, out]``; rows of one candidate need not be adjacent."""
        weight, bias = self.unpack(params)
        return torch.tanh(torch.einsum("ni,noi->no", features, weight[candidate]) + bias[candidate])

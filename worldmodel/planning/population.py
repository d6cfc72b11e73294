"""Sampling distributions over action sequences, refitted from weighted samples.

CEM and MPPI differ only in how they weight the sampled sequences (uniform over elites
vs. an exponential of the return); both keep one of these per environment and refit it:

- :class:`GaussianSequence`: independent Gaussians ``N(mean, std)`` per step and action
  dimension, clipped to ``[-1, 1]`` (continuous actions).
- :class:`CategoricalSequence`: one categorical per step (one-hot discrete actions).

All tensors are batched over ``B`` environments: parameters ``[B, H, A]``, samples
``[B, N, H, A]``, weights ``[B, N]`` summing to one over ``N``.
"""

from __future__ import annotations

import torch

from worldmodel.planning.base import one_hot


class GaussianSequence:
    """Diagonal Gaussian over continuous action sequences.

    Args:
        batch: ``B`` environments.
        horizon: ``H`` steps.
        action_dim: ``A``.
        init_std: standard deviation of a fresh (or shifted-in) step.
        min_std: floor for the refitted standard deviation.
        refit_std: whether :meth:`refit` updates ``std`` (CEM) or keeps it (classic MPPI).
    """

    def __init__(
        self,
        batch: int,
        horizon: int,
        action_dim: int,
        init_std: float,
        min_std: float,
        refit_std: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        self.init_std, self.min_std, self.refit_std = init_std, min_std, refit_std
        self.mean = torch.zeros(batch, horizon, action_dim, device=device)
        self.std = torch.full_like(self.mean, init_std)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` sequences per environment: ``[B, n, H, A]`` in ``[-1, 1]``."""
        noise = torch.randn(self.mean.shape[0], n, *self.mean.shape[1:], device=self.mean.device)
        return (self.mean[:, None] + self.std[:, None] * noise).clamp(-1.0, 1.0)

    def refit(self, samples: torch.Tensor, weights: torch.Tensor) -> None:
        """Weighted moment matching: ``samples [B, N, H, A]``, ``weights [B, N]``."""
        w = weights[:, :, None, None]
        self.mean = (w * samples).sum(1)
        if self.refit_std:
            var = (w * (samples - self.mean[:, None]) ** 2).sum(1)
            self.std = var.sqrt().clamp(min=self.min_std)

    def shift(self) -> None:
        """Warm start for the next environment step: drop the executed step, append a fresh one."""
        self.mean = torch.cat([self.mean[:, 1:], torch.zeros_like(self.mean[:, :1])], dim=1)
        self.std = torch.full_like(self.mean, self.init_std)

    def mode(self) -> torch.Tensor:
        """The first action of the current plan, ``[B, A]``."""
        return self.mean[:, 0].clamp(-1.0, 1.0)


class CategoricalSequence:
    """Independent categoricals over one-hot action sequences.

    Args:
        smoothing: mixing weight of the uniform distribution after each refit, so no
            action's probability collapses to exactly zero.
    """

    def __init__(
        self, batch: int, horizon: int, action_dim: int, smoothing: float, device: torch.device | str = "cpu"
    ) -> None:
        self.smoothing = smoothing
        self.probs = torch.full((batch, horizon, action_dim), 1.0 / action_dim, device=device)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` one-hot sequences per environment: ``[B, n, H, A]``."""
        batch, horizon, action_dim = self.probs.shape
        flat = self.probs.reshape(-1, action_dim)
        index = torch.multinomial(flat, n, replacement=True)  # [B*H, n]
        index = index.reshape(batch, horizon, n).transpose(1, 2)
        return one_hot(index, action_dim)

    def refit(self, samples: torch.Tensor, weights: torch.Tensor) -> None:
        """Weighted action frequencies: ``samples [B, N, H, A]``, ``weights [B, N]``."""
        freq = (weights[:, :, None, None] * samples).sum(1)
        self.probs = (1.0 - self.smoothing) * freq + self.smoothing / self.probs.shape[-1]

    def shift(self) -> None:
        """Warm start: drop the executed step, append a uniform one."""
        uniform = torch.full_like(self.probs[:, :1], 1.0 / self.probs.shape[-1])
        self.probs = torch.cat([self.probs[:, 1:], uniform], dim=1)

    def mode(self) -> torch.Tensor:
        """The most probable first action, one-hot ``[B, A]``."""
        return one_hot(self.probs[:, 0].argmax(-1), self.probs.shape[-1])


def make_sequence_distribution(
    discrete: bool,
    batch: int,
    horizon: int,
    action_dim: int,
    init_std: float,
    min_std: float,
    smoothing: float,
    refit_std: bool,
    device: torch.device | str,
) -> GaussianSequence | CategoricalSequence:
    """The distribution matching the action type."""
    if discrete:
        return CategoricalSequence(batch, horizon, action_dim, smoothing, device)
    return GaussianSequence(batch, horizon, action_dim, init_std, min_std, refit_std, device)

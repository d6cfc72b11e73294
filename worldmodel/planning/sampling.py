"""The iterative sampling planner shared by CEM and MPPI (TD-MPC2 style).

Each call of :meth:`IterativeSamplingPlanner.act`:

1. warm-starts the sequence distribution from the previous call's plan (shifted by one
   step) or starts fresh at episode start / when the batch size changes;
2. rolls the actor out ``num_policy`` times in imagination; these closed-loop sequences
   join the population of every iteration;
3. for ``iterations`` rounds samples ``num_samples`` open-loop sequences per environment,
   scores all of them with the imagined discounted return plus the critic's terminal
   value, and refits the distribution with the weights of the subclass (uniform over the
   elites for CEM, the exponentiated return for MPPI);
4. executes the first action of the plan (the mean, or the most likely discrete action).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from worldmodel.planning.base import (
    LatentModel,
    PlannerConfigError,
    State,
    batch_size,
    check_positive,
    imagined_return,
    policy_rollout,
    repeat_state,
)
from worldmodel.planning.population import make_sequence_distribution


@dataclass
class SamplingConfig:
    """Settings shared by CEM and MPPI (TD-MPC2 uses horizon 3, 6 iterations, 512 samples and
    24 actor samples; these defaults are scaled for a CPU: see benches/bench_planning.py)."""

    horizon: int = 8
    iterations: int = 4
    num_samples: int = 64
    num_policy: int = 8
    gamma: float = 0.99
    init_std: float = 1.0
    min_std: float = 0.05
    smoothing: float = 0.05
    terminal_value: bool = True
    warm_start: bool = True


class IterativeSamplingPlanner(ABC):
    """Base class: subclasses define :meth:`weights` and whether the std is refitted."""

    refit_std = True

    def __init__(self, model: LatentModel, config: SamplingConfig) -> None:
        check_positive(
            horizon=config.horizon,
            iterations=config.iterations,
            num_samples=config.num_samples,
            gamma=config.gamma,
            init_std=config.init_std,
        )
        if config.num_policy < 0:
            raise PlannerConfigError(f"planner setting num_policy={config.num_policy} must be >= 0")
        self.model, self.config = model, config
        self._dist = None

    @abstractmethod
    def weights(self, returns: torch.Tensor) -> torch.Tensor:
        """Population weights ``[B, N]`` (summing to one over ``N``) from returns ``[B, N]``."""

    def reset(self) -> None:
        """Drop the carried-over plan (call at the start of every episode)."""
        self._dist = None

    def _distribution(self, batch: int, device: torch.device):
        cfg = self.config
        fresh = self._dist is None or not cfg.warm_start or self._dist.mode().shape[0] != batch
        if fresh:
            self._dist = make_sequence_distribution(
                self.model.discrete,
                batch,
                cfg.horizon,
                self.model.action_dim,
                cfg.init_std,
                cfg.min_std,
                cfg.smoothing,
                self.refit_std,
                device,
            )
        else:
            self._dist.shift()
        return self._dist

    @torch.no_grad()
    def plan(self, state: State) -> torch.Tensor:
        """Optimise the sequence distribution from ``state [B, ...]``; returns the plan's
        first action ``[B, A]``."""
        cfg = self.config
        batch = batch_size(state)
        device = next(iter(state.values())).device
        dist = self._distribution(batch, device)
        action_dim = self.model.action_dim
        if cfg.num_policy > 0:
            pi_actions, pi_returns = policy_rollout(
                self.model, repeat_state(state, cfg.num_policy), cfg.horizon, cfg.gamma, cfg.terminal_value
            )
            pi_actions = pi_actions.reshape(batch, cfg.num_policy, cfg.horizon, action_dim)
            pi_returns = pi_returns.reshape(batch, cfg.num_policy)
        start = repeat_state(state, cfg.num_samples)
        for _ in range(cfg.iterations):
            samples = dist.sample(cfg.num_samples)
            returns = imagined_return(
                self.model, start, samples.flatten(0, 1), cfg.gamma, cfg.terminal_value
            ).reshape(batch, cfg.num_samples)
            if cfg.num_policy > 0:
                samples = torch.cat([samples, pi_actions], dim=1)
                returns = torch.cat([returns, pi_returns], dim=1)
            dist.refit(samples, self.weights(returns))
        return dist.mode()

    def act(self, state: State) -> torch.Tensor:
        """The action to execute now for each of the ``B`` states: ``[B, A]``."""
        return self.plan(state)

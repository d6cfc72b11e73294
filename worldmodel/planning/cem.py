"""Cross-entropy method (CEM) planning over the learned model.

Samples action sequences from a per-step Gaussian (continuous) or categorical
(discrete) distribution, keeps the ``num_elites`` best by imagined return (plus the
critic's terminal value), and refits the distribution to them, uniformly weighted. Warm
starts and the actor's samples come from :class:`IterativeSamplingPlanner`.
(Rubinstein 1999; as a latent planner in PlaNet, Hafner et al. 2019; TD-MPC2.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldmodel.planning.base import LatentModel, PlannerConfigError
from worldmodel.planning.sampling import IterativeSamplingPlanner, SamplingConfig


@dataclass
class CEMConfig(SamplingConfig):
    """CEM settings: ``num_elites`` best sequences (out of ``num_samples + num_policy``)."""

    num_elites: int = 8


class CEMPlanner(IterativeSamplingPlanner):
    """CEM planner with one ``act(state [B, ...]) -> [B, A]`` method."""

    refit_std = True

    def __init__(self, model: LatentModel, config: CEMConfig | None = None) -> None:
        config = config or CEMConfig()
        if not 0 < config.num_elites <= config.num_samples + config.num_policy:
            raise PlannerConfigError(
                f"planner setting num_elites={config.num_elites} must be in [1, num_samples + num_policy]"
            )
        super().__init__(model, config)

    def weights(self, returns: torch.Tensor) -> torch.Tensor:
        """Uniform weights over the top-``num_elites`` returns of each row: ``[B, N] -> [B, N]``."""
        elite = returns.topk(self.config.num_elites, dim=1).indices
        weights = torch.zeros_like(returns)
        weights.scatter_(1, elite, 1.0 / self.config.num_elites)
        return weights

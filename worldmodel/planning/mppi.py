"""Model predictive path integral control (MPPI) over the learned model.

Every sampled sequence is weighted by ``exp(z / temperature)``, ``z`` its return minus
the best return, divided by the interquartile range of the environment's population (so
the temperature is unit-free and a few outliers, e.g. poor actor samples, do not flatten
the weights), and the plan's mean becomes the weighted mean of the samples (Williams et
al. 2017); as in TD-MPC2 the standard deviation is refitted with the same weights (floored
at ``min_std``), which makes the plan far more precise than the fixed noise of classic
MPPI at the same sample budget. Discrete actions use the weighted action frequencies. Warm starts and the
actor's samples come from :class:`IterativeSamplingPlanner`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldmodel.planning.base import LatentModel, check_positive
from worldmodel.planning.sampling import IterativeSamplingPlanner, SamplingConfig


@dataclass
class MPPIConfig(SamplingConfig):
    """MPPI settings: ``temperature`` in interquartile ranges of the population's return
    (smaller = greedier)."""

    temperature: float = 0.25


class MPPIPlanner(IterativeSamplingPlanner):
    """MPPI planner with one ``act(state [B, ...]) -> [B, A]`` method."""

    refit_std = True

    def __init__(self, model: LatentModel, config: MPPIConfig | None = None) -> None:
        config = config or MPPIConfig()
        check_positive(temperature=config.temperature)
        super().__init__(model, config)

    def weights(self, returns: torch.Tensor) -> torch.Tensor:
        """Softmax of ``(R - max R) / (IQR(R) * temperature)`` over each row: ``[B, N] -> [B, N]``."""
        quartiles = returns.quantile(torch.tensor([0.25, 0.75], device=returns.device), dim=1)
        iqr = (quartiles[1] - quartiles[0]).unsqueeze(1)
        z = (returns - returns.max(1, keepdim=True).values) / (iqr + 1e-8)
        return torch.softmax(z / self.config.temperature, dim=1)

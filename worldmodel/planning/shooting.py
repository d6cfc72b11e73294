"""MPC by random shooting (the seed's ``mpc_planning``).

Sample ``num_samples`` action sequences per environment uniformly at random (optionally
mixing in ``num_policy`` closed-loop actor rollouts), roll them out in imagination, score
each by its discounted predicted reward, stopping at the first predicted termination
(continue probability below 0.5), plus optionally the critic's value at the horizon;
execute the first action of the best sequence and replan at the next step.
(Nagabandi et al. 2018, "Neural Network Dynamics for Model-Based Deep RL".)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldmodel.planning.base import (
    LatentModel,
    PlannerConfigError,
    State,
    batch_size,
    check_positive,
    imagined_return,
    one_hot,
    policy_rollout,
    repeat_state,
)


@dataclass
class ShootingConfig:
    """Random-shooting settings."""

    horizon: int = 8
    num_samples: int = 128
    num_policy: int = 0
    gamma: float = 0.99
    terminal_value: bool = False


def random_sequences(
    batch: int, n: int, horizon: int, action_dim: int, discrete: bool, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Uniformly random action sequences ``[batch, n, horizon, action_dim]`` (one-hot if discrete,
    else uniform in ``[-1, 1]``)."""
    shape = (batch, n, horizon)
    if discrete:
        return one_hot(torch.randint(action_dim, shape, device=device), action_dim)
    return torch.rand(*shape, action_dim, device=device) * 2.0 - 1.0


class ShootingPlanner:
    """Random-shooting MPC with one ``act(state [B, ...]) -> [B, A]`` method."""

    def __init__(self, model: LatentModel, config: ShootingConfig | None = None) -> None:
        config = config or ShootingConfig()
        check_positive(horizon=config.horizon, num_samples=config.num_samples, gamma=config.gamma)
        if config.num_policy < 0:
            raise PlannerConfigError(f"planner setting num_policy={config.num_policy} must be >= 0")
        self.model, self.config = model, config

    def reset(self) -> None:
        """Random shooting keeps no plan between steps."""

    @torch.no_grad()
    def act(self, state: State) -> torch.Tensor:
        """First action of the best imagined sequence for each of the ``B`` states: ``[B, A]``."""
        cfg, model = self.config, self.model
        batch = batch_size(state)
        device = next(iter(state.values())).device
        seqs = random_sequences(batch, cfg.num_samples, cfg.horizon, model.action_dim, model.discrete, device)
        returns = imagined_return(
            model,
            repeat_state(state, cfg.num_samples),
            seqs.flatten(0, 1),
            cfg.gamma,
            cfg.terminal_value,
            hard_stop=True,
        ).reshape(batch, cfg.num_samples)
        if cfg.num_policy > 0:
            pi_seqs, pi_returns = policy_rollout(
                model, repeat_state(state, cfg.num_policy), cfg.horizon, cfg.gamma, cfg.terminal_value, True
            )
            seqs = torch.cat([seqs, pi_seqs.reshape(batch, cfg.num_policy, cfg.horizon, -1)], dim=1)
            returns = torch.cat([returns, pi_returns.reshape(batch, cfg.num_policy)], dim=1)
        best = returns.argmax(dim=1)
        return seqs[torch.arange(batch, device=device), best, 0]

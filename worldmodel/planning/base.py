"""The protocol every planner plans against, and the imagined-return computation they share.

A planner never sees networks, only a :class:`LatentModel`: something that can take an
imagined step in latent space (prior only, no observation), score a latent state with a
critic and propose actions with an actor. The Dreamer agent is adapted to it in
:mod:`worldmodel.planning.dreamer`; the tests use small hand-written models with known
optima.

States are dicts of tensors with a leading batch dimension ``[N, ...]`` (the RSSM's
``{"deter", "stoch", ...}``). Discrete actions are one-hot floats ``[N, A]``; continuous
actions live in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch

State = Mapping[str, torch.Tensor]


class PlannerConfigError(ValueError):
    """A planner was built with an impossible setting (named in the message)."""


@runtime_checkable
class LatentModel(Protocol):
    """An imagined environment in latent space.

    Attributes:
        action_dim: ``A``, the size of an action vector.
        discrete: whether actions are one-hot vectors over ``A`` choices.
    """

    action_dim: int
    discrete: bool

    def step(self, state: State, action: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        """One imagined step: ``state [N, ...]``, ``action [N, A]`` -> ``(next_state, reward [N],
        cont [N])``, where ``cont`` is the predicted probability that the episode continues."""
        ...

    def value(self, state: State) -> torch.Tensor:
        """Critic value of ``state [N, ...]`` -> ``[N]``."""
        ...

    def policy_sample(self, state: State) -> torch.Tensor:
        """One action per state from the actor: ``[N, ...]`` -> ``[N, A]``."""
        ...

    def policy_probs(self, state: State) -> torch.Tensor:
        """Actor probabilities over the ``A`` discrete actions, ``[N, A]`` (discrete models only)."""
        ...


@runtime_checkable
class Planner(Protocol):
    """Anything that turns a batch of latent states into one action per state."""

    def act(self, state: State) -> torch.Tensor:
        """``state [B, ...]`` -> action ``[B, A]`` to execute now."""
        ...

    def reset(self) -> None:
        """Forget any plan carried over between calls (call at episode start)."""
        ...


def batch_size(state: State) -> int:
    """The leading dimension ``B`` shared by every tensor of ``state``."""
    return next(iter(state.values())).shape[0]


def repeat_state(state: State, n: int) -> dict[str, torch.Tensor]:
    """Repeat each of the ``B`` states ``n`` times: ``[B, ...]`` -> ``[B * n, ...]``, row ``b * n + i``
    holding copy ``i`` of state ``b``."""
    return {k: v.repeat_interleave(n, dim=0) for k, v in state.items()}


def index_state(state: State, index: torch.Tensor | slice | int) -> dict[str, torch.Tensor]:
    """Select rows of a batched state (an ``int`` keeps the batch dimension)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return {k: v[index] for k, v in state.items()}


def cat_states(states: list[State]) -> dict[str, torch.Tensor]:
    """Concatenate batched states along the batch dimension."""
    return {k: torch.cat([s[k] for s in states], dim=0) for k in states[0]}


def one_hot(index: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer indices ``[...]`` -> one-hot floats ``[..., num_classes]``."""
    return torch.nn.functional.one_hot(index.long(), num_classes).float()


def imagined_return(
    model: LatentModel,
    state: State,
    actions: torch.Tensor,
    gamma: float,
    terminal_value: bool = True,
    hard_stop: bool = False,
) -> torch.Tensor:
    """Discounted return of open-loop action sequences under the model.

    ``R = sum_t gamma^t w_t r_{t+1} + gamma^H w_H V(s_H)`` with ``w_0 = 1`` and
    ``w_{t+1} = w_t c_{t+1}``: a reward counts only while the imagined episode is alive.
    With ``hard_stop`` the continue flag is thresholded at 0.5, so everything after a
    predicted termination is ignored (the seed's MPC rule).

    Args:
        state: ``[N, ...]`` start states (one per sequence).
        actions: ``[N, H, A]`` action sequences.
    Returns:
        ``[N]`` returns.
    """
    return _rollout(model, state, actions.shape[1], gamma, actions, terminal_value, hard_stop)[1]


def policy_rollout(
    model: LatentModel,
    state: State,
    horizon: int,
    gamma: float,
    terminal_value: bool = True,
    hard_stop: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll the actor forward in imagination (closed loop).

    Args:
        state: ``[N, ...]``.
    Returns:
        ``(actions [N, H, A], returns [N])`` with the same return as :func:`imagined_return`.
    """
    return _rollout(model, state, horizon, gamma, None, terminal_value, hard_stop)


def _rollout(
    model: LatentModel,
    state: State,
    horizon: int,
    gamma: float,
    actions: torch.Tensor | None,
    terminal_value: bool,
    hard_stop: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    taken = []
    total = torch.zeros(batch_size(state), device=next(iter(state.values())).device)
    alive = torch.ones_like(total)
    for t in range(horizon):
        action = model.policy_sample(state) if actions is None else actions[:, t]
        taken.append(action)
        state, reward, cont = model.step(state, action)
        total = total + gamma**t * alive * reward
        alive = alive * ((cont > 0.5).float() if hard_stop else cont)
    if terminal_value:
        total = total + gamma**horizon * alive * model.value(state)
    return torch.stack(taken, dim=1), total


def check_positive(**values: float) -> None:
    """Raise :class:`PlannerConfigError` naming the first setting that is not positive."""
    for name, value in values.items():
        if not value > 0:
            raise PlannerConfigError(f"planner setting {name}={value} must be positive")

"""World models as affordance detectors: what each action would lead to, and how good it is.

For a latent state and candidate actions, :func:`detect_affordances` imagines one step
per action with the learned model and reports the predicted next state, immediate
reward, continue probability, the critic's value of the next state and the total
(pragmatic) value ``reward + gamma * cont * value`` (the seed's ``reward + gamma * value``
with termination taken into account). On top, it ranks actions by a negative *expected
free energy*::

    score(a) = pragmatic(a) + epistemic_weight * epistemic(a)

where the epistemic value is the model's expected information gain for that action (for
the Dreamer adapter: ``KL(posterior from the predicted observation || prior)``). With a
stochastic prior the quantities are averaged over ``samples`` imagined outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from worldmodel.planning.base import LatentModel, State, batch_size, index_state, repeat_state


class AffordanceError(ValueError):
    """Bad input to affordance detection (named in the message)."""


@dataclass
class AffordanceConfig:
    """Settings of affordance detection (``epistemic_weight`` 0 = purely pragmatic)."""

    gamma: float = 0.99
    epistemic_weight: float = 0.0
    samples: int = 1


@dataclass
class Affordance:
    """What one candidate action affords from one state.

    ``action [A]``; ``next_state`` holds ``[1, ...]`` tensors (the first imagined sample).
    """

    action: torch.Tensor
    next_state: dict[str, torch.Tensor]
    reward: float
    cont: float
    value: float
    total: float
    epistemic: float
    score: float


@torch.no_grad()
def detect_affordances(
    model: LatentModel, state: State, actions: torch.Tensor, config: AffordanceConfig | None = None
) -> list[Affordance]:
    """Imagine one step for every candidate action from one state.

    Args:
        model: a :class:`LatentModel` (for a Dreamer agent use
            :class:`worldmodel.planning.dreamer.DreamerLatentModel`); the epistemic term
            needs a model with an ``epistemic(state, action) -> [N]`` method.
        state: one latent state, tensors ``[1, ...]``.
        actions: ``[K, A]`` candidate actions.
    Returns:
        ``K`` affordances in the order of ``actions`` (see :func:`rank_affordances`).
    """
    cfg = config or AffordanceConfig()
    if batch_size(state) != 1:
        raise AffordanceError(
            f"detect_affordances takes one state [1, ...], got a batch of {batch_size(state)}"
        )
    if actions.dim() != 2 or actions.shape[1] != model.action_dim:
        raise AffordanceError(f"actions must be [K, {model.action_dim}], got {tuple(actions.shape)}")
    if cfg.samples < 1:
        raise AffordanceError(f"affordance setting samples={cfg.samples} must be >= 1")
    if cfg.epistemic_weight and not hasattr(model, "epistemic"):
        raise AffordanceError(
            f"{type(model).__name__} has no epistemic(state, action) method; set epistemic_weight=0"
        )
    k, n = actions.shape[0], cfg.samples
    start = repeat_state(state, k * n)  # row (i * n + j): action i, sample j
    tiled = actions.repeat_interleave(n, dim=0)
    next_state, reward, cont = model.step(start, tiled)
    value = model.value(next_state)
    epistemic = model.epistemic(start, tiled) if hasattr(model, "epistemic") else torch.zeros_like(reward)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(k, n).float().mean(1)

    reward, cont, value, epistemic = mean(reward), mean(cont), mean(value), mean(epistemic)
    total = reward + cfg.gamma * cont * value
    score = total + cfg.epistemic_weight * epistemic
    return [
        Affordance(
            actions[i],
            index_state(next_state, i * n),
            float(reward[i]),
            float(cont[i]),
            float(value[i]),
            float(total[i]),
            float(epistemic[i]),
            float(score[i]),
        )
        for i in range(k)
    ]


def rank_affordances(affordances: Sequence[Affordance]) -> list[int]:
    """Indices of ``affordances`` from the highest score (lowest expected free energy) down."""
    return sorted(range(len(affordances)), key=lambda i: -affordances[i].score)


def candidate_actions(model: LatentModel, state: State, num_continuous: int = 8) -> torch.Tensor:
    """Default candidates: all one-hot actions ``[A, A]`` (discrete), or ``num_continuous``
    actor samples ``[K, A]`` (continuous)."""
    if model.discrete:
        return torch.eye(model.action_dim, device=next(iter(state.values())).device)
    return model.policy_sample(repeat_state(state, num_continuous))


def affordances_of_episode(
    logdir: str, states: int = 5, every: int = 10, config: AffordanceConfig | None = None
) -> list[dict]:
    """Play one greedy evaluation episode with a run's latest checkpoint and detect the
    affordances of every ``every``-th latent state (at most ``states`` of them).

    Returns one row per state: ``{"step", "taken", "affordances": [ranked dicts]}``, where
    ``taken`` is the action the policy executed and each affordance dict holds
    ``action``, ``score``, ``total``, ``reward``, ``cont``, ``value`` and ``epistemic``.
    """
    from worldmodel.evaluate import loaded_run
    from worldmodel.planning.dreamer import DreamerLatentModel
    from worldmodel.train import play_episodes

    if states < 1 or every < 1:
        raise AffordanceError(f"states={states} and every={every} must be >= 1")
    recorded: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
    with loaded_run(logdir) as (_, agent, envs, _):

        def act(obs: dict[str, torch.Tensor], state):
            action, state = agent.policy(obs, state, mode="greedy")
            recorded.append(({k: v.clone() for k, v in state["rssm"].items()}, action[0].clone()))
            return action, state

        play_episodes(agent, envs, 1, act=act)
    model = DreamerLatentModel.from_agent(agent)
    rows = []
    for step in range(0, len(recorded), every)[:states]:
        latent, taken = recorded[step]
        affs = detect_affordances(model, latent, candidate_actions(model, latent), config)
        ranked = [
            {
                "action": [round(x, 3) for x in affs[i].action.tolist()],
                "score": affs[i].score,
                "total": affs[i].total,
                "reward": affs[i].reward,
                "cont": affs[i].cont,
                "value": affs[i].value,
                "epistemic": affs[i].epistemic,
            }
            for i in rank_affordances(affs)
        ]
        rows.append({"step": step, "taken": [round(x, 3) for x in taken.tolist()], "affordances": ranked})
    return rows

"""Affordance detection and the Dreamer adapter (worldmodel.affordances, worldmodel.planning.dreamer)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from torch import nn

from worldmodel.affordances import (
    AffordanceConfig,
    AffordanceError,
    candidate_actions,
    detect_affordances,
    rank_affordances,
)
from worldmodel.agent import Agent
from worldmodel.planning import CEMConfig, CEMPlanner, MCTSConfig, MCTSPlanner
from worldmodel.planning.dreamer import PLANNER_ACTORS, AgentAdapterError, DreamerLatentModel, planner_actor
from worldmodel.planning.toy_models import QuadraticModel, TableModel
from worldmodel.presets import dreamer_config
from worldmodel.world_model import WorldModel


def toy_world() -> TableModel:
    """Node 0 with three actions: 0 -> node 1 (reward 0, value 5), 1 -> node 2 (reward 1,
    value 0, terminal), 2 -> node 0 (reward 0.5, value 2)."""
    return TableModel(
        next_node=torch.tensor([[1, 2, 0], [1, 1, 1], [2, 2, 2]]),
        reward=torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
        cont=torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]),
        value=torch.tensor([2.0, 5.0, 7.0]),
    )


def test_affordances_hand_computed_and_ranked() -> None:
    model = toy_world()
    affs = detect_affordances(model, TableModel.initial_state(1), torch.eye(3), AffordanceConfig(gamma=0.9))
    assert [a.reward for a in affs] == [0.0, 1.0, 0.5]
    assert [a.cont for a in affs] == [1.0, 0.0, 1.0]
    assert [a.value for a in affs] == [5.0, 7.0, 2.0]
    assert [a.total for a in affs] == pytest.approx([4.5, 1.0, 0.5 + 0.9 * 2.0])
    assert [int(a.next_state["node"]) for a in affs] == [1, 2, 0]
    # The most rewarding action overall (delayed value, not the immediate reward) comes first.
    assert rank_affordances(affs) == [0, 2, 1]


def test_epistemic_weight_changes_the_ranking() -> None:
    model = QuadraticModel(torch.tensor([1.0, 0.0]), discrete=True, epistemic=torch.tensor([0.0, 3.0]))
    state = QuadraticModel.initial_state(1)
    pragmatic = detect_affordances(model, state, torch.eye(2))
    assert rank_affordances(pragmatic) == [0, 1]
    curious = detect_affordances(model, state, torch.eye(2), AffordanceConfig(epistemic_weight=0.5))
    assert [a.score for a in curious] == pytest.approx([1.0, 1.5])
    assert rank_affordances(curious) == [1, 0]


def test_affordance_input_errors() -> None:
    model = toy_world()
    with pytest.raises(AffordanceError, match="one state"):
        detect_affordances(model, TableModel.initial_state(2), torch.eye(3))
    with pytest.raises(AffordanceError, match=r"\[K, 3\]"):
        detect_affordances(model, TableModel.initial_state(1), torch.eye(2))
    with pytest.raises(AffordanceError, match="epistemic"):
        detect_affordances(
            model, TableModel.initial_state(1), torch.eye(3), AffordanceConfig(epistemic_weight=1)
        )


class _Actor(nn.Module):
    def __init__(self, feat: int, actions: int) -> None:
        super().__init__()
        self.net = nn.Linear(feat, actions)

    def forward(self, feat: torch.Tensor) -> torch.distributions.OneHotCategorical:
        return torch.distributions.OneHotCategorical(logits=self.net(feat))


def tiny_dreamer(obs_space: dict) -> DreamerLatentModel:
    cfg = dreamer_config(
        "xs",
        [
            "model.deter=32",
            "model.hidden=32",
            "model.stoch=4",
            "model.classes=4",
            "model.units=32",
            "model.cnn_depth=4",
        ],
    )
    wm = WorldModel(obs_space, 3, cfg.model, cfg.loss)
    critic = nn.Linear(wm.rssm.feat_dim, 1)
    return DreamerLatentModel(wm, _Actor(wm.rssm.feat_dim, 3), lambda f: critic(f).squeeze(-1), discrete=True)


@pytest.mark.parametrize("obs_space", [{"vector": (5,)}, {"image": (64, 64, 3)}])
def test_dreamer_adapter_shapes_and_planners(obs_space) -> None:
    torch.manual_seed(0)
    model = tiny_dreamer(obs_space)
    state = model.rssm.initial_state(2)
    next_state, reward, cont = model.step(state, torch.eye(3)[:2])
    assert next_state["deter"].shape == (2, 32) and reward.shape == (2,) and cont.shape == (2,)
    assert ((cont > 0) & (cont < 1)).all()
    assert model.value(state).shape == (2,) and model.policy_probs(state).shape == (2, 3)
    epistemic = model.epistemic(state, torch.eye(3)[:2])
    assert epistemic.shape == (2,) and (epistemic >= 0).all()
    for planner in (
        CEMPlanner(model, CEMConfig(horizon=3, iterations=2, num_samples=16, num_elites=4, num_policy=4)),
        MCTSPlanner(model, MCTSConfig(num_simulations=4)),
    ):
        action = planner.act(state)
        assert action.shape == (2, 3) and torch.equal(action.sum(-1), torch.ones(2))
    affs = detect_affordances(
        model,
        model.rssm.initial_state(1),
        candidate_actions(model, state),
        AffordanceConfig(epistemic_weight=1.0, samples=3),
    )
    assert len(affs) == 3 and all(a.score == pytest.approx(a.total + a.epistemic) for a in affs)


TINY_AGENT = ["model.deter=32", "model.hidden=32", "model.stoch=4", "model.classes=4", "model.units=32"]


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,))])
@pytest.mark.parametrize("planner", ["shooting", "cem", "mppi", "mcts"])
def test_planner_actor_drives_a_dreamer_agent(space, planner) -> None:
    torch.manual_seed(0)
    agent = Agent({"vector": (4,)}, space, dreamer_config("xs", TINY_AGENT))
    model = DreamerLatentModel.from_agent(agent)
    assert model.discrete == isinstance(space, gym.spaces.Discrete)
    small = {
        "shooting": ["horizon=2", "num_samples=8"],
        "cem": ["horizon=2", "iterations=2", "num_samples=8", "num_elites=2", "num_policy=2"],
        "mppi": ["horizon=2", "iterations=2", "num_samples=8", "num_policy=2"],
        "mcts": ["num_simulations=3", "num_sampled_actions=2"],
    }
    act = planner_actor(planner, small[planner])(agent)
    obs = {"vector": torch.randn(2, 4), "is_first": torch.tensor([True, True])}
    action, state = act(obs, None)
    agent.spec.check(action)
    assert action.shape == (2, agent.spec.dim) and state["rssm"]["deter"].shape == (2, 32)
    action, state = act({"vector": torch.randn(2, 4), "is_first": torch.tensor([False, False])}, state)
    agent.spec.check(action)
    assert set(PLANNER_ACTORS) == {"shooting", "cem", "mppi", "mcts"}


def test_from_agent_rejects_other_objects() -> None:
    with pytest.raises(AgentAdapterError, match="not a Dreamer agent"):
        DreamerLatentModel.from_agent(object())

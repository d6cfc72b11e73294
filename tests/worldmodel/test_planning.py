"""Planners against latent models with known optima (worldmodel.planning)."""

from __future__ import annotations

import math

import pytest
import torch

from worldmodel.config import ConfigError
from worldmodel.planning import (
    CEMConfig,
    CEMPlanner,
    MCTSConfig,
    MCTSPlanner,
    MPPIConfig,
    MPPIPlanner,
    PlannerConfigError,
    ShootingConfig,
    ShootingPlanner,
    imagined_return,
    make_planner,
    puct_scores,
)
from worldmodel.planning.mcts import MinMaxStats
from worldmodel.planning.population import CategoricalSequence, GaussianSequence
from worldmodel.planning.toy_models import QuadraticModel, TableModel, trap_tree

TARGET = torch.tensor([0.5, -0.3, 0.8])


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_imagined_return_hand_computed() -> None:
    # Rewards 1, 2, 3 on a chain; continue 0.5 after the first step; terminal value 10.
    model = TableModel(
        next_node=torch.tensor([[1], [2], [3], [3]]),
        reward=torch.tensor([[1.0], [2.0], [3.0], [0.0]]),
        cont=torch.tensor([[0.5], [1.0], [1.0], [1.0]]),
        value=torch.tensor([0.0, 0.0, 0.0, 10.0]),
    )
    actions = torch.ones(1, 3, 1)
    gamma = 0.9
    expected = 1 + gamma * 0.5 * 2 + gamma**2 * 0.5 * 3 + gamma**3 * 0.5 * 10
    got = imagined_return(model, TableModel.initial_state(1), actions, gamma)
    assert got.item() == pytest.approx(expected)
    # A hard stop drops everything after the predicted termination (cont 0.5 is not > 0.5).
    stopped = imagined_return(model, TableModel.initial_state(1), actions, gamma, hard_stop=True)
    assert stopped.item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "planner_cls,config",
    [
        (CEMPlanner, CEMConfig(horizon=3, iterations=6, num_samples=128, num_elites=16, num_policy=8)),
        (MPPIPlanner, MPPIConfig(horizon=3, iterations=8, num_samples=128, num_policy=8)),
    ],
)
def test_sampling_planners_find_quadratic_optimum(planner_cls, config) -> None:
    model = QuadraticModel(TARGET)
    planner = planner_cls(model, config)
    action = planner.act(QuadraticModel.initial_state(4))
    assert action.shape == (4, 3)
    assert torch.allclose(action, TARGET.expand(4, 3), atol=0.08)
    # Random shooting with the same budget is clearly worse in 3 dimensions.
    shooting = ShootingPlanner(model, ShootingConfig(horizon=3, num_samples=64))
    shooting = shooting.act(QuadraticModel.initial_state(4))
    assert (shooting - TARGET).norm(dim=-1).mean() > (action - TARGET).norm(dim=-1).mean()


@pytest.mark.parametrize(
    "planner_cls,config",
    [
        (CEMPlanner, CEMConfig(horizon=4, iterations=4, num_samples=64, num_elites=8, num_policy=4)),
        (MPPIPlanner, MPPIConfig(horizon=4, iterations=4, num_samples=64, num_policy=4)),
        (ShootingPlanner, ShootingConfig(horizon=4, num_samples=64)),
    ],
)
def test_planners_pick_best_discrete_action(planner_cls, config) -> None:
    model = QuadraticModel(torch.tensor([0.0, 1.0, 0.2, -1.0]), discrete=True)
    action = planner_cls(model, config).act(QuadraticModel.initial_state(3))
    assert torch.equal(action, torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(3, 4))


def test_warm_start_shifts_previous_plan() -> None:
    model = QuadraticModel(TARGET)
    config = CEMConfig(horizon=3, iterations=3, num_samples=64, num_elites=8, num_policy=0)
    planner = CEMPlanner(model, config)
    planner.act(QuadraticModel.initial_state(2))
    mean_before = planner._dist.mean.clone()
    planner._dist.shift()
    assert torch.equal(planner._dist.mean[:, :2], mean_before[:, 1:])
    assert torch.equal(planner._dist.mean[:, 2], torch.zeros(2, 3))
    planner.reset()
    assert planner._dist is None


def test_gaussian_refit_matches_weighted_moments() -> None:
    dist = GaussianSequence(batch=1, horizon=1, action_dim=1, init_std=1.0, min_std=0.01)
    samples = torch.tensor([0.0, 1.0, 3.0]).reshape(1, 3, 1, 1)
    dist.refit(samples, torch.tensor([[0.5, 0.25, 0.25]]))
    assert dist.mean.item() == pytest.approx(1.0)  # 0.25 + 0.75
    assert dist.std.item() == pytest.approx(math.sqrt(0.5 * 1 + 0.25 * 0 + 0.25 * 4))


def test_categorical_refit_with_smoothing() -> None:
    dist = CategoricalSequence(batch=1, horizon=1, action_dim=2, smoothing=0.1)
    samples = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    dist.refit(samples, torch.tensor([[1.0, 0.0]]))
    assert dist.probs[0, 0].tolist() == pytest.approx([0.95, 0.05])


def test_shooting_stops_at_predicted_termination() -> None:
    # Action 0: reward 1 and the episode ends; action 1: reward 0.6 per step and it goes on.
    model = TableModel(
        next_node=torch.tensor([[1, 0], [1, 1]]),
        reward=torch.tensor([[1.0, 0.6], [5.0, 5.0]]),
        cont=torch.tensor([[0.0, 1.0], [0.0, 0.0]]),
    )
    planner = ShootingPlanner(model, ShootingConfig(horizon=3, num_samples=256, gamma=1.0))
    action = planner.act(TableModel.initial_state(2))
    # Without the stop the dead node's reward 5 would make action 0 look best.
    assert torch.equal(action, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_puct_score_hand_computed() -> None:
    prior = torch.tensor([0.6, 0.4])
    visits = torch.tensor([3.0, 0.0])
    q = torch.tensor([0.5, 0.0])
    scores = puct_scores(prior, visits, q, parent_visits=4, pb_c_init=1.25, pb_c_base=19652.0)
    pb_c = math.log((4 + 19652 + 1) / 19652) + 1.25  # 1.250254...
    assert scores.tolist() == pytest.approx([0.5 + 0.6 * pb_c * 2 / 4, 0.4 * pb_c * 2 / 1])
    assert scores.tolist() == pytest.approx([0.875076, 1.000203], abs=1e-6)


def test_min_max_stats_normalises() -> None:
    stats = MinMaxStats()
    stats.update(2.0)
    assert stats.normalize(2.0) == 2.0  # a single value cannot be normalised
    stats.update(6.0)
    assert stats.normalize(3.0) == pytest.approx(0.25)


def test_mcts_beats_greedy_on_trap_tree() -> None:
    model = trap_tree()
    state = TableModel.initial_state(3)
    greedy = ShootingPlanner(model, ShootingConfig(horizon=1, num_samples=32)).act(state)
    assert torch.equal(greedy.argmax(-1), torch.zeros(3, dtype=torch.long))  # one-step search takes the bait
    planner = MCTSPlanner(model, MCTSConfig(num_simulations=32, gamma=0.9, exploration_fraction=0.0))
    actions, visits, values = planner.search(state)
    assert torch.equal(planner.act(state).argmax(-1), torch.ones(3, dtype=torch.long))
    assert (visits[:, 1] > visits[:, 0]).all()
    assert visits.sum(-1).tolist() == [32.0] * 3
    assert values.max().item() <= 0.9 * 10


def test_mcts_visit_policy_temperature() -> None:
    planner = MCTSPlanner(trap_tree(), MCTSConfig(temperature=1.0))
    visits = torch.tensor([[1.0, 3.0]])
    assert planner.visit_policy(visits).tolist()[0] == pytest.approx([0.25, 0.75])
    planner.config.temperature = 0.5
    assert planner.visit_policy(visits).tolist()[0] == pytest.approx([0.1, 0.9])


def test_mcts_continuous_sampled_actions() -> None:
    model = QuadraticModel(TARGET)
    config = MCTSConfig(num_simulations=64, num_sampled_actions=8, gamma=0.1, exploration_fraction=0.0)
    planner = MCTSPlanner(model, config)
    actions, visits, _ = planner.search(QuadraticModel.initial_state(4))
    assert actions.shape == (4, 8, 3)
    # With a short effective horizon the search concentrates on the best sampled candidates:
    # the best gets more than a uniform share of visits and the visit-weighted cost is far
    # below the average cost of the candidates.
    cost = ((actions - TARGET) ** 2).sum(-1)
    assert (visits[torch.arange(4), cost.argmin(-1)] > 64 / 8).all()
    weighted = (visits * cost).sum(-1) / visits.sum(-1)
    assert (weighted < 0.7 * cost.mean(-1)).all()


def test_make_planner_and_bad_settings() -> None:
    planner = make_planner("cem", QuadraticModel(TARGET), ["horizon=2", "num_elites=4"])
    assert isinstance(planner, CEMPlanner) and planner.config.horizon == 2
    with pytest.raises(PlannerConfigError, match="unknown planner 'beam'"):
        make_planner("beam", QuadraticModel(TARGET))
    with pytest.raises(ConfigError, match="horizn"):
        make_planner("mppi", QuadraticModel(TARGET), ["horizn=2"])
    with pytest.raises(PlannerConfigError, match="num_elites=999"):
        CEMPlanner(QuadraticModel(TARGET), CEMConfig(num_elites=999))
    with pytest.raises(PlannerConfigError, match="temperature=0"):
        MPPIPlanner(QuadraticModel(TARGET), MPPIConfig(temperature=0.0))

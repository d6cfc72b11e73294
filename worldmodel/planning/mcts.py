"""MuZero-style Monte-Carlo tree search over the learned model, batched over environments.

Each node holds a latent state; each edge holds the model's predicted reward and
continue probability. Selection maximises the pUCT score (Schrittwieser et al. 2020,
appendix B)::

    score(s, a) = Q_norm(s, a) + P(s, a) * sqrt(N(s)) / (1 + N(s, a))
                  * (c_init + log((N(s) + c_base + 1) / c_base))

with ``Q(s, a) = r(s, a) + gamma * c(s, a) * V(child)`` min-max normalised over the
values seen in this tree (0 for unvisited children), ``P`` the actor's prior (with
Dirichlet noise at the root) and the critic's value at the leaves. The executed action
is drawn from the root's visit counts with a temperature (0 = most visited).

Discrete actions expand all ``A`` one-hot children with the actor's probabilities as the
prior. Continuous actions expand ``num_sampled_actions`` actions sampled from the actor
with a uniform prior over them (Sampled MuZero, Hubert et al. 2021).

The tree walk is Python per environment; every model call (one ``step``, ``value`` and
actor call per simulation) is batched over the ``B`` environments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from worldmodel.planning.base import (
    LatentModel,
    PlannerConfigError,
    State,
    batch_size,
    cat_states,
    check_positive,
    index_state,
    repeat_state,
)


@dataclass
class MCTSConfig:
    """MCTS settings (MuZero's constants; 16 simulations instead of 50 for the CPU)."""

    num_simulations: int = 16
    gamma: float = 0.99
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    dirichlet_alpha: float = 0.3
    exploration_fraction: float = 0.25
    temperature: float = 0.0
    num_sampled_actions: int = 8


class MinMaxStats:
    """Running minimum and maximum of the Q-values seen in one tree."""

    def __init__(self) -> None:
        self.minimum, self.maximum = math.inf, -math.inf

    def update(self, value: float) -> None:
        self.minimum, self.maximum = min(self.minimum, value), max(self.maximum, value)

    def normalize(self, value: float) -> float:
        """Map ``value`` to ``[0, 1]`` once two different values have been seen (else unchanged)."""
        if self.maximum > self.minimum:
            return (value - self.minimum) / (self.maximum - self.minimum)
        return value


def puct_scores(
    prior: torch.Tensor,
    visits: torch.Tensor,
    q_normalized: torch.Tensor,
    parent_visits: int,
    pb_c_init: float = 1.25,
    pb_c_base: float = 19652.0,
) -> torch.Tensor:
    """The pUCT score of every child of one node.

    Args:
        prior: ``[K]`` prior probabilities ``P(s, a)``.
        visits: ``[K]`` child visit counts ``N(s, a)``.
        q_normalized: ``[K]`` normalised action values (0 for unvisited children).
        parent_visits: ``N(s)``.
    Returns:
        ``[K]`` scores.
    """
    pb_c = math.log((parent_visits + pb_c_base + 1.0) / pb_c_base) + pb_c_init
    return q_normalized + prior * pb_c * math.sqrt(parent_visits) / (1.0 + visits)


class Node:
    """One tree node: the edge statistics into it and its expanded children."""

    def __init__(self, prior: float) -> None:
        self.prior = prior
        self.visit_count = 0
        self.value_sum = 0.0
        self.reward = 0.0
        self.cont = 1.0
        self.state: dict[str, torch.Tensor] | None = None
        self.actions: torch.Tensor | None = None  # [K, A]
        self.children: list[Node] = []

    def expanded(self) -> bool:
        return bool(self.children)

    def value(self) -> float:
        return self.value_sum / self.visit_count if self.visit_count else 0.0

    def expand(self, state: dict[str, torch.Tensor], actions: torch.Tensor, prior: torch.Tensor) -> None:
        """``state [1, ...]``, ``actions [K, A]``, ``prior [K]``."""
        self.state, self.actions = state, actions
        self.children = [Node(p) for p in prior.tolist()]


class MCTSPlanner:
    """MuZero-style MCTS with one ``act(state [B, ...]) -> [B, A]`` method."""

    def __init__(self, model: LatentModel, config: MCTSConfig | None = None) -> None:
        config = config or MCTSConfig()
        check_positive(
            num_simulations=config.num_simulations,
            gamma=config.gamma,
            num_sampled_actions=config.num_sampled_actions,
            dirichlet_alpha=config.dirichlet_alpha,
        )
        if config.temperature < 0 or not 0 <= config.exploration_fraction <= 1:
            raise PlannerConfigError(
                f"planner settings temperature={config.temperature} must be >= 0 and "
                f"exploration_fraction={config.exploration_fraction} in [0, 1]"
            )
        self.model, self.config = model, config

    def reset(self) -> None:
        """MCTS builds a fresh tree at every step."""

    def _children(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate actions ``[N, K, A]`` and their prior ``[N, K]`` for ``state [N, ...]``."""
        n, dim = batch_size(state), self.model.action_dim
        if self.model.discrete:
            probs = self.model.policy_probs(state)
            actions = torch.eye(dim, device=probs.device).expand(n, dim, dim)
            return actions, probs
        k = self.config.num_sampled_actions
        actions = self.model.policy_sample(repeat_state(state, k)).reshape(n, k, dim)
        return actions, torch.full((n, k), 1.0 / k, device=actions.device)

    def _select(self, node: Node, stats: MinMaxStats) -> int:
        cfg = self.config
        children = node.children
        q = torch.tensor(
            [
                stats.normalize(c.reward + cfg.gamma * c.cont * c.value()) if c.visit_count else 0.0
                for c in children
            ]
        )
        scores = puct_scores(
            torch.tensor([c.prior for c in children]),
            torch.tensor([float(c.visit_count) for c in children]),
            q,
            node.visit_count,
            cfg.pb_c_init,
            cfg.pb_c_base,
        )
        return int(scores.argmax())

    def _backpropagate(self, path: list[Node], value: float, stats: MinMaxStats) -> None:
        gamma = self.config.gamma
        for node in reversed(path):
            node.value_sum += value
            node.visit_count += 1
            stats.update(node.reward + gamma * node.cont * node.value())
            value = node.reward + gamma * node.cont * value

    @torch.no_grad()
    def search(self, state: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the search from each of the ``B`` states.

        Returns:
            ``(actions [B, K, A], visit_counts [B, K], root_values [B])``.
        """
        cfg, model = self.config, self.model
        batch = batch_size(state)
        actions, prior = self._children(state)
        root_value = model.value(state)
        if cfg.exploration_fraction > 0:
            alpha = torch.full_like(prior, cfg.dirichlet_alpha)
            noise = torch.distributions.Dirichlet(alpha.cpu()).sample().to(prior.device)
            prior = (1 - cfg.exploration_fraction) * prior + cfg.exploration_fraction * noise
        roots, stats = [Node(1.0) for _ in range(batch)], [MinMaxStats() for _ in range(batch)]
        for b, root in enumerate(roots):
            root.expand(index_state(state, b), actions[b], prior[b])
            root.visit_count, root.value_sum = 1, float(root_value[b])
        for _ in range(cfg.num_simulations):
            paths, parents, picked = [], [], []
            for b, root in enumerate(roots):
                node, path = root, [root]
                while node.expanded():
                    index = self._select(node, stats[b])
                    parent, node = node, node.children[index]
                    path.append(node)
                paths.append(path)
                parents.append(parent)
                picked.append(parent.actions[index])
            next_state, reward, cont = model.step(cat_states([p.state for p in parents]), torch.stack(picked))
            value = model.value(next_state)
            child_actions, child_prior = self._children(next_state)
            for b, path in enumerate(paths):
                leaf = path[-1]
                leaf.reward, leaf.cont = float(reward[b]), float(cont[b])
                leaf.expand(index_state(next_state, b), child_actions[b], child_prior[b])
                self._backpropagate(path, float(value[b]), stats[b])
        visits = torch.tensor([[float(c.visit_count) for c in root.children] for root in roots])
        values = torch.tensor([root.value() for root in roots])
        return actions, visits.to(actions.device), values.to(actions.device)

    def visit_policy(self, visits: torch.Tensor) -> torch.Tensor:
        """Visit counts ``[B, K]`` -> action probabilities ``[B, K]`` proportional to
        ``N^(1 / temperature)`` (one-hot on the most visited child at temperature 0)."""
        if self.config.temperature == 0:
            return torch.nn.functional.one_hot(visits.argmax(-1), visits.shape[-1]).float()
        scaled = visits ** (1.0 / self.config.temperature)
        return scaled / scaled.sum(-1, keepdim=True)

    def act(self, state: State) -> torch.Tensor:
        """Search, then draw each environment's action from its visit policy: ``[B, A]``."""
        actions, visits, _ = self.search(state)
        choice = torch.multinomial(self.visit_policy(visits), 1).squeeze(-1)
        return actions[torch.arange(actions.shape[0], device=actions.device), choice]

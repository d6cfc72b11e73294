"""Small latent models with known optima, for testing and benchmarking the planners.

Both implement :class:`worldmodel.planning.base.LatentModel` with an uninformative actor
(uniform random), so a planner has to search to do well.

- :class:`QuadraticModel`: reward ``-||a - target||^2`` at every step (continuous), or a
  fixed reward per discrete action; the optimal plan repeats the best action.
- :class:`TableModel`: a deterministic finite MDP given as tables (next node, reward,
  continue per node and action; value per node). :func:`trap_tree` builds one where the
  greedy one-step choice is wrong.
"""

from __future__ import annotations

import torch

from worldmodel.planning.base import State, batch_size, one_hot


class QuadraticModel:
    """Stateless bandit-like model with a quadratic (continuous) or tabular (discrete) reward.

    Args:
        target: ``[A]`` the optimal continuous action, or for ``discrete=True`` the reward
            of each of the ``A`` actions.
        value: the constant critic value of every state.
        epistemic: ``[A]`` optional per-action epistemic bonus (continuous: dotted with the action).
    """

    def __init__(
        self,
        target: torch.Tensor,
        discrete: bool = False,
        value: float = 0.0,
        epistemic: torch.Tensor | None = None,
    ) -> None:
        self.target, self.discrete, self.constant_value = target.float(), discrete, value
        self.action_dim = target.shape[0]
        self.bonus = epistemic

    def step(self, state: State, action: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        if self.discrete:
            reward = action @ self.target
        else:
            reward = -((action - self.target) ** 2).sum(-1)
        next_state = {"t": state["t"] + 1}
        return next_state, reward, torch.ones_like(reward)

    def value(self, state: State) -> torch.Tensor:
        return torch.full((batch_size(state),), self.constant_value)

    def policy_probs(self, state: State) -> torch.Tensor:
        return torch.full((batch_size(state), self.action_dim), 1.0 / self.action_dim)

    def policy_sample(self, state: State) -> torch.Tensor:
        n = batch_size(state)
        if self.discrete:
            return one_hot(torch.randint(self.action_dim, (n,)), self.action_dim)
        return torch.rand(n, self.action_dim) * 2 - 1

    def epistemic(self, state: State, action: torch.Tensor) -> torch.Tensor:
        """Per-action information-gain bonus ``[N]`` (zero when none was given)."""
        if self.bonus is None:
            return torch.zeros(action.shape[0])
        return action @ self.bonus

    @staticmethod
    def initial_state(batch: int) -> dict[str, torch.Tensor]:
        return {"t": torch.zeros(batch, 1)}


class TableModel:
    """A deterministic finite MDP as a latent model; the state is ``{"node": [N] long}``.

    Args:
        next_node: ``[S, A]`` successor of each node under each action.
        reward: ``[S, A]`` reward of each edge.
        cont: ``[S, A]`` continue probability of each edge (default all ones).
        value: ``[S]`` critic value of each node (default zeros).
        prior: ``[S, A]`` actor probabilities (default uniform).
    """

    discrete = True

    def __init__(
        self,
        next_node: torch.Tensor,
        reward: torch.Tensor,
        cont: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
    ) -> None:
        nodes, self.action_dim = next_node.shape
        self.next_node, self.reward = next_node.long(), reward.float()
        self.cont = torch.ones_like(self.reward) if cont is None else cont.float()
        self.values = torch.zeros(nodes) if value is None else value.float()
        self.prior = torch.full((nodes, self.action_dim), 1.0 / self.action_dim) if prior is None else prior

    def step(self, state: State, action: torch.Tensor) -> tuple[State, torch.Tensor, torch.Tensor]:
        node, index = state["node"], action.argmax(-1)
        return ({"node": self.next_node[node, index]}, self.reward[node, index], self.cont[node, index])

    def value(self, state: State) -> torch.Tensor:
        return self.values[state["node"]]

    def policy_probs(self, state: State) -> torch.Tensor:
        return self.prior[state["node"]]

    def policy_sample(self, state: State) -> torch.Tensor:
        return one_hot(torch.multinomial(self.policy_probs(state), 1).squeeze(-1), self.action_dim)

    @staticmethod
    def initial_state(batch: int, node: int = 0) -> dict[str, torch.Tensor]:
        return {"node": torch.full((batch,), node, dtype=torch.long)}


def trap_tree(bait: float = 1.0, prize: float = 10.0) -> TableModel:
    """Two actions from the root: action 0 pays ``bait`` now and nothing after; action 1 pays
    nothing now and ``prize`` one step later. Values are all zero, so one-step greedy search
    picks action 0 while the optimal (and MCTS's) choice is action 1.

    Nodes: 0 root, 1 after the bait, 2 before the prize, 3 absorbing (reward 0).
    """
    next_node = torch.tensor([[1, 2], [3, 3], [3, 3], [3, 3]])
    reward = torch.tensor([[bait, 0.0], [0.0, 0.0], [prize, prize], [0.0, 0.0]])
    return TableModel(next_node, reward)

"""The ``minatar:`` suite: MinAtar games (10x10 miniature Atari) as gymnasium environments.

The ``[10, 10, C]`` boolean grid is flattened into ``vector`` (float 0/1, ``[100 C]``),
which an MLP encoder handles well; the full action set of 6 actions is used, with
MinAtar's default sticky actions (p = 0.1) and difficulty ramping.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


class MinAtarEnv(gym.Env):
    """A MinAtar game. Observations ``{"grid": float32 [10 * 10 * C]}``, actions Discrete(6)."""

    def __init__(self, game: str, seed: int = 0, sticky_action_prob: float = 0.1):
        from minatar import Environment

        self._env = Environment(game, sticky_action_prob=sticky_action_prob)
        self._env.seed(seed)
        size = int(np.prod(self._env.state_shape()))
        self.observation_space = spaces.Dict({"grid": spaces.Box(0.0, 1.0, (size,), np.float32)})
        self.action_space = spaces.Discrete(self._env.num_actions())

    def _obs(self) -> dict[str, np.ndarray]:
        return {"grid": self._env.state().astype(np.float32).reshape(-1)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        self._env.reset()
        return self._obs(), {}

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        reward, terminal = self._env.act(int(action))
        return self._obs(), float(reward), bool(terminal), False, {}

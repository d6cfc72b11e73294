"""The ``crafter:`` suite: Crafter (``crafter:reward`` or ``crafter:noreward``).

Observations are ``[64, 64, 3]`` uint8 images, 17 discrete actions, episodes of at
most 10,000 steps. ``info["achievements"]`` holds the count of each of the 22
achievements unlocked so far in the episode; the runner logs them as
``episode/achievement_<name>`` (the basis of Crafter's success-rate score).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

TASKS = ("reward", "noreward")


class CrafterEnv(gym.Env):
    """Crafter through gymnasium's API. Observations ``{"image": uint8 [H, W, 3]}``."""

    def __init__(self, task: str = "reward", seed: int = 0, size: tuple[int, int] = (64, 64)):
        import crafter

        self._env = crafter.Env(size=tuple(size), reward=(task == "reward"), seed=seed)
        self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (*size, 3), np.uint8)})
        self.action_space = spaces.Discrete(self._env.action_space.n)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        return {"image": self._env.reset()}, {}

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, done, info = self._env.step(int(action))
        terminal = done and info["discount"] == 0.0
        extra = {"achievements": dict(info["achievements"])}
        return {"image": obs}, float(reward), bool(terminal), bool(done and not terminal), extra

    def render(self) -> np.ndarray:
        return self._env.render()

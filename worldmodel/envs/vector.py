"""`EnvBatch`: N environments stepped together, returning Dreamer-style step rows.

Built on gymnasium's vector API (``AsyncVectorEnv`` runs each environment in its own
subprocess; ``SyncVectorEnv`` steps them in this process) with next-step autoreset: after
an episode ends, the next `step` resets that environment and ignores its action. Every
call returns one row per environment following the replay convention of
CONTRIBUTING.md::

    {"vector": float32 [N, D], "image": uint8 [N, H, W, C],  # whichever the env has
     "reward": float32 [N], "is_first": bool [N], "is_last": bool [N], "is_terminal": bool [N]}

Actions are ``[N, A]`` float arrays: one-hot rows for discrete action spaces (``A`` =
number of actions), values in ``[-1, 1]`` for continuous ones.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from worldmodel.envs.adapter import ActionError, EnvError
from worldmodel.envs.registry import make_env


class EnvBatch:
    """``num_envs`` copies of ``suite:task``, seeded ``seed, seed + 1, ...``.

    Args:
        name: ``suite:task`` (see `make_env`).
        num_envs: number of environments.
        seed: seed of the first environment.
        parallel: one subprocess per environment (gymnasium ``AsyncVectorEnv``).
        **env_kwargs: passed to `make_env` (pixels, size, action_repeat, time_limit, ...).

    After each `step`, `episodes` holds one dict per episode that just ended, with
    ``episode/return``, ``episode/length`` (and ``episode/achievement_<name>`` for crafter).
    """

    def __init__(
        self, name: str, num_envs: int = 1, seed: int = 0, parallel: bool = False, **env_kwargs: Any
    ):
        if num_envs < 1:
            raise EnvError(f"num_envs must be >= 1, got {num_envs}")
        self.name, self.num_envs, self.seed = name, num_envs, seed
        probe = make_env(name, seed=seed, **env_kwargs)
        self.observation_space: spaces.Dict = probe.observation_space
        self.action_space: spaces.Space = probe.action_space
        probe.close()
        fns = [functools.partial(make_env, name, seed=seed + i, **env_kwargs) for i in range(num_envs)]
        vector_cls = AsyncVectorEnv if parallel else SyncVectorEnv
        self._env = vector_cls(fns, autoreset_mode=AutoresetMode.NEXT_STEP)
        self.discrete = isinstance(self.action_space, spaces.Discrete)
        shape = self.action_space.shape
        self.action_size = int(self.action_space.n) if self.discrete else int(np.prod(shape))
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)
        self._done = np.ones(num_envs, bool)
        self.episodes: list[dict[str, float]] = []

    def reset(self) -> dict[str, np.ndarray]:
        """Reset all environments (seeded). Returns the first rows, ``is_first`` all True."""
        obs, _ = self._env.reset(seed=[self.seed + i for i in range(self.num_envs)])
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._done[:] = False
        zeros = np.zeros(self.num_envs, bool)
        return self._row(obs, np.zeros(self.num_envs, np.float32), ~zeros, zeros, zeros)

    def _native(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, np.float32)
        if action.shape != (self.num_envs, self.action_size):
            raise ActionError(
                f"{self.name}: actions must have shape {(self.num_envs, self.action_size)}, "
                f"got {action.shape}"
            )
        if not np.all(np.isfinite(action)) or np.any(np.abs(action) > 1.0 + 1e-6):
            raise ActionError(
                f"{self.name}: actions must be finite and within [-1, 1], got {action.tolist()}"
            )
        if self.discrete:
            return action.argmax(-1).astype(np.int64)
        return np.clip(action, -1.0, 1.0)

    def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
        """Step every environment with ``action`` ``[N, A]``; returns the next rows."""
        obs, reward, terminated, truncated, infos = self._env.step(self._native(action))
        is_first = self._done.copy()
        reward = np.where(is_first, 0.0, reward).astype(np.float32)
        is_last = (terminated | truncated) & ~is_first
        is_terminal = terminated & ~is_first
        self._returns = np.where(is_first, 0.0, self._returns + reward)
        self._lengths = np.where(is_first, 0, self._lengths + 1)
        self.episodes = [self._episode(i, infos) for i in np.flatnonzero(is_last)]
        self._done = is_last
        return self._row(obs, reward, is_first, is_last, is_terminal)

    def _episode(self, i: int, infos: dict[str, Any]) -> dict[str, float]:
        stats = {"episode/return": float(self._returns[i]), "episode/length": int(self._lengths[i])}
        achievements = infos.get("achievements")
        if isinstance(achievements, dict):
            for key, values in achievements.items():
                if not key.startswith("_"):
                    stats[f"episode/achievement_{key}"] = float(np.asarray(values)[i] > 0)
        return stats

    def _row(self, obs: dict[str, np.ndarray], reward: np.ndarray, is_first: np.ndarray,
             is_last: np.ndarray, is_terminal: np.ndarray) -> dict[str, np.ndarray]:
        row = {key: np.asarray(value) for key, value in obs.items()}
        row.update(reward=reward, is_first=is_first, is_last=is_last, is_terminal=is_terminal)
        return row

    def render(self) -> np.ndarray:
        """The current frame of environment 0, uint8 ``[H, W, 3]`` (gym envs need ``render=True``)."""
        try:
            frame = self._env.call("render")[0]
        except NotImplementedError:
            frame = None
        if frame is None:
            raise EnvError(f"{self.name} does not render frames; make it with render=True")
        return np.asarray(frame, np.uint8)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> EnvBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

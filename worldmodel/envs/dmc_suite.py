"""The ``dmc:`` suite: DeepMind Control tasks as gymnasium environments.

``dmc:walker-walk`` is proprioceptive (all observation arrays flattened into
``vector``); with ``pixels=True`` the observation is a ``[64, 64, 3]`` uint8 render
(shadows off: the 2048 shadow map dominates CPU rendering). Actions repeat 2 times by
default (DreamerV3's DMC setting), so the 1000-step time limit of dm_control becomes
500 agent steps. dm_control ends every episode by its time limit (truncation); an
episode is terminal only when the final discount is 0.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldmodel.envs.adapter import EnvError

# Headless rendering on the CPU; must be set before dm_control is imported.
os.environ.setdefault("MUJOCO_GL", "egl")

# Tasks whose default camera shows too little (DreamerV3 uses camera 2 for quadruped).
_CAMERAS = {"quadruped": 2}


def dmc_task_names() -> list[str]:
    """All ``domain-task`` names of the dm_control suite."""
    from dm_control import suite

    return sorted(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)


class DMCEnv(gym.Env):
    """A dm_control task with action repeat and optional pixel observations.

    Observations: ``{"state": float32 [D]}`` or ``{"pixels": uint8 [H, W, 3]}``.
    Actions: float32 Box with the task's bounds (usually ``[-1, 1]``), shape ``[A]``.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        seed: int = 0,
        pixels: bool = False,
        size: tuple[int, int] = (64, 64),
        action_repeat: int = 2,
        time_limit: int | None = None,
    ):
        from dm_control import suite

        if "-" not in task:
            raise EnvError(f"dmc task must look like 'domain-task' (e.g. walker-walk), got '{task}'")
        domain, name = task.split("-", 1)
        name = name.replace("-", "_")
        if action_repeat < 1:
            raise EnvError(f"action_repeat must be >= 1, got {action_repeat}")
        task_kwargs: dict[str, Any] = {"random": seed}
        if time_limit is not None:  # counted in agent steps below instead of dm_control seconds
            task_kwargs["time_limit"] = float("inf")
        self._limit, self._steps = time_limit, 0
        self._env = suite.load(domain, name, task_kwargs=task_kwargs)
        self._env.physics.model.vis.quality.shadowsize = 0
        self._pixels, self._size, self._repeat = pixels, tuple(size), action_repeat
        self._camera = _CAMERAS.get(domain, 0)
        spec = self._env.action_spec()
        self.action_space = spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32))
        if pixels:
            self.observation_space = spaces.Dict(
                {"pixels": spaces.Box(0, 255, (*self._size, 3), np.uint8)}
            )
        else:
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (dim,), np.float32)})

    def _obs(self, time_step: Any) -> dict[str, np.ndarray]:
        if self._pixels:
            return {"pixels": self.render()}
        parts = [np.asarray(v, np.float32).reshape(-1) for v in time_step.observation.values()]
        return {"state": np.concatenate(parts)}

    def render(self) -> np.ndarray:
        """The current frame, uint8 ``[H, W, 3]``."""
        return self._env.physics.render(*self._size, camera_id=self._camera)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        self._steps = 0
        return self._obs(self._env.reset()), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        reward = 0.0
        for _ in range(self._repeat):
            time_step = self._env.step(action)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        self._steps += 1
        terminal = time_step.last() and time_step.discount == 0.0
        limit_hit = self._limit is not None and self._steps >= self._limit
        truncated = (time_step.last() and not terminal) or limit_hit
        return self._obs(time_step), reward, bool(terminal), bool(truncated), {}

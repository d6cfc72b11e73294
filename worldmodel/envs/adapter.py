"""One interface for every control suite: dict observations and normalised actions.

`DreamerEnv` wraps any gymnasium environment so that

- observations are a dict with ``vector`` (float32 ``[D]``) and/or ``image``
  (uint8 ``[H, W, C]``); a 1-D Box becomes ``vector``, an ``[H, W, C]`` uint8 Box
  becomes ``image``, a Discrete observation becomes a one-hot ``vector``, and a Dict
  observation keeps its ``vector``/``image`` keys (other keys are flattened into
  ``vector``);
- actions are either ``Discrete(n)`` (the agent sends one-hot rows, see
  `worldmodel.envs.vector`) or a Box in ``[-1, 1]`` that is rescaled to the
  environment's own bounds;
- every observation is checked for NaN/inf and for its declared shape, and every
  action for its range, raising a `ValueError` subclass naming the key and the step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class EnvError(ValueError):
    """A control environment was asked for something it cannot do."""


class ObservationError(EnvError):
    """An environment returned an observation with NaN/inf values or a wrong shape."""


class ActionError(EnvError):
    """An action is outside ``[-1, 1]``, not a valid index, or has the wrong shape."""


def _vector_size(space: spaces.Space) -> int:
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    raise EnvError(f"unsupported observation space {space}; use Box, Discrete or Dict of those")


def _to_vector(space: spaces.Space, value: Any) -> np.ndarray:
    if isinstance(space, spaces.Discrete):
        onehot = np.zeros(int(space.n), np.float32)
        onehot[int(value) - int(space.start)] = 1.0
        return onehot
    return np.asarray(value, np.float32).reshape(-1)


def _is_image(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


class DreamerEnv(gym.Wrapper):
    """Dict observations (``vector``/``image``), actions in ``[-1, 1]`` or Discrete, checks.

    Args:
        env: any gymnasium environment with Box, Discrete or Dict observations and a
            Box or Discrete action space.
        name: ``suite:task`` used in error messages.
    """

    def __init__(self, env: gym.Env, name: str = "env"):
        super().__init__(env)
        self.name = name
        inner = env.observation_space
        parts = dict(inner.spaces) if isinstance(inner, spaces.Dict) else {"obs": inner}
        self._image_key = next((k for k, s in parts.items() if _is_image(s)), None)
        self._vector_keys = [k for k in parts if k != self._image_key]
        obs_spaces: dict[str, spaces.Space] = {}
        if self._vector_keys:
            size = sum(_vector_size(parts[k]) for k in self._vector_keys)
            obs_spaces["vector"] = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        if self._image_key is not None:
            obs_spaces["image"] = parts[self._image_key]
        if not obs_spaces:
            raise EnvError(f"{name}: observation space {inner} has nothing to observe")
        self._parts = parts
        self.observation_space = spaces.Dict(obs_spaces)
        native = env.action_space
        if isinstance(native, spaces.Box):
            if not (np.all(np.isfinite(native.low)) and np.all(np.isfinite(native.high))):
                raise EnvError(f"{name}: continuous actions need finite bounds, got {native}")
            self.action_space = spaces.Box(-1.0, 1.0, native.shape, np.float32)
        elif isinstance(native, spaces.Discrete):
            self.action_space = native
        else:
            raise EnvError(f"{name}: unsupported action space {native}; use Box or Discrete")
        self._steps = 0

    def _convert(self, obs: Any) -> dict[str, np.ndarray]:
        raw = obs if isinstance(self.env.observation_space, spaces.Dict) else {"obs": obs}
        out: dict[str, np.ndarray] = {}
        if self._vector_keys:
            out["vector"] = np.concatenate([_to_vector(self._parts[k], raw[k]) for k in self._vector_keys])
        if self._image_key is not None:
            out["image"] = np.asarray(raw[self._image_key], np.uint8)
        for key, value in out.items():
            expected = self.observation_space[key].shape
            if value.shape != expected:
                raise ObservationError(
                    f"{self.name}: observation '{key}' has shape {value.shape}, expected {expected} "
                    f"(step {self._steps})"
                )
            if key == "vector" and not np.all(np.isfinite(value)):
                raise ObservationError(
                    f"{self.name}: observation '{key}' contains NaN or inf at step {self._steps}"
                )
        return out

    def _native_action(self, action: Any) -> Any:
        if isinstance(self.action_space, spaces.Discrete):
            index = np.asarray(action)
            if index.ndim != 0 or not np.issubdtype(index.dtype, np.integer):
                raise ActionError(f"{self.name}: discrete action must be an integer index, got {action!r}")
            if not self.action_space.contains(int(index)):
                raise ActionError(
                    f"{self.name}: action {int(index)} is not in 0..{self.action_space.n - 1} "
                    f"(step {self._steps})"
                )
            return int(index)
        value = np.asarray(action, np.float32)
        if value.shape != self.action_space.shape:
            raise ActionError(
                f"{self.name}: action has shape {value.shape}, expected {self.action_space.shape}"
            )
        if not np.all(np.isfinite(value)) or np.any(np.abs(value) > 1.0 + 1e-6):
            raise ActionError(
                f"{self.name}: action {value.tolist()} is outside [-1, 1] or not finite (step {self._steps})"
            )
        native = self.env.action_space
        scaled = native.low + (np.clip(value, -1.0, 1.0) + 1.0) * 0.5 * (native.high - native.low)
        return scaled.astype(native.dtype)

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._steps = 0
        obs, info = self.env.reset(**kwargs)
        return self._convert(obs), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self._native_action(action))
        self._steps += 1
        if not np.isfinite(reward):
            raise ObservationError(f"{self.name}: reward is {reward} at step {self._steps}")
        return self._convert(obs), float(reward), bool(terminated), bool(truncated), info

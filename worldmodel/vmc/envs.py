"""The two environments of the World Models paper, as 64x64 RGB frame producers.

Each wrapper gives uint8 frames ``[64, 64, 3]``, a random exploration policy for step 1,
and the map from controller outputs in (-1, 1) to the action vector fed to the env and
to the MDN-RNN:

- ``carracing``: gymnasium ``CarRacing-v3`` (96x96 frames resized), action
  ``[steer, gas, brake]`` mapped as in Ha & Schmidhuber's code: steer = out, gas = (out + 1) / 2,
  brake = out clipped to [0, 1] (so a controller at zero drives at half throttle); 3 controller
  outputs. ``stall_reward``: the reward of a frame that reaches no new tile.
- ``take_cover``: VizDoom ``take_cover`` (160x120 frames resized), buttons
  ``[MOVE_LEFT, MOVE_RIGHT]``; one controller output, left below -1/3, right above 1/3
  (the paper's discretisation); +1 reward per tic alive, at most 2100 tics. Its random
  policy holds each action for 1 to ``hold_max`` steps (10 as DoomRNN's data; longer holds
  reach the walls more often).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

ENVS = ("carracing", "take_cover")


class VMCEnvError(ValueError):
    """Unknown environment name."""


def resize(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[64, 64, 3]`` (area interpolation)."""
    import cv2

    return cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)


class CarRacing:
    action_dim, controller_dim, max_steps = 3, 3, 1000
    stall_reward = -0.1

    def __init__(self) -> None:
        import gymnasium as gym

        self.env = gym.make("CarRacing-v3")

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return resize(obs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, reward, terminated, truncated, _ = self.env.step(action.astype(np.float32))
        return resize(obs), float(reward), bool(terminated or truncated)

    @staticmethod
    def action_map(out: Tensor) -> Tensor:
        """``[N, 3]`` tanh outputs -> ``[N, 3]`` ``[steer, gas, brake]``."""
        return torch.cat([out[:, :1], (out[:, 1:2] + 1.0) / 2.0, out[:, 2:].clamp(min=0.0)], -1)

    def random_action(self, rng: np.random.Generator, prev: np.ndarray | None) -> np.ndarray:
        """Actions held for a few steps with a bias to accelerate, so the car moves."""
        if prev is not None and rng.random() < 0.8:
            return prev
        return np.array([rng.uniform(-1, 1), rng.uniform(0.3, 1.0), rng.uniform(0, 0.1)], np.float32)

    def close(self) -> None:
        self.env.close()


class TakeCover:
    action_dim, controller_dim, max_steps = 2, 1, 2100
    stall_reward = 0.0  # every tic alive pays +1: an episode never stalls

    def __init__(self, hold_max: int = 10) -> None:
        import vizdoom

        self.hold_max = hold_max
        self.game = vizdoom.DoomGame()
        self.game.load_config(os.path.join(vizdoom.scenarios_path, "take_cover.cfg"))
        self.game.set_window_visible(False)
        self.game.set_screen_resolution(vizdoom.ScreenResolution.RES_160X120)
        self.game.set_screen_format(vizdoom.ScreenFormat.RGB24)
        self.game.init()
        self.frame = np.zeros((64, 64, 3), np.uint8)
        self._hold = 0  # steps the current random action is still held

    def _frame(self) -> np.ndarray:
        if not self.game.is_episode_finished():
            self.frame = resize(self.game.get_state().screen_buffer)
        return self.frame

    def reset(self, seed: int) -> np.ndarray:
        self.game.set_seed(seed)
        self.game.new_episode()
        return self._frame()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        self.game.make_action([int(a > 0.5) for a in action])
        return self._frame(), 1.0, self.game.is_episode_finished()

    @staticmethod
    def action_map(out: Tensor) -> Tensor:
        """``[N, 1]`` tanh output -> ``[N, 2]`` ``[left, right]`` buttons."""
        return torch.cat([(out < -1 / 3).float(), (out > 1 / 3).float()], -1)

    def random_action(self, rng: np.random.Generator, prev: np.ndarray | None) -> np.ndarray:
        """A uniform random output held for 1 to ``hold_max`` steps (10: as Ha & Schmidhuber's
        DoomRNN data), so the random rollouts also move far left and right, not only jitter."""
        if prev is None or self._hold <= 0:
            self._hold = int(rng.integers(1, self.hold_max + 1))
            prev = self.action_map(torch.tensor([[rng.uniform(-1, 1)]])).numpy()[0]
        self._hold -= 1
        return prev

    def close(self) -> None:
        self.game.close()


def make_vmc_env(name: str, hold_max: int = 10) -> CarRacing | TakeCover:
    """``"carracing"`` or ``"take_cover"`` (whose random actions are held 1 to ``hold_max`` steps)."""
    if name == "carracing":
        return CarRacing()
    if name == "take_cover":
        return TakeCover(hold_max)
    raise VMCEnvError(f"unknown V-M-C environment {name!r}; choose one of {ENVS}")

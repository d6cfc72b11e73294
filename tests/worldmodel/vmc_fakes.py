"""A tiny fake V-M-C environment shared by the vmc tests."""

import numpy as np


class FakeEnv:
    """Frames whose brightness follows the action; reward = the action; 12-step episodes."""

    action_dim, controller_dim, max_steps = 1, 1, 12
    action_map = staticmethod(lambda out: out)

    def reset(self, seed: int) -> np.ndarray:
        self.t, self.level = 0, 128.0
        return np.full((64, 64, 3), 128, np.uint8)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        self.t += 1
        self.level = float(np.clip(self.level + 60 * action[0], 0, 255))
        return np.full((64, 64, 3), int(self.level), np.uint8), float(action[0]), self.t >= self.max_steps

    def random_action(self, rng: np.random.Generator, prev: np.ndarray | None) -> np.ndarray:
        return rng.uniform(-1, 1, 1).astype(np.float32)

    def close(self) -> None:
        pass

"""A tiny fake V-M-C environment shared by the vmc tests."""

from pathlib import Path

import numpy as np

from worldmodel.vmc import DreamConfig, VMCConfig, run_vmc


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


def tiny_config(**changes) -> VMCConfig:
    """A V-M-C config small enough for a test on `FakeEnv` (12-step episodes), with ``changes``."""
    dream = DreamConfig(generations=2, population=4, rollouts=2, horizon=5, eval_every=1, eval_rollouts=2)
    base = {"env": "fake", "episodes": 4, "max_steps": 12, "z_dim": 4, "vae_epochs": 1, "hidden": 8}
    base |= {"mdn_epochs": 1, "mdn_seq_len": 6, "eval_episodes": 2, "dream": dream}
    return VMCConfig(**(base | changes))


def source_run(tmp_path: Path) -> Path:
    """A tiny finished run on the fake env: 4 random episodes (52 frames) cached in data.npz."""
    run_vmc(tiny_config(data_cache=str(tmp_path / "data.npz")), tmp_path / "src", env=FakeEnv())
    return tmp_path / "src"

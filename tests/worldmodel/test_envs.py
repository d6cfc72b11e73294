"""Control suites: the common interface, step rows, checks and error messages."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from worldmodel.envs import (
    ActionError,
    EnvBatch,
    EnvError,
    MissingDependencyError,
    ObservationError,
    UnknownTaskError,
    gym_suite,
    make_env,
)

USER_ENV = textwrap.dedent(
    """
    import gymnasium as gym
    import numpy as np

    class Corridor(gym.Env):
        '''Walk right to the goal at x = 3; NaN observation at step `nan_at` if set.'''

        def __init__(self, nan_at=None):
            self.observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
            self.action_space = gym.spaces.Box(np.float32([-2.0]), np.float32([6.0]), dtype=np.float32)
            self.nan_at, self.actions = nan_at, []

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.x, self.t = 0, 0
            return np.array([self.x, self.t], np.float32), {}

        def step(self, action):
            self.actions.append(float(action[0]))
            self.t += 1
            self.x += 1 if action[0] > 0 else 0
            obs = np.array([self.x, self.t], np.float32)
            if self.t == self.nan_at:
                obs[1] = np.nan
            return obs, 1.0, self.x >= 3, False, {}

    def broken():
        return Corridor(nan_at=2)
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_envs_h4.py").write_text(USER_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_envs_h4"
    sys.modules.pop("user_envs_h4", None)


def _onehot(batch: EnvBatch, index: int) -> np.ndarray:
    action = np.zeros((batch.num_envs, batch.action_size), np.float32)
    action[:, index] = 1.0
    return action


def test_cartpole_rows_follow_the_replay_convention():
    with EnvBatch("gym:CartPole-v1", num_envs=2, seed=0) as batch:
        assert batch.discrete and batch.action_size == 2
        row = batch.reset()
        assert row["vector"].shape == (2, 4) and row["vector"].dtype == np.float32
        assert row["is_first"].all() and not row["is_last"].any() and (row["reward"] == 0).all()
        rewards, ended = [], None
        for _ in range(200):  # always pushing left ends an episode in ~10 steps
            row = batch.step(_onehot(batch, 0))
            rewards.append(row["reward"][0])
            if row["is_last"][0]:
                ended = batch.episodes
                break
        assert row["is_terminal"][0], "pole falling is a terminal state"
        assert ended[0]["episode/return"] == pytest.approx(sum(rewards))
        assert ended[0]["episode/length"] == len(rewards)
        row = batch.step(_onehot(batch, 1))  # next-step autoreset: a new episode starts
        assert row["is_first"][0] and row["reward"][0] == 0.0 and not row["is_last"][0]


def test_seeded_batches_repeat_and_parallel_matches_sequential():
    def rollout(parallel: bool) -> np.ndarray:
        with EnvBatch("gym:CartPole-v1", num_envs=2, seed=3, parallel=parallel) as batch:
            rows = [batch.reset()["vector"]]
            rows += [batch.step(_onehot(batch, t % 2))["vector"] for t in range(20)]
        return np.stack(rows)

    sequential = rollout(False)
    assert not np.allclose(sequential[:, 0], sequential[:, 1]), "each env gets its own seed"
    np.testing.assert_array_equal(sequential, rollout(False))
    np.testing.assert_array_equal(sequential, rollout(True))


def test_user_class_actions_are_rescaled_from_unit_range(user_module):
    env = make_env(f"gym:{user_module}:Corridor")
    assert env.action_space.low.tolist() == [-1.0] and env.action_space.high.tolist() == [1.0]
    env.reset(seed=0)
    for action in (-1.0, 0.0, 0.5, 1.0):  # native bounds [-2, 6]: -2 + (a + 1) * 4
        env.step(np.array([action], np.float32))
    assert env.unwrapped.actions == [-2.0, 2.0, 4.0, 6.0]


def test_time_limit_truncates_without_terminal(user_module):
    with EnvBatch(f"gym:{user_module}:Corridor", time_limit=2) as batch:
        batch.reset()
        batch.step(np.array([[-1.0]], np.float32))
        row = batch.step(np.array([[-1.0]], np.float32))
    assert row["is_last"][0] and not row["is_terminal"][0]
    assert batch.episodes == [{"episode/return": 2.0, "episode/length": 2}]


def test_render_frames_for_videos(user_module):
    with EnvBatch("gym:CartPole-v1", render=True) as batch:
        batch.reset()
        frame = batch.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.std() > 0
    with EnvBatch(f"gym:{user_module}:Corridor") as batch, pytest.raises(EnvError, match="does not render"):
        batch.reset()
        batch.render()


def test_out_of_range_and_misshaped_actions_raise(user_module):
    with EnvBatch(f"gym:{user_module}:Corridor") as batch:
        batch.reset()
        with pytest.raises(ActionError, match=r"within \[-1, 1\]"):
            batch.step(np.array([[1.5]], np.float32))
        with pytest.raises(ActionError, match="shape"):
            batch.step(np.zeros((1, 2), np.float32))
    env = make_env("gym:CartPole-v1")
    env.reset(seed=0)
    with pytest.raises(ActionError, match="not in 0..1"):
        env.step(np.int64(2))


def test_nan_observation_names_key_and_step(user_module):
    env = make_env(f"gym:{user_module}:broken")
    env.reset(seed=0)
    env.step(np.array([1.0], np.float32))
    with pytest.raises(ObservationError, match="'vector' contains NaN or inf at step 2"):
        env.step(np.array([1.0], np.float32))


def test_entry_point_envs(user_module, monkeypatch):
    point = EntryPoint(name="corridor", value=f"{user_module}:Corridor", group=gym_suite.ENTRY_POINT_GROUP)
    monkeypatch.setattr(gym_suite, "entry_points", lambda group: [point])
    env = make_env("gym:corridor")
    obs, _ = env.reset(seed=0)
    assert obs["vector"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("gmy:CartPole-v1", "unknown suite 'gmy'. Did you mean 'gym'.*Suites: gym, dmc, minatar, atari"),
        ("CartPole-v1", "must be 'suite:task'"),
        ("gym:CartPol-v1", "unknown gym task 'CartPol-v1'. Closest: CartPole-v1"),
        ("dmc:walker-wlk", "unknown dmc task 'walker-wlk'. Closest: walker-walk"),
        ("minatar:breakot", "Closest: breakout"),
        ("gym:no_such_module_h4:Env", "cannot import module 'no_such_module_h4'"),
    ],
)
def test_unknown_names_list_suites_and_closest_tasks(name, pattern):
    with pytest.raises(UnknownTaskError, match=pattern):
        make_env(name)


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minatar", None)
    with pytest.raises(MissingDependencyError, match=r"'minatar'.*pip install arrcoc\[control\]"):
        make_env("minatar:breakout")


def test_dmc_proprio_repeats_actions_and_truncates_at_500_steps():
    with EnvBatch("dmc:cartpole-swingup", seed=0) as batch:
        row = batch.reset()
        assert row["vector"].shape == (1, 5) and batch.action_size == 1 and not batch.discrete
        steps = 0
        while not row["is_last"][0]:
            row = batch.step(np.zeros((1, 1), np.float32))
            steps += 1
    assert steps == 500, "1000 physics steps with action repeat 2"
    assert not row["is_terminal"][0]


def test_dmc_pixels_minatar_and_atari_shapes():
    env = make_env("dmc:cartpole-swingup", pixels=True)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8 and obs["image"].std() > 0
    env = make_env("minatar:breakout")
    obs, _ = env.reset(seed=0)
    assert obs["vector"].shape == (400,) and env.action_space.n == 6 and obs["vector"].sum() > 0
    env = make_env("atari:pong")
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and env.action_space.n == 18


def test_crafter_reports_achievements_at_episode_end():
    with EnvBatch("crafter:reward", seed=0, time_limit=50) as batch:
        row = batch.reset()
        assert row["image"].shape == (1, 64, 64, 3)
        for _ in range(50):
            row = batch.step(_onehot(batch, 5))  # 'do': collects wood when facing a tree
    assert row["is_last"][0]
    stats = batch.episodes[0]
    assert stats["episode/length"] == 50
    assert len([k for k in stats if k.startswith("episode/achievement_")]) == 22

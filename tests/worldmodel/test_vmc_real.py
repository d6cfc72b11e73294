"""Real-environment episodes of V-M-C controllers in lockstep and over processes (worldmodel.vmc.real)."""

import numpy as np
import pytest
import torch
from vmc_fakes import FakeEnv

from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.dream import DreamConfig
from worldmodel.vmc.envs import CarRacing
from worldmodel.vmc.mdn_rnn import MDNRNN
from worldmodel.vmc.pipeline import VMCConfig, real_fitness
from worldmodel.vmc.real import RealPool, lockstep_returns
from worldmodel.vmc.vae import ConvVAE, frames_to_input


class SeededEnv(FakeEnv):
    """`FakeEnv` whose episode lasts ``5 + seed % 6`` steps and pays ``(1 + seed % 3) x action``."""

    def reset(self, seed: int) -> np.ndarray:
        self.seed = seed
        return super().reset(seed)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        frame, reward, _ = super().step(action)
        return frame, (1 + self.seed % 3) * reward, self.t >= 5 + self.seed % 6


@torch.no_grad()
def reference_return(env, vae, mdn, controller, params, seed: int, max_steps: int = 1000) -> float:
    """The one-episode loop `evaluate_real` ran before the lockstep version (kept as the reference)."""
    frame, state, total = env.reset(seed), mdn.initial_state(1), 0.0
    h = torch.zeros(1, mdn.hidden)
    for _ in range(min(max_steps, env.max_steps)):
        z = vae.encode(frames_to_input(torch.as_tensor(frame)))[0]
        action = env.action_map(controller(params[None], torch.cat([z, h], -1)[None])[0])
        _, _, _, h, state = mdn.step(z, action, state)
        frame, reward, done = env.step(action[0].numpy())
        total += reward
        if done:
            break
    return total


def _models(seed: int = 0) -> tuple[ConvVAE, MDNRNN, LinearController, torch.Tensor]:
    """Random V (z 4), M (h 8) and five distinct controllers ``[5, n]`` for `FakeEnv`."""
    torch.manual_seed(seed)
    controller = LinearController(4 + 8, FakeEnv.controller_dim)
    params = torch.randn(5, controller.num_params)
    return ConvVAE(4).eval(), MDNRNN(4, FakeEnv.action_dim, 8, 2).eval(), controller, params


def test_lockstep_equals_the_one_episode_loop() -> None:
    """Five controllers on episodes of different lengths (5..10 steps), stepped together, give
    what the one-episode loop gives each; also under a step limit."""
    vae, mdn, controller, params = _models()
    seeds = [3, 4, 7, 2, 0]
    for limit in (None, 7):
        together = lockstep_returns(
            [SeededEnv() for _ in range(6)], vae, mdn, controller, params, seeds, limit
        )
        alone = [
            reference_return(SeededEnv(), vae, mdn, controller, p, s, limit or 1000)
            for p, s in zip(params, seeds, strict=True)
        ]
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
        assert len(set(np.round(together, 4))) == 5  # the controllers do differ
    with pytest.raises(ValueError, match="5 seeds need 5 controllers and environments, got 2 and 5"):
        lockstep_returns([FakeEnv() for _ in seeds], vae, mdn, controller, params[:2], seeds)


class ScriptedEnv(FakeEnv):
    """Rewards follow a script chosen by the seed, whatever the action; 12 steps (seed 2: 6)."""

    stall_reward = -0.1
    scripts = {
        0: [1.0, -0.1, -0.1, -0.1, 1.0] + [-0.1] * 7,
        1: [1.0, -0.1, -0.1, 1.0] * 3,
        2: [1.0, 1.0, 1.0, -0.1, -0.1, -0.1],
    }

    def reset(self, seed: int) -> np.ndarray:
        self.script = self.scripts[seed]
        return super().reset(seed)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        frame, _, _ = super().step(action)
        return frame, self.script[self.t - 1], self.t >= len(self.script)


def test_patience_ends_stalled_episodes_and_charges_the_steps_left() -> None:
    vae, mdn, controller, params = _models()

    def play(patience: int) -> list[float]:
        envs = [ScriptedEnv() for _ in range(3)]
        return lockstep_returns(envs, vae, mdn, controller, params[:3], [0, 1, 2], None, patience)

    # whole scripts: 1 + 1 - 10 x 0.1; 6 x 1 - 6 x 0.1; 3 - 0.3
    np.testing.assert_allclose(play(0), [1.0, 5.4, 2.7], atol=1e-9)
    # patience 3: seed 0's three -0.1 after the first 1 end it at step 4, charged 8 steps of -0.1;
    # seed 1 never stalls 3 steps; seed 2 ends (done) on the step patience runs out: nothing charged
    np.testing.assert_allclose(play(3), [1.0 - 0.3 - 0.8, 5.4, 2.7], atol=1e-9)
    # patience 2: seed 1 stops at step 3 too, charged 9 steps; seed 2 at step 5, charged the 7
    # steps to the env's limit of 12 (the charge cannot know its script would end at step 6)
    np.testing.assert_allclose(play(2), [1.0 - 0.2 - 0.9, 1.0 - 0.2 - 0.9, 3.0 - 0.2 - 0.7], atol=1e-9)


def test_real_fitness_averages_each_candidate_over_shared_seeds() -> None:
    """Candidate p's fitness is its mean over the generation's R seeds, which all candidates share,
    from 1,000,000 x (1 + seed + dream seed) on, the next block of 1,000 at the next call."""
    vae, mdn, controller, params = _models(2)
    cfg = VMCConfig(env="fake", seed=1, dream=DreamConfig(seed=1, horizon=8))
    with RealPool(SeededEnv, vae, mdn, controller, max_envs=4) as pool:  # 15 episodes: 4 waves
        fitness = real_fitness(pool, cfg, cfg.dream)
        first, second = fitness(params, 3), fitness(params[:2], 2)
    for got, blocks, start in ((first, 3, 3_000_000), (second, 2, 3_001_000)):
        expected = [
            np.mean(
                [reference_return(SeededEnv(), vae, mdn, controller, p, start + r, 8) for r in range(blocks)]
            )
            for p in params[: len(got)]
        ]
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-4)


def test_pool_over_two_processes_matches_one_process() -> None:
    vae, mdn, controller, params = _models(1)
    seeds = [10, 11, 12, 13, 14]
    with RealPool(SeededEnv, vae, mdn, controller, workers=1) as one:
        local = one.returns(params, seeds, None)
    with RealPool(SeededEnv, vae, mdn, controller, workers=2, max_envs=2) as two:
        forked = two.returns(params, seeds, None)
        np.testing.assert_allclose(two.returns(params[:1], seeds[:1], None), local[:1], atol=1e-5)
    np.testing.assert_allclose(forked, local, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="workers=0"):
        RealPool(FakeEnv, vae, mdn, controller, workers=0)


def test_carracing_action_map_follows_the_paper() -> None:
    """steer = out, gas = (out + 1) / 2, brake = out clipped to [0, 1] (Ha & Schmidhuber's code)."""
    out = torch.tensor([[0.5, 0.0, -0.5], [-1.0, 1.0, 0.3], [0.0, -1.0, 1.0]])
    expected = [[0.5, 0.5, 0.0], [-1.0, 1.0, 0.3], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(CarRacing.action_map(out).numpy(), expected, atol=1e-7)

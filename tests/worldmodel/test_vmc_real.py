"""Real-environment episodes of V-M-C controllers in lockstep and over processes (worldmodel.vmc.real)."""

import numpy as np
import pytest
import torch
from vmc_fakes import FakeEnv

from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.envs import CarRacing
from worldmodel.vmc.mdn_rnn import MDNRNN
from worldmodel.vmc.pipeline import evaluate_real
from worldmodel.vmc.real import RealPool, lockstep_returns
from worldmodel.vmc.vae import ConvVAE


def _models(seed: int = 0) -> tuple[ConvVAE, MDNRNN, LinearController, torch.Tensor]:
    """Random V (z 4), M (h 8) and five distinct controllers ``[5, n]`` for `FakeEnv`."""
    torch.manual_seed(seed)
    controller = LinearController(4 + 8, FakeEnv.controller_dim)
    params = torch.randn(5, controller.num_params)
    return ConvVAE(4).eval(), MDNRNN(4, FakeEnv.action_dim, 8, 2).eval(), controller, params


def test_lockstep_equals_one_episode_at_a_time() -> None:
    """Five controllers stepped together give each one's return when played alone."""
    vae, mdn, controller, params = _models()
    seeds = [3, 4, 5, 6, 7]
    together = lockstep_returns([FakeEnv() for _ in seeds], vae, mdn, controller, params, seeds)
    alone = [
        evaluate_real(FakeEnv(), vae, mdn, controller, p, 1, s)[0] for p, s in zip(params, seeds, strict=True)
    ]
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    assert len(set(np.round(together, 4))) == 5  # the controllers do differ
    short = lockstep_returns([FakeEnv() for _ in seeds], vae, mdn, controller, params, seeds, max_steps=4)
    assert not np.allclose(short, together)
    with pytest.raises(ValueError, match="5 seeds need 5 controllers and environments, got 2 and 5"):
        lockstep_returns([FakeEnv() for _ in seeds], vae, mdn, controller, params[:2], seeds)


class ScriptedEnv(FakeEnv):
    """Rewards follow a fixed script whatever the action: 1, -0.1, -0.1, -0.1, 1, ...; 12 steps."""

    stall_reward = -0.1
    script = [1.0, -0.1, -0.1, -0.1, 1.0] + [-0.1] * 7

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        frame, _, done = super().step(action)
        return frame, self.script[self.t - 1], done


def test_patience_ends_stalled_episodes_and_charges_the_steps_left() -> None:
    vae, mdn, controller, params = _models()

    def play(patience: int) -> float:
        return lockstep_returns([ScriptedEnv()], vae, mdn, controller, params[:1], [0], None, patience)[0]

    assert play(0) == pytest.approx(2.0 - 1.0)  # the whole script: 1 + 1 - 10 x 0.1
    # patience 3: the three -0.1 after the first 1 end it at step 4; 8 steps left at -0.1 each
    assert play(3) == pytest.approx(1.0 - 0.3 - 0.8)
    # patience 4: the run of three is too short; the seven -0.1 at the end stop it 3 steps early,
    # and those 3 steps are charged: the same return as the whole episode
    assert play(4) == pytest.approx(play(0))


def test_pool_over_two_processes_matches_one_process() -> None:
    vae, mdn, controller, params = _models(1)
    seeds = [10, 11, 12, 13, 14]
    with RealPool(FakeEnv, vae, mdn, controller, workers=1) as one:
        local = one.returns(params, seeds, None)
    with RealPool(FakeEnv, vae, mdn, controller, workers=2) as two:
        forked = two.returns(params, seeds, None)
        assert two.returns(params[:1], seeds[:1], None) == local[:1]  # fewer episodes than workers
    np.testing.assert_allclose(forked, local, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="workers=0"):
        RealPool(FakeEnv, vae, mdn, controller, workers=0)


def test_carracing_action_map_follows_the_paper() -> None:
    """steer = out, gas = (out + 1) / 2, brake = out clipped to [0, 1] (Ha & Schmidhuber's code)."""
    out = torch.tensor([[0.5, 0.0, -0.5], [-1.0, 1.0, 0.3], [0.0, -1.0, 1.0]])
    expected = [[0.5, 0.5, 0.0], [-1.0, 1.0, 0.3], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(CarRacing.action_map(out).numpy(), expected, atol=1e-7)

"""Ha & Schmidhuber V-M-C (worldmodel.vmc)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from vmc_fakes import FakeEnv, tiny_config

from worldmodel.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from worldmodel.run import package_version
from worldmodel.vmc import (
    MDNRNN,
    ConvVAE,
    DreamConfig,
    LinearController,
    VMCConfig,
    dream_returns,
    evolve_controller,
    mdn_nll,
    run_vmc,
    sample_mixture,
)
from worldmodel.vmc.diagnose import constant_params, v_and_m_report
from worldmodel.vmc.envs import TakeCover, VMCEnvError, make_vmc_env
from worldmodel.vmc.evaluate import evaluate_run
from worldmodel.vmc.pipeline import EVAL_SEED_OFFSET, sequence_chunks
from worldmodel.vmc.rollouts import rollouts
from worldmodel.vmc.vae import kl_to_standard_normal


def test_mdn_nll_matches_direct_computation() -> None:
    torch.manual_seed(0)
    logpi = torch.randn(4, 3, 5).log_softmax(-1)
    mu, logsigma, target = torch.randn(4, 3, 5), torch.randn(4, 3, 5) * 0.3, torch.randn(4, 3)
    expected = torch.zeros(4)
    for n in range(4):
        for d in range(3):
            density = sum(
                math.exp(logpi[n, d, k])
                * math.exp(-0.5 * ((target[n, d] - mu[n, d, k]) / math.exp(logsigma[n, d, k])) ** 2)
                / (math.exp(logsigma[n, d, k]) * math.sqrt(2 * math.pi))
                for k in range(5)
            )
            expected[n] -= math.log(density)
    assert torch.allclose(mdn_nll(logpi, mu, logsigma, target), expected, atol=1e-5)


def test_mdn_nll_single_component_is_gaussian_nll() -> None:
    mu, sigma, x = torch.tensor([[[1.0]]]), torch.tensor([[[2.0]]]), torch.tensor([[0.0]])
    nll = mdn_nll(torch.zeros(1, 1, 1), mu, sigma.log(), x)
    assert nll.item() == pytest.approx(
        -torch.distributions.Normal(1.0, 2.0).log_prob(torch.tensor(0.0)).item()
    )


def test_sample_mixture_temperature() -> None:
    torch.manual_seed(0)
    logpi = torch.tensor([0.9, 0.1]).log().expand(20000, 1, 2)
    mu = torch.tensor([-5.0, 5.0]).expand(20000, 1, 2)
    logsigma = torch.full((20000, 1, 2), math.log(0.1))
    cold = sample_mixture(logpi, mu, logsigma, tau=0.1)
    assert (cold > 0).float().mean() < 0.001  # 0.1^10 / (0.9^10 + 0.1^10)
    hot = sample_mixture(logpi, mu, logsigma, tau=1.0)
    assert (hot > 0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    wide = sample_mixture(
        torch.zeros(20000, 1, 1), torch.zeros(20000, 1, 1), torch.zeros(20000, 1, 1), tau=4.0
    )
    assert wide.std().item() == pytest.approx(2.0, rel=0.05)  # sigma * sqrt(tau)
    with pytest.raises(ValueError, match="tau=0"):
        sample_mixture(logpi, mu, logsigma, tau=0.0)


def test_vae_shapes_and_kl() -> None:
    vae = ConvVAE(z_dim=32)
    x = torch.rand(2, 3, 64, 64)
    recon, mu, logvar = vae(x)
    assert recon.shape == (2, 3, 64, 64) and mu.shape == (2, 32) and logvar.shape == (2, 32)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3, 4), torch.ones(3, 4))
    assert torch.allclose(kl_to_standard_normal(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))


def test_controller_batched_matches_loop() -> None:
    ctrl = LinearController(in_dim=4, out_dim=2)
    params = torch.randn(3, ctrl.num_params)
    feats = torch.randn(3, 5, 4)
    out = ctrl(params, feats)
    weight, bias = ctrl.unpack(params)
    assert torch.allclose(out[1, 2], torch.tanh(weight[1] @ feats[1, 2] + bias[1]))
    with pytest.raises(ValueError, match="expects 10 parameters"):
        ctrl(torch.zeros(1, 7), feats[:1])


def test_cma_es_improves_dream_return() -> None:
    torch.manual_seed(0)
    mdn = MDNRNN(z_dim=2, action_dim=1, hidden=8, mixtures=2).eval()
    with torch.no_grad():
        mdn.done.bias.fill_(-20.0)  # never done: the return is the sum of predicted rewards
        mdn.lstm.weight_ih_l0[:, 2:].mul_(5.0)  # the action moves the LSTM state ...
        mdn.reward.weight.mul_(5.0)  # ... and the reward depends on it
    ctrl = LinearController(2 + 8, 1)
    start = torch.randn(16, 2)
    config = DreamConfig(
        generations=12,
        population=12,
        rollouts=4,
        horizon=10,
        tau=0.05,
        sigma0=0.5,
        eval_every=4,
        eval_rollouts=16,
    )
    best, history = evolve_controller(mdn, ctrl, start, lambda out: out, config)
    zero = dream_returns(mdn, ctrl, torch.zeros(1, ctrl.num_params), start, lambda out: out, 10, 0.05)
    evolved = dream_returns(
        mdn, ctrl, torch.as_tensor(best, dtype=torch.float32)[None], start, lambda out: out, 10, 0.05
    )
    assert len(history) == 12 and [h["generation"] for h in history if "evaluated" in h] == [3, 7, 11]
    assert history[-1]["mean"] > history[0]["mean"] + 1.0
    assert evolved.item() > zero.item() + 1.0


def test_dream_stops_at_done() -> None:
    mdn = MDNRNN(z_dim=2, action_dim=1, hidden=4, mixtures=1).eval()
    with torch.no_grad():
        mdn.done.weight.zero_()
        mdn.done.bias.fill_(20.0)  # done after the first step
        mdn.reward.weight.zero_()
        mdn.reward.bias.fill_(1.0)
    ret = dream_returns(
        mdn, LinearController(6, 1), torch.zeros(2, 7), torch.zeros(3, 2), lambda o: o, 50, 1.0
    )
    assert ret.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("done_logit", [-0.4, 0.4])
def test_dream_ends_where_done_probability_exceeds_one_half(done_logit) -> None:
    mdn = MDNRNN(z_dim=2, action_dim=1, hidden=4, mixtures=1).eval()
    with torch.no_grad():
        mdn.done.weight.zero_()
        mdn.done.bias.fill_(done_logit)  # p(done) = 0.40 or 0.60 at every step
        mdn.reward.weight.zero_()
        mdn.reward.bias.fill_(1.0)
    args = (mdn, LinearController(6, 1), torch.zeros(1, 7), torch.zeros(200, 2), lambda o: o, 50, 1.0)
    threshold = dream_returns(*args)
    assert threshold.item() == (50.0 if done_logit < 0 else 1.0)  # the paper: done iff logit > 0
    torch.manual_seed(0)
    sampled = dream_returns(*args, done="sample")  # geometric: mean 1 / p(done)
    p = torch.tensor(done_logit).sigmoid().item()
    assert sampled.item() == pytest.approx(1 / p, rel=0.2)
    expected = dream_returns(*args, done="expected")  # sum_{t<50} (1 - p)^t, no sampling
    assert expected.item() == pytest.approx((1 - (1 - p) ** 50) / p, rel=1e-5)
    with pytest.raises(ValueError, match="done='coin'"):
        dream_returns(*args, done="coin")
    with pytest.raises(ValueError, match="done='coin'"):  # already when the run is configured
        DreamConfig(done="coin")


def test_weighted_done_is_calibrated_in_the_dream() -> None:
    mdn = MDNRNN(z_dim=2, action_dim=1, hidden=4, mixtures=1, done_weight=10.0).eval()
    with torch.no_grad():
        mdn.done.weight.zero_()
        mdn.done.bias.fill_(0.4)  # trained with done_weight 10: calibrated p = sigmoid(0.4 - ln 10)
        mdn.reward.weight.zero_()
        mdn.reward.bias.fill_(1.0)
    p = 1 / (1 + 10 * math.exp(-0.4))
    _, _, done_prob, _, _ = mdn.step(torch.zeros(1, 2), torch.zeros(1, 1), mdn.initial_state(1))
    assert done_prob.item() == pytest.approx(p, rel=1e-5)
    args = (mdn, LinearController(6, 1), torch.zeros(1, 7), torch.zeros(4, 2), lambda o: o, 50, 1.0)
    assert dream_returns(*args).item() == 1.0  # threshold: the weighted logit is positive
    assert dream_returns(*args, done="expected").item() == pytest.approx((1 - (1 - p) ** 50) / p, rel=1e-5)


def test_done_weight_is_the_bce_positive_weight() -> None:
    torch.manual_seed(0)
    mdn = MDNRNN(z_dim=2, action_dim=1, hidden=4, mixtures=1)
    z, action, reward = torch.randn(1, 3, 2), torch.randn(1, 3, 1), torch.zeros(1, 3)
    done, mask = torch.tensor([[0.0, 0.0, 1.0]]), torch.ones(1, 3)
    _, plain = mdn.loss(z, action, z, reward, done, mask)
    mdn.done_weight = 10.0
    _, weighted = mdn.loss(z, action, z, reward, done, mask)
    logit = mdn(z, action)[4][0]
    by_hand = (-F.logsigmoid(-logit[:2]).sum() - 10.0 * F.logsigmoid(logit[2])) / 3
    assert weighted["mdn/done_bce"] == pytest.approx(by_hand.item(), rel=1e-5)
    assert weighted["mdn/done_bce"] > plain["mdn/done_bce"]


def test_sequence_chunks_pad_and_mask() -> None:
    data = [
        {
            "actions": np.ones((5, 2), np.float32),
            "rewards": np.arange(5, dtype=np.float32),
            "dones": np.zeros(5, np.float32),
        }
    ]
    latents = [(torch.arange(6.0)[:, None].expand(6, 3), torch.zeros(6, 3))]
    chunks = sequence_chunks(data, latents, length=3)
    assert chunks["mu"].shape == (2, 4, 3) and chunks["actions"].shape == (2, 3, 2)
    assert chunks["mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert chunks["mu"][1, :, 0].tolist() == [3, 4, 5, 0]
    assert chunks["rewards"][1].tolist() == [3, 4, 0]


def test_run_vmc_end_to_end_on_fake_env(tmp_path) -> None:
    dream = DreamConfig(generations=2, population=4, rollouts=2, horizon=5)
    cfg = tiny_config(episodes=6, hidden=16, mdn_epochs=2, dream=dream)
    summary = run_vmc(cfg, tmp_path, env=FakeEnv())
    assert summary["data"]["frames"] == 6 * 13 and summary["version"] == package_version()
    assert set(summary["seconds"]) >= {"1_random_rollouts", "2_train_V", "3_train_M", "4_evolve_C_in_dream"}
    assert summary["real_return"]["controller"]["n"] == 2
    state, meta = load_checkpoint(tmp_path / "vmc.safetensors")
    assert state["controller"].shape == (1 * (4 + 16) + 1,) and meta["config"]["env"] == "fake"
    assert (tmp_path / "summary.json").is_file()
    # Step 2 can start from a saved V; with vae_epochs=0 it is used as is.
    again = run_vmc(
        replace(cfg, vae_init=str(tmp_path / "vmc.safetensors"), vae_epochs=0), tmp_path / "b", env=FakeEnv()
    )
    assert again["vae"] == {"loaded": str(tmp_path / "vmc.safetensors")}
    reloaded, _ = load_checkpoint(tmp_path / "b" / "vmc.safetensors")
    assert all(torch.equal(reloaded["vae"][k], state["vae"][k]) for k in state["vae"])


@pytest.mark.parametrize("workers", [1, 2])
def test_controller_evolved_on_real_returns_beats_random(tmp_path, workers) -> None:
    """``controller_env="real"`` (the paper's CarRacing recipe): CMA-ES scores C in the environment,
    on one or two processes. The fake env pays the action, so the best controller outputs +1 at
    every step (return 12)."""
    dream = DreamConfig(generations=8, population=8, rollouts=1, horizon=12, sigma0=0.5, eval_every=4)
    small = {"z_dim": 4, "vae_epochs": 1, "hidden": 8, "mdn_epochs": 1, "mdn_seq_len": 6, "eval_episodes": 3}
    cfg = VMCConfig(
        env="fake", episodes=4, max_steps=12, controller_env="real", workers=workers, dream=dream, **small
    )
    summary = run_vmc(cfg, tmp_path, env=FakeEnv())
    assert summary["cmaes"]["scored_in"] == "real" and "4_evolve_C_in_real" in summary["seconds"]
    real = summary["real_return"]
    mean = real["controller"]["mean"]
    assert mean > 6.0 and mean > real["random_policy"]["mean"] + 4.0
    assert summary["cmaes"]["last_generation_mean"] > summary["cmaes"]["first_generation_mean"]
    # step 5 on two processes plays the same episodes as the one-episode loop
    again = evaluate_run(tmp_path, cfg.eval_episodes, EVAL_SEED_OFFSET, env=FakeEnv())
    assert again["real_return"]["mean"] == pytest.approx(
        summary["real_return"]["controller"]["mean"], abs=1e-5
    )
    with pytest.raises(ValueError, match="controller_env='moon'.*dream, real"):
        VMCConfig(controller_env="moon")
    with pytest.raises(ValueError, match="rollouts, eval_rollouts < 1000"):  # at configuration time
        VMCConfig(controller_env="real", dream=DreamConfig(rollouts=1000))
    with pytest.raises(ValueError, match="workers >= 1 and patience >= 0, got 0 and 0"):
        VMCConfig(workers=0)


def test_unknown_env() -> None:
    with pytest.raises(VMCEnvError, match="'doom'"):
        make_vmc_env("doom")


def test_take_cover_action_map() -> None:
    out = torch.tensor([[-0.9], [0.0], [0.5]])
    assert TakeCover.action_map(out).tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]


def _held_runs(hold_max: int) -> tuple[list[int], set]:
    attrs = {"_hold": 0, "hold_max": hold_max, "action_map": staticmethod(TakeCover.action_map)}
    stub = type("Stub", (), attrs)()
    rng, prev, actions = np.random.default_rng(0), None, []
    for _ in range(4000):
        prev = TakeCover.random_action(stub, rng, prev)
        actions.append(tuple(prev))
    runs, length = [], 1
    for a, b in zip(actions, actions[1:], strict=False):
        if a == b:
            length += 1
        else:
            runs.append(length)
            length = 1
    return runs, set(actions)


@pytest.mark.parametrize("hold_max, low, high", [(10, 3.5, 12), (50, 20, 60)])
def test_take_cover_random_actions_are_held_for_one_to_hold_max_steps(hold_max, low, high) -> None:
    runs, actions = _held_runs(hold_max)
    # held 1 to hold_max steps (a new draw may repeat the old action, so runs can be longer)
    assert low < np.mean(runs) < high and actions == {(1.0, 0.0), (0.0, 0.0), (0.0, 1.0)}


class _NoEnv(FakeEnv):
    """Fails if step 1 tries to collect: the rollouts must come from the cache."""

    def reset(self, seed: int) -> np.ndarray:
        raise AssertionError("collected instead of loading the data cache")


def test_rollouts_are_saved_and_reused(tmp_path) -> None:
    cache = tmp_path / "data.npz"
    cfg = VMCConfig(env="fake", episodes=3, max_steps=12, data_cache=str(cache))
    data = rollouts(FakeEnv(), cfg)
    assert cache.is_file()
    again = rollouts(_NoEnv(), replace(cfg, episodes=2))  # a prefix of the saved episodes
    assert len(again) == 2
    for saved, loaded in zip(data, again, strict=False):
        assert saved.keys() == loaded.keys()
        assert all(np.array_equal(saved[k], loaded[k]) for k in saved)
        assert len(loaded["frames"]) == len(loaded["actions"]) + 1
    with pytest.raises(ValueError, match="episodes"):
        rollouts(_NoEnv(), replace(cfg, episodes=4))
    with pytest.raises(ValueError, match="holds rollouts of"):
        rollouts(_NoEnv(), replace(cfg, seed=1))
    with pytest.raises(ValueError, match="holds rollouts of"):
        rollouts(_NoEnv(), replace(cfg, hold_max=50))
    # extra_data: every episode of other rollout files of the same env is appended
    extra = tmp_path / "extra.npz"
    rollouts(FakeEnv(), replace(cfg, seed=5, data_cache=str(extra)))
    both = rollouts(_NoEnv(), replace(cfg, episodes=2, extra_data=f"{extra},{cache}"))
    assert len(both) == 2 + 3 + 3 and np.array_equal(both[5]["frames"], data[0]["frames"])
    with pytest.raises(ValueError, match="holds rollouts of"):
        rollouts(FakeEnv(), replace(cfg, env="other", data_cache="", extra_data=str(extra)))


def test_vae_frames_and_mdn_init(tmp_path, monkeypatch) -> None:
    seen: list[int] = []
    loss = ConvVAE.loss
    monkeypatch.setattr(ConvVAE, "loss", lambda self, x: (seen.append(len(x)), loss(self, x))[1])
    cfg = VMCConfig(
        env="fake",
        episodes=3,
        max_steps=12,
        z_dim=4,
        vae_epochs=1,
        vae_batch=4,
        vae_frames=8,
        hidden=8,
        mdn_epochs=1,
        mdn_seq_len=6,
        eval_episodes=1,
        dream=DreamConfig(generations=1, population=4, rollouts=2, horizon=3),
    )
    summary = run_vmc(cfg, tmp_path / "a", env=FakeEnv())
    assert summary["vae"]["vae/recon"] > 0 and seen == [4, 4]  # 8 of the 39 frames, in batches of 4
    ckpt = str(tmp_path / "a" / "vmc.safetensors")
    again = run_vmc(
        replace(cfg, vae_init=ckpt, vae_epochs=0, mdn_init=ckpt, mdn_epochs=0), tmp_path / "b", env=FakeEnv()
    )
    assert again["mdn"] == {"loaded": ckpt}
    first, second = load_checkpoint(ckpt)[0], load_checkpoint(tmp_path / "b" / "vmc.safetensors")[0]
    assert all(torch.equal(first["mdn"][k], second["mdn"][k]) for k in first["mdn"])
    # controller_init: CMA-ES starts at that C (a tiny step size keeps it there)
    tiny_steps = replace(cfg.dream, sigma0=1e-9)
    warm = replace(cfg, vae_init=ckpt, vae_epochs=0, mdn_init=ckpt, mdn_epochs=0, controller_init=ckpt)
    run_vmc(replace(warm, dream=tiny_steps), tmp_path / "c", env=FakeEnv())
    third = load_checkpoint(tmp_path / "c" / "vmc.safetensors")[0]
    assert first["controller"].abs().max() > 0.01
    torch.testing.assert_close(third["controller"], first["controller"], atol=1e-6, rtol=0)
    save_checkpoint(tmp_path / "v_only.safetensors", {"vae": first["vae"]})
    with pytest.raises(CheckpointError, match="v_only.safetensors holds no controller C"):
        run_vmc(
            replace(warm, controller_init=str(tmp_path / "v_only.safetensors")), tmp_path / "d", env=FakeEnv()
        )


@pytest.mark.parametrize("bias, flagged", [(10.0, 1.0), (-10.0, 0.0)])
def test_diagnose_reads_m_done_probability(bias, flagged) -> None:
    torch.manual_seed(0)
    vae, mdn = ConvVAE(4).eval(), MDNRNN(4, 2, 8, done_weight=10.0).eval()
    with torch.no_grad():
        mdn.done.weight.zero_()
        mdn.done.bias.fill_(bias)
    rng = np.random.default_rng(0)
    data = [
        {
            "frames": rng.integers(0, 255, (t + 1, 64, 64, 3), dtype=np.uint8),
            "actions": np.zeros((t, 2), np.float32),
            "dones": np.eye(1, t, t - 1, dtype=np.float32)[0],
        }
        for t in (9, 12)
    ]
    report = v_and_m_report(vae, mdn, data, k=3)
    assert report["steps"] == [9, 12] and len(report["_latents"]) == 2
    expected = torch.tensor(bias - math.log(10.0)).sigmoid().item()
    assert report["m_done_prob_at_death"] == pytest.approx(expected, rel=1e-5)
    assert report["m_deaths_above_threshold"] == flagged == report["m_false_alarms_before_last_3"]
    assert report["v_recon_error"] > 0


def test_constant_controller_params() -> None:
    controller = LinearController(5, 1)
    out = controller(constant_params(controller, -3.0)[None], torch.randn(1, 4, 5))
    assert torch.allclose(out, torch.full((1, 4, 1), math.tanh(-3.0)))


def _full_batch_dream(mdn, controller, params, start_z, horizon, tau) -> torch.Tensor:
    """The dream without dropping ended rows (threshold done), as a reference."""
    pop, rollouts = params.shape[0], start_z.shape[0]
    z, state = start_z.repeat(pop, 1), mdn.initial_state(pop * rollouts)
    h, alive = torch.zeros(pop * rollouts, mdn.hidden), torch.ones(pop * rollouts)
    total = torch.zeros_like(alive)
    for _ in range(horizon):
        out = controller(params, torch.cat([z, h], -1).reshape(pop, rollouts, -1)).reshape(pop * rollouts, -1)
        z, reward, prob, h, state = mdn.step(z, out, state, tau)
        total += alive * reward
        alive = alive * (prob <= 1 / (1 + mdn.done_weight)).float()
    return total.reshape(pop, rollouts).mean(1)


def test_dream_drops_ended_rollouts_without_changing_returns() -> None:
    torch.manual_seed(0)
    mdn = MDNRNN(z_dim=3, action_dim=1, hidden=8, mixtures=2, done_weight=1.0).eval()
    with torch.no_grad():
        mdn.done.weight.mul_(8.0)  # rollouts end at different steps
        mdn.done.bias.fill_(-1.0)
        mdn.reward.bias.fill_(1.0)
    ctrl = LinearController(3 + 8, 1)
    params, start = torch.randn(5, ctrl.num_params), torch.randn(4, 3)
    torch.manual_seed(1)
    fast = dream_returns(mdn, ctrl, params, start, lambda o: o, 30, 1e-6)
    torch.manual_seed(1)
    slow = _full_batch_dream(mdn, ctrl, params, start, 30, 1e-6)
    assert torch.allclose(fast, slow, atol=1e-3)
    assert fast.min() < fast.max()  # candidates' rollouts ended at different steps
    features, candidate = torch.randn(7, 3 + 8), torch.tensor([4, 0, 0, 2, 1, 3, 4])
    rowwise = ctrl.rows(params, features, candidate)
    pairs = zip(features, candidate, strict=True)
    looped = torch.stack([ctrl(params[c][None], f[None, None])[0, 0] for f, c in pairs])
    assert torch.allclose(rowwise, looped, atol=1e-6)


@pytest.mark.parametrize("lives, expected", [(1, 2.0), (2, 6.0), (3, 9.0), (4, 12.0)])
def test_dream_lives_count_rising_done_events(lives, expected) -> None:
    mdn = MDNRNN(z_dim=2, action_dim=1, hidden=4, mixtures=1, done_weight=1.0).eval()
    above = {2, 3, 6, 9}  # done fires at steps 2-3 (one event), 6 and 9
    step = iter(range(1, 100))

    def scripted(z, action, state, tau):
        t = next(step)
        prob = torch.full((len(z),), 0.9 if t in above else 0.1)
        return z, torch.ones(len(z)), prob, torch.zeros(len(z), 4), state

    mdn.step = scripted
    args = (mdn, LinearController(6, 1), torch.zeros(1, 7), torch.zeros(3, 2), lambda o: o, 12, 1.0)
    ret = dream_returns(*args, lives=lives)
    assert ret.item() == expected
    with pytest.raises(ValueError, match="lives"):
        DreamConfig(done="expected", lives=2)

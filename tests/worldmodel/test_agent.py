"""Agent: acting, training from replay, bad input, optimisers and checkpoint round trips."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldmodel.agent import Agent, AgentInputError, LaProp, TrainingDivergedError, clip_adaptive
from worldmodel.behavior import ActionSpaceError, ActionSpec
from worldmodel.checkpoint import load_checkpoint, save_checkpoint
from worldmodel.presets import dreamer_config, updates_per_env_step
from worldmodel.replay import Replay

TINY = [
    "model.deter=16", "model.hidden=16", "model.stoch=4", "model.classes=4", "model.units=16",
    "model.cnn_depth=2", "batch_size=2", "batch_length=6", "behavior.horizon=3",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_agent(preset="xs", extra=(), obs_space=None, action_space=None):
    torch.manual_seed(0)
    cfg = dreamer_config(preset, [*TINY, *extra])
    return Agent(obs_space or {"vector": (4,)}, action_space or gym.spaces.Discrete(2), cfg)


def filled_replay(path, steps=40, image=False):
    replay = Replay(path, capacity=200, seed=0)
    rng = np.random.default_rng(0)
    for t in range(steps):
        step = {
            "vector": rng.normal(size=4).astype(np.float32),
            "action": np.eye(2, dtype=np.float32)[t % 2] * (t % 10 != 0),
            "reward": np.float32(t % 3 == 0), "is_first": np.bool_(t % 10 == 0),
            "is_last": np.bool_(t % 10 == 9), "is_terminal": np.bool_(t % 10 == 9),
        }
        if image:
            step["image"] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        replay.add(step)
    return replay


def test_policy_shapes_modes_and_reset():
    agent = make_agent()
    obs = {"vector": torch.randn(3, 4)}
    action, state = agent.policy(obs)
    assert action.shape == (3, 2) and torch.equal(action.sum(-1), torch.ones(3))
    agent.spec.check(action)
    greedy, state = agent.policy(obs, state, mode="greedy")
    assert greedy.shape == (3, 2)
    first = {**obs, "is_first": torch.tensor([True, False, True])}
    _, reset = agent.policy(first, state)
    _, fresh = agent.policy(obs, agent.initial_state(3))
    assert torch.allclose(reset["rssm"]["deter"][0], fresh["rssm"]["deter"][0])
    assert not torch.allclose(reset["rssm"]["deter"][1], fresh["rssm"]["deter"][1])


def test_train_from_replay_changes_weights_and_reports_metrics(tmp_path):
    agent = make_agent()
    replay = filled_replay(tmp_path)
    before = [p.clone() for p in agent.wm.parameters()]
    actor_before = [p.clone() for p in agent.ac.actor.parameters()]
    metrics = agent.train(replay.sample(2, 6))
    assert agent.updates == 1
    for key in ("loss/model", "loss/reward", "actor/loss", "critic/loss", "imag/return", "grad/model"):
        assert math.isfinite(metrics[key]), key
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.wm.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, agent.ac.actor.parameters(), strict=True))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_image_observations_and_continuous_actions(tmp_path, precision):
    space = gym.spaces.Box(-1, 1, (2,))
    agent = make_agent(obs_space={"vector": (4,), "image": (64, 64, 3)}, action_space=space,
                       extra=["behavior.imag_starts=5", f"precision={precision}"])
    obs = {"vector": torch.randn(2, 4), "image": torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)}
    action, _ = agent.policy(obs)
    assert action.shape == (2, 2) and action.abs().max() <= 1
    replay = filled_replay(tmp_path, image=True)
    batch = replay.sample(2, 6)
    batch["action"] = batch["action"] * 0.5
    assert math.isfinite(agent.train(batch)["loss/recon_image"])


def test_bad_observations_name_key_step_expected_and_got():
    agent = make_agent()
    obs = {"vector": torch.randn(3, 4)}
    obs["vector"][1, 2] = float("nan")
    with pytest.raises(AgentInputError, match=r"'vector' has NaN or inf at policy call 0, index \(1,\)"):
        agent.policy(obs)
    with pytest.raises(AgentInputError, match=r"expected shape \(3, 4\), got \(3, 5\)"):
        agent.policy({"vector": torch.randn(3, 5)})
    with pytest.raises(AgentInputError, match="expected dtype float, got torch.int64"):
        agent.policy({"vector": torch.ones(3, 4, dtype=torch.long)})
    with pytest.raises(AgentInputError, match=r"'image' \(policy call 0\): expected shape \(3, 64, 64, 3\)"):
        make_agent(obs_space={"vector": (4,), "image": (64, 64, 3)}).policy(
            {"vector": torch.randn(3, 4), "image": torch.zeros(2, 64, 64, 3, dtype=torch.uint8)}
        )
    with pytest.raises(AgentInputError, match="'vector' is missing"):
        agent.policy({"image": torch.ones(3, 4)})


def test_bad_training_batches(tmp_path):
    agent = make_agent()
    batch = filled_replay(tmp_path).sample(2, 6)
    bad = {**batch, "vector": batch["vector"].clone()}
    bad["vector"][1, 4, 0] = float("inf")
    with pytest.raises(AgentInputError, match=r"NaN or inf at training batch, index \(1, 4\)"):
        agent.train(bad)
    with pytest.raises(AgentInputError, match=r"'action': expected shape \(2, 6, 2\), got \(2, 6, 3\)"):
        agent.train({**batch, "action": torch.zeros(2, 6, 3)})
    with pytest.raises(AgentInputError, match="missing 'reward'"):
        agent.train({k: v for k, v in batch.items() if k != "reward"})


def test_action_checks():
    discrete, cont = ActionSpec(True, 3), ActionSpec(False, 2)
    discrete.check(torch.tensor([[0.0, 1.0, 0.0]]))
    cont.check(torch.tensor([[0.5, -1.0]]))
    with pytest.raises(ActionSpaceError, match="one-hot"):
        discrete.check(torch.tensor([[0.0, 1.0, 1.0]]))
    with pytest.raises(ActionSpaceError, match=r"outside \[-1, 1\]"):
        cont.check(torch.tensor([[1.5, 0.0]]))
    with pytest.raises(ActionSpaceError, match="NaN"):
        cont.check(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ActionSpaceError, match=r"expected shape \[..., 2\], got \(3,\)"):
        cont.check(torch.zeros(3))


def test_laprop_first_step_moves_by_lr_times_sign():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = LaProp([p], lr=0.1, eps=1e-20)
    p.grad = torch.tensor([4.0, -0.5, 0.0])
    opt.step()
    # first step: v_hat = g^2, m_hat = g / |g| -> p -= lr * sign(g)  (0 stays 0)
    assert torch.allclose(p.detach(), torch.tensor([0.9, -1.9, 3.0]))


def test_adaptive_gradient_clipping():
    big = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    big.grad = torch.tensor([6.0, 8.0])  # norm 10 > 0.3 * 5
    small = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    small.grad = torch.tensor([0.3, 0.4])  # norm 0.5 < 1.5: untouched
    norm = clip_adaptive([big, small], ratio=0.3)
    assert norm == pytest.approx(math.sqrt(100 + 0.25))
    assert torch.allclose(big.grad, torch.tensor([0.9, 1.2]))
    assert torch.allclose(small.grad, torch.tensor([0.3, 0.4]))


def test_nature_preset_trains_with_laprop_agc_and_block_gru(tmp_path):
    agent = make_agent("1m", extra=["model.gru_blocks=4"])
    assert agent.config.optim.name == "laprop" and agent.config.loss.dyn == 1.0
    assert isinstance(agent.model_opt.opt, LaProp)
    metrics = agent.train(filled_replay(tmp_path).sample(2, 6))
    assert math.isfinite(metrics["loss/model"])


def test_checkpoint_round_trip_resumes_identically(tmp_path):
    replay = filled_replay(tmp_path / "replay")
    agent = make_agent()
    agent.train(replay.sample(2, 6))
    save_checkpoint(tmp_path / "agent.safetensors", agent.state_dict(), {"preset": "xs"})
    batch = replay.sample(2, 6)
    torch.manual_seed(7)
    expected = agent.train(batch)
    restored = make_agent()
    state, _ = load_checkpoint(tmp_path / "agent.safetensors")
    restored.load_state_dict(state)
    assert restored.updates == 1
    torch.manual_seed(7)
    got = restored.train(batch)
    assert got["loss/model"] == pytest.approx(expected["loss/model"], rel=1e-6)
    assert got["actor/loss"] == pytest.approx(expected["actor/loss"], rel=1e-5)


def test_presets_and_train_ratio_conversion():
    cfg = dreamer_config("s", ["train_ratio=512"])
    assert updates_per_env_step(cfg) == pytest.approx(0.5)  # sheeprl replay_ratio = 512 / (16 * 64)
    assert dreamer_config("12m").model.deter == 2048 and dreamer_config("12m").model.gru_blocks == 8
    assert dreamer_config("xs").optim.name == "adam" and dreamer_config("xs").loss.dyn == 0.5
    with pytest.raises(ValueError, match="unknown preset 'xxl'"):
        dreamer_config("xxl")
    with pytest.raises(ValueError, match="unknown config key"):
        dreamer_config("xs", ["model.detr=3"])


def test_divergence_raises_before_the_update_is_applied(tmp_path):
    agent = make_agent()
    batch = filled_replay(tmp_path).sample(2, 6)
    with torch.no_grad():
        agent.wm.reward.mlp[-1].bias.fill_(float("nan"))
    before = [p.clone() for p in agent.wm.encoders.parameters()]
    with pytest.raises(TrainingDivergedError, match="the model loss is nan at update 0"):
        agent.train(batch)
    assert all(torch.equal(a, b) for a, b in zip(before, agent.wm.encoders.parameters(), strict=True))


def test_bfloat16_precision_tracks_float32_keeps_states_float32_and_learns(tmp_path):
    """bf16 autocast changes the numbers of one update by rounding only; the GRU state, latents and
    every distribution stay float32; and a fixed batch is still fitted (the model loss falls)."""
    batch = filled_replay(tmp_path).sample(2, 6)
    first = {}
    for precision in ("float32", "bfloat16"):
        agent = make_agent(extra=[f"precision={precision}"])
        first[precision] = agent.train(batch)
    for key in ("loss/model", "loss/reward", "loss/dyn", "critic/loss"):
        assert first["bfloat16"][key] == pytest.approx(first["float32"][key], rel=0.05, abs=0.02), key

    agent = make_agent(extra=["precision=bfloat16", "optim.model_lr=3e-3"])
    with agent._autocast():
        _, post, _ = agent.wm.loss(agent._prepare(batch))
    assert all(v.dtype == torch.float32 for v in post.values())
    losses = [agent.train(batch)["loss/model"] for _ in range(40)]  # float32: 8.3 -> 4.9
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    with pytest.raises(ValueError, match="precision='fp8' is not one of float32, bfloat16"):
        make_agent(extra=["precision=fp8"])

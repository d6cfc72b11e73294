"""Actor-critic in imagination: action specs, no world-model gradient, learning on a toy model."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from worldmodel.behavior import ActionSpaceError, ActionSpec, ActorCritic
from worldmodel.math import lambda_return
from worldmodel.presets import BehaviorConfig, LossConfig, ModelConfig
from worldmodel.world_model import WorldModel

TINY = ModelConfig(
    deter=16, stoch=4, classes=4, hidden=16, units=32, enc_layers=1, head_layers=1, ac_layers=1
)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_action_spec_from_spaces():
    assert ActionSpec.from_space(gym.spaces.Discrete(3)) == ActionSpec(True, 3)
    assert ActionSpec.from_space(gym.spaces.Box(-1, 1, (2,))) == ActionSpec(False, 2)
    with pytest.raises(ActionSpaceError, match=r"\[-1, 1\]"):
        ActionSpec.from_space(gym.spaces.Box(-2, 2, (2,)))
    with pytest.raises(ActionSpaceError, match="unsupported"):
        ActionSpec.from_space(gym.spaces.Box(-1, 1, (2, 2)))
    with pytest.raises(ActionSpaceError, match=">= 1"):
        ActionSpec(True, 0)


def test_discrete_actor_unimix_and_modes():
    torch.manual_seed(0)
    ac = ActorCritic(6, ActionSpec(True, 4), TINY, BehaviorConfig(actor_unimix=0.01))
    nn.init.constant_(ac.actor.mlp[-1].bias, 0.0)
    ac.actor.mlp[-1].bias.data[0] = 100.0  # a near-deterministic policy
    feat = torch.randn(5, 6)
    probs = ac.actor.dist(feat).probs
    assert probs.min().item() >= 0.01 / 4 - 1e-6
    greedy = ac.actor.act(feat, "greedy")
    assert torch.equal(greedy, torch.nn.functional.one_hot(torch.zeros(5, dtype=torch.long), 4).float())
    assert ac.actor.act(feat).shape == (5, 4)
    with pytest.raises(ActionSpaceError, match="greedy"):
        ac.actor.act(feat, "best")


def test_continuous_actor_bounds():
    torch.manual_seed(0)
    cfg = BehaviorConfig(min_std=0.1, max_std=1.0)
    ac = ActorCritic(6, ActionSpec(False, 3), TINY, cfg)
    feat = torch.randn(200, 6) * 10
    action = ac.actor.act(feat)
    assert action.shape == (200, 3) and action.abs().max() <= 1.0
    std = ac.actor.dist(feat).base_dist.scale
    assert std.min() >= 0.1 and std.max() <= 1.0
    assert ac.actor.act(feat, "greedy").abs().max() <= 1.0


def test_horizon_curriculum_and_slow_critic_ema():
    cfg = BehaviorConfig(horizon=15, horizon_start=5, horizon_ramp=100)
    ac = ActorCritic(6, ActionSpec(True, 2), TINY, cfg)
    assert [ac.horizon(u) for u in (0, 50, 100, 1000)] == [5, 10, 15, 15]
    assert ActorCritic(6, ActionSpec(True, 2), TINY, BehaviorConfig()).horizon(0) == 15
    with torch.no_grad():
        for p in ac.critic.parameters():
            p.fill_(1.0)
        for p in ac.slow_critic.parameters():
            p.fill_(0.0)
    ac.update_slow_critic()
    assert all(torch.allclose(p, torch.full_like(p, 0.02)) for p in ac.slow_critic.parameters())


def test_actor_and_critic_losses_send_no_gradient_into_the_world_model():
    torch.manual_seed(0)
    wm = WorldModel({"vector": (3,)}, 2, TINY, LossConfig())
    ac = ActorCritic(wm.rssm.feat_dim, ActionSpec(True, 2), TINY, BehaviorConfig(horizon=4))
    batch = {
        "vector": torch.randn(2, 5, 3), "action": torch.zeros(2, 5, 2),
        "is_first": torch.zeros(2, 5, dtype=torch.bool),
    }
    post, _ = wm.rssm.observe(wm.encode(batch), batch["action"], batch["is_first"])
    start = {k: v.reshape(10, *v.shape[2:]) for k, v in post.items()}
    traj = ac.imagine(wm, start, torch.ones(10), ac.horizon(0))
    assert traj["feat"].shape == (10, 5, wm.rssm.feat_dim) and traj["action"].shape == (10, 4, 2)
    actor_loss, critic_loss, metrics = ac.loss(traj)
    (actor_loss + critic_loss).backward()
    assert all(p.grad is None for p in wm.parameters())
    assert all(p.grad is not None for p in ac.actor.parameters())
    assert ac.critic.mlp[-1].weight.grad.abs().sum() > 0
    assert all(np.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("discrete", [True, False])
def test_loss_reusing_the_imagined_actor_outputs_equals_running_the_actor_again(discrete):
    torch.manual_seed(0)
    wm = WorldModel({"vector": (3,)}, 2, TINY, LossConfig())
    ac = ActorCritic(wm.rssm.feat_dim, ActionSpec(discrete, 2), TINY, BehaviorConfig(horizon=4))
    twin = copy.deepcopy(ac)  # same weights and return normaliser state
    start = wm.rssm.initial_state(6)
    traj = ac.imagine(wm, start, torch.ones(6), ac.horizon(0))
    assert traj["actor_out"].shape == (6, 4, 2 if discrete else 4) and traj["actor_out"].requires_grad
    reused, _, _ = ac.loss(traj)
    again, _, _ = twin.loss({k: v for k, v in traj.items() if k != "actor_out"})
    reused.backward()
    again.backward()
    assert reused.item() == pytest.approx(again.item(), rel=1e-6)
    for p, q in zip(ac.actor.parameters(), twin.actor.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7)


class ToyModel(nn.Module):
    """Imagination stand-in: the feature is the one-hot of the last action; reward 1 for action 0."""

    def __init__(self):
        super().__init__()
        self.rssm, self.reward, self.cont = self, self, self

    def imagine(self, start, policy, horizon):
        feats, actions, feat = [start["feat"]], [], start["feat"]
        for _ in range(horizon):
            action = policy(feat)
            feat = action
            feats.append(feat)
            actions.append(action)
        return {"feat": torch.stack(feats, 1)}, torch.stack(actions, 1)

    def feat(self, states):
        return states["feat"]

    def mean(self, feat):
        return feat[..., 0]

    def prob(self, feat):
        return torch.ones(feat.shape[:-1])


def train_in_imagination(ac, toy, start_feat, steps, lr):
    """Adam on actor + critic from ``start_feat [N, F]``; returns per-step metrics and the last trajectory."""
    opt = torch.optim.Adam([*ac.actor.parameters(), *ac.critic.parameters()], lr=lr)
    history = []
    for _ in range(steps):
        traj = ac.imagine(toy, {"feat": start_feat}, torch.ones(len(start_feat)), ac.cfg.horizon)
        actor_loss, critic_loss, metrics = ac.loss(traj)
        opt.zero_grad()
        (actor_loss + critic_loss).backward()
        opt.step()
        ac.update_slow_critic()
        history.append(metrics)
    return history, traj


def test_actor_improves_imagined_return_on_a_toy_model():
    torch.manual_seed(0)
    cfg = BehaviorConfig(horizon=5, gamma=0.9, entropy=1e-3)
    ac = ActorCritic(2, ActionSpec(True, 2), TINY, cfg)
    history, _ = train_in_imagination(ac, ToyModel(), torch.eye(2).repeat(32, 1), steps=150, lr=3e-3)
    returns = [m["imag/reward"] for m in history]
    assert np.mean(returns[:5]) < 0.7
    assert np.mean(returns[-5:]) > 0.9


def test_losses_on_a_hand_made_trajectory():
    torch.manual_seed(0)
    gamma, lam, ent = 0.9, 0.5, 0.1
    cfg = BehaviorConfig(gamma=gamma, lam=lam, entropy=ent, slow_critic_reg=0.0)
    ac = ActorCritic(3, ActionSpec(True, 2), TINY, cfg)
    traj = {
        "feat": torch.randn(1, 3, 3),
        "action": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]),
        "reward": torch.tensor([[0.0, 1.0, 1.0]]),
        "cont": torch.tensor([[1.0, 1.0, 0.0]]),
    }
    actor_loss, critic_loss, metrics = ac.loss(traj)
    # zero-initialised critic: v = 0, so R1 = 1 and R0 = 1 + gamma * lam * R1
    ret = torch.tensor([[1 + gamma * lam, 1.0]])
    assert metrics["imag/return"] == pytest.approx(ret.mean().item())
    weight = torch.tensor([[1.0, gamma]])  # cumprod of gamma * cont, divided by gamma
    dist = ac.actor.dist(traj["feat"][:, :-1])
    logp = dist.log_prob(torch.tensor([[0, 1]]))
    expected = -(weight * (logp * ret + ent * dist.entropy())).mean()  # return scale stays 1
    assert actor_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    twohot_ce = ac.critic.twohot.loss(ac.critic(traj["feat"][:, :-1]), ret)
    assert critic_loss.item() == pytest.approx((weight * twohot_ce).mean().item(), rel=1e-5)


def test_replay_value_loss_uses_real_rewards_and_imagined_bootstraps():
    torch.manual_seed(0)
    cfg = BehaviorConfig(gamma=0.9, lam=0.5, slow_critic_reg=0.0, repval=0.3)
    ac = ActorCritic(3, ActionSpec(True, 2), TINY, cfg)
    replay = {
        "feat": torch.randn(1, 3, 3), "reward": torch.tensor([[0.0, 1.0, 1.0]]),
        "is_terminal": torch.zeros(1, 3, dtype=torch.bool), "is_last": torch.tensor([[False, True, False]]),
    }
    boot = torch.tensor([[5.0, 6.0, 7.0]])
    loss = ac.replay_value_loss(replay, boot)
    # R1 = 1 + .9 * 7 = 7.3 ; R0 = 1 + .9 * 6 = 6.4 (the episode ends at step 1: no chaining)
    target = torch.tensor([[6.4, 7.3]])
    expected = ac.critic.twohot.loss(ac.critic(replay["feat"][:, :2]), target).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # inside `loss`, the replay term is added with weight repval, bootstrapped from the
    # imagined returns of the B*T = 3 starts (the critic starts at 0, so they are known)
    traj = {
        "feat": torch.randn(3, 3, 3), "action": torch.eye(2)[torch.tensor([[0, 1], [1, 1], [0, 0]])],
        "reward": torch.tensor([[0.0, 1.0, 2.0]] * 3), "cont": torch.ones(3, 3),
    }
    imagined = lambda_return(traj["reward"][:, 1:], traj["cont"][:, 1:], torch.zeros(3, 2), 0.9, 0.5)
    _, with_replay, _ = ac.loss(traj, replay)
    _, without, _ = ac.loss(traj)
    expected = 0.3 * ac.replay_value_loss(replay, imagined[:, 0].reshape(1, 3))
    assert (with_replay - without).item() == pytest.approx(expected.item(), rel=1e-4)


class ContinuousToyModel(ToyModel):
    """Feature ``[a, 1]`` after action ``a``; reward ``-(a - 0.5)^2 - 3`` (negative, like
    Pendulum, so the advantages of the zero-initialised critic start well below 0)."""

    def imagine(self, start, policy, horizon):
        feats, actions, feat = [start["feat"]], [], start["feat"]
        for _ in range(horizon):
            action = policy(feat)
            feat = torch.cat([action, torch.ones_like(action)], -1)
            feats.append(feat)
            actions.append(action)
        return {"feat": torch.stack(feats, 1)}, torch.stack(actions, 1)

    def mean(self, feat):
        return -(feat[..., 0] - 0.5).pow(2) - 3.0


def test_imagined_continuous_samples_are_unclipped_but_the_model_sees_clipped_actions():
    torch.manual_seed(0)
    ac = ActorCritic(2, ActionSpec(False, 1), TINY, BehaviorConfig(horizon=3))
    traj = ac.imagine(ContinuousToyModel(), {"feat": torch.zeros(256, 2)}, torch.ones(256), 3)
    sample, action = traj["sample"], traj["action"]
    assert sample.shape == (256, 3, 1) and sample.abs().max() > 1.0  # std ~0.9: some samples exceed 1
    assert torch.equal(action, sample.clamp(-1.0, 1.0))
    assert torch.equal(traj["feat"][:, 1:, :1], action)  # the world model was fed the clipped action


def test_continuous_actor_moves_to_the_rewarded_action_and_sharpens():
    """Before the fix the log-prob was taken at the clipped action: with the negative
    advantages of this toy the std grew towards max_std and the mean overshot to ~0.8."""
    torch.manual_seed(0)
    cfg = BehaviorConfig(horizon=5, gamma=0.9)
    ac = ActorCritic(2, ActionSpec(False, 1), TINY, cfg)
    history, traj = train_in_imagination(ac, ContinuousToyModel(), torch.zeros(64, 2), steps=200, lr=1e-3)
    entropies = [m["actor/entropy"] for m in history]
    with torch.no_grad():
        dist = ac.actor.dist(traj["feat"][:, :-1])
    assert np.mean(entropies[-10:]) < np.mean(entropies[:10]) - 0.1
    assert 0.35 < dist.mean.mean().item() < 0.7


def test_dynamics_backprop_advantage_by_hand():
    # the critic's output layer starts at zero: value 0 and no gradient through it, so the
    # objective is the lambda-return of the rewards alone, R_0 = r_1 + gamma lam r_2, R_1 = r_2
    cfg = BehaviorConfig(gamma=0.9, lam=0.5, actor_grad="dynamics")
    ac = ActorCritic(3, ActionSpec(False, 1), TINY, cfg)
    reward = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    traj = {"feat": torch.randn(1, 3, 3, requires_grad=True), "reward": reward, "cont": torch.ones(1, 3)}
    adv = ac.backprop_advantage(traj) * ac.retnorm.scale()
    assert adv.detach()[0].tolist() == pytest.approx([1.0 + 0.45 * 2.0, 2.0])
    adv.sum().backward()
    assert reward.grad[0].tolist() == pytest.approx([0.0, 1.0, 1.45])
    assert all(p.grad is None for p in ac.critic.parameters())  # frozen: the gradient only passes through
    assert all(p.requires_grad for p in ac.critic.parameters())  # and unfrozen afterwards


def test_dynamics_actor_loss_reaches_the_actor_through_the_frozen_world_model():
    torch.manual_seed(0)
    wm = WorldModel({"vector": (3,)}, 2, TINY, LossConfig())
    cfg = BehaviorConfig(horizon=4, actor_grad="dynamics")
    ac = ActorCritic(wm.rssm.feat_dim, ActionSpec(False, 2), TINY, cfg)
    start = {k: v.detach() for k, v in wm.rssm.initial_state(64).items()}  # as replayed starts are
    traj = ac.imagine(wm, start, torch.ones(64), 4)
    assert traj["feat"].requires_grad and traj["reward"].requires_grad
    assert torch.equal(traj["action"].detach(), traj["sample"].detach().clamp(-1.0, 1.0))
    actor_loss, _, _ = ac.loss(traj)
    actor_loss.backward()
    assert all(p.grad is None for p in [*wm.parameters(), *ac.critic.parameters()])
    assert all(p.requires_grad for p in wm.parameters())
    first = ac.actor.mlp[0].weight.grad
    assert first is not None and first.abs().sum() > 0
    with pytest.raises(ActionSpaceError, match="needs continuous actions"):
        ActorCritic(3, ActionSpec(True, 2), TINY, BehaviorConfig(actor_grad="dynamics"))
    with pytest.raises(ActionSpaceError, match="'reinforce' or 'dynamics'"):
        ActorCritic(3, ActionSpec(False, 2), TINY, BehaviorConfig(actor_grad="backprop"))


def test_dynamics_backprop_actor_moves_to_the_rewarded_action():
    torch.manual_seed(0)
    cfg = BehaviorConfig(horizon=5, gamma=0.9, actor_grad="dynamics")
    ac = ActorCritic(2, ActionSpec(False, 1), TINY, cfg)
    history, traj = train_in_imagination(ac, ContinuousToyModel(), torch.zeros(64, 2), steps=80, lr=1e-3)
    rewards = [m["imag/reward"] for m in history]
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.25
    with torch.no_grad():  # after the first step (the start state is not [a, 1]) the mean is near 0.5
        assert 0.4 < ac.actor.dist(traj["feat"][:, 1:-1]).mean.mean().item() < 0.7

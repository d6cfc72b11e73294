"""Behaviour learning in imagination (DreamerV3 actor-critic).

From every replayed posterior state the world model imagines ``horizon`` steps under
the actor (prior only, no gradient). On the imagined states:

* the critic (two-hot over symlog bins) regresses lambda-returns and is regularised
  towards a slow EMA copy of itself;
* the actor maximises ``logpi(a_t | s_t) * sg((R_t - v(s_t)) / scale)`` (REINFORCE for
  both action kinds, as in the Nature version of DreamerV3) plus an entropy bonus, where
  ``scale`` is the percentile return normaliser.

Continuous actions: the world model (like the environment) receives the action clipped
to [-1, 1], but the log-probability is taken at the *unclipped* sample ``u ~ pi``. The
clipping is then part of the (imagined) environment and the score function stays
unbiased. Evaluating the normal's density at the clipped value instead shrinks
``|a - mean|`` for every clipped sample, so ``E[d logpi / d std] < 0``; multiplied by
the large negative advantages of an early critic (negative rewards, value ~ 0) this
pushed the std to ``max_std`` and kept the actor from learning (Pendulum-v1).

The world model only ever runs under ``torch.no_grad`` here and the actor/critic see
detached features, so no gradient from these losses reaches the world model. The actor's
outputs computed while imagining keep their graph (to the actor's weights only) and the
actor loss reuses them rather than running the actor over all imagined states again.

``actor_grad="dynamics"`` (continuous actions; the 2023 DreamerV3's ``actor_grad_cont:
backprop``, DreamerV1/V2's dynamics backpropagation) instead imagines with reparameterised
actions and a graph through the frozen world model, and the actor maximises the normalised
advantage itself, whose gradient flows through the reward head, the (frozen) critic and
the imagined states back to every action.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, Normal

from worldmodel.heads import TwoHotHead
from worldmodel.math import ReturnNormalizer, lambda_return, unimix_logits
from worldmodel.nets import MLP
from worldmodel.presets import BehaviorConfig, ModelConfig


class ActionSpaceError(ValueError):
    """An action space or an action that the agent cannot handle."""


@dataclass(frozen=True)
class ActionSpec:
    """What the actor outputs: ``discrete`` one-hot vectors of size ``dim`` (n actions),
    or continuous vectors of size ``dim`` in [-1, 1]."""

    discrete: bool
    dim: int

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ActionSpaceError(f"action dimension must be >= 1, got {self.dim}")

    @classmethod
    def from_space(cls, space: Any) -> ActionSpec:
        """From an `ActionSpec`, a gymnasium ``Discrete(n)`` or a 1-D ``Box`` in [-1, 1]."""
        if isinstance(space, ActionSpec):
            return space
        if hasattr(space, "n"):
            return cls(True, int(space.n))
        shape = getattr(space, "shape", None)
        if shape is not None and len(shape) == 1:
            low, high = getattr(space, "low", None), getattr(space, "high", None)
            if low is not None and (float(min(low)) < -1 or float(max(high)) > 1):
                raise ActionSpaceError(f"continuous actions must lie in [-1, 1]; got bounds {low}..{high}")
            return cls(False, int(shape[0]))
        raise ActionSpaceError(f"unsupported action space {space!r}: use Discrete(n) or a 1-D Box")

    def check(self, action: Tensor) -> None:
        """Raise `ActionSpaceError` unless ``action [..., A]`` is in the space: one-hot
        rows for discrete actions, finite values in [-1, 1] for continuous ones."""
        action = torch.as_tensor(action)
        if action.dim() == 0 or action.shape[-1] != self.dim:
            raise ActionSpaceError(f"action: expected shape [..., {self.dim}], got {tuple(action.shape)}")
        if not bool(torch.isfinite(action).all()):
            raise ActionSpaceError("action contains NaN or inf")
        if self.discrete:
            binary = ((action == 0) | (action == 1)).all(-1)
            if not bool((binary & (action.sum(-1) == 1)).all()):
                raise ActionSpaceError(f"discrete action is not one-hot of size {self.dim}: {action}")
        elif bool((action.abs() > 1).any()):
            peak = action.abs().max().item()
            raise ActionSpaceError(f"continuous action outside [-1, 1]: max |a| = {peak:.3g}")


class Actor(nn.Module):
    """Policy head. ``feat [..., F]`` -> a distribution over ``[..., A]`` actions.

    Discrete: categorical with ``unimix`` uniform mixture, samples are one-hot.
    Continuous: normal with mean ``tanh(mu)`` and std in ``[min_std, max_std]``
    (bounded normal); samples are clipped to [-1, 1].
    """

    def __init__(self, feat_dim: int, spec: ActionSpec, model: ModelConfig, cfg: BehaviorConfig) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg
        out = spec.dim if spec.discrete else 2 * spec.dim
        self.mlp = MLP(feat_dim, out, model.units, model.ac_layers)

    def dist(self, feat: Tensor) -> torch.distributions.Distribution:
        return self.dist_from(self.mlp(feat))

    def dist_from(self, out: Tensor) -> torch.distributions.Distribution:
        """The distribution for MLP outputs ``out [..., A or 2A]``."""
        if self.spec.discrete:
            return Categorical(logits=unimix_logits(out, self.cfg.actor_unimix))
        mean, std = out.chunk(2, -1)
        std = (self.cfg.max_std - self.cfg.min_std) * torch.sigmoid(std + 2.0) + self.cfg.min_std
        return Independent(Normal(torch.tanh(mean), std), 1)

    def to_action(self, sample: Tensor) -> Tensor:
        """Distribution sample -> action vector ``[..., A]`` (one-hot or clipped)."""
        if self.spec.discrete:
            return F.one_hot(sample, self.spec.dim).float()
        return sample.clamp(-1.0, 1.0)

    def log_prob(self, dist: torch.distributions.Distribution, action: Tensor) -> Tensor:
        """Log-probability ``[...]`` of action vectors ``[..., A]``."""
        return dist.log_prob(action.argmax(-1) if self.spec.discrete else action)

    def act(self, feat: Tensor, mode: str = "sample") -> Tensor:
        """``feat [..., F]`` -> action ``[..., A]``; mode ``sample`` or ``greedy``."""
        dist = self.dist(feat)
        if mode == "sample":
            return self.to_action(dist.sample())
        if mode == "greedy":
            if self.spec.discrete:
                return self.to_action(dist.probs.argmax(-1))
            return dist.mean.clamp(-1.0, 1.0)
        raise ActionSpaceError(f"policy mode must be 'sample' or 'greedy', got '{mode}'")


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Within the block, the modules' parameters take no gradient (their inputs still do)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


class ActorCritic(nn.Module):
    """Actor, critic, slow critic and return normaliser, with their imagination losses."""

    def __init__(self, feat_dim: int, spec: ActionSpec, model: ModelConfig, cfg: BehaviorConfig) -> None:
        super().__init__()
        if cfg.actor_grad not in ("reinforce", "dynamics"):
            raise ActionSpaceError(
                f"behavior.actor_grad must be 'reinforce' or 'dynamics', got '{cfg.actor_grad}'"
            )
        if cfg.actor_grad == "dynamics" and spec.discrete:
            raise ActionSpaceError("behavior.actor_grad=dynamics needs continuous actions; use 'reinforce'")
        self.cfg = cfg
        self.actor = Actor(feat_dim, spec, model, cfg)
        self.critic = TwoHotHead(feat_dim, model.units, model.ac_layers, model.bins)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.retnorm = ReturnNormalizer(rate=cfg.retnorm_rate, limit=cfg.retnorm_limit)

    def horizon(self, updates: int) -> int:
        """Imagination horizon after ``updates`` updates (linear curriculum if enabled)."""
        cfg = self.cfg
        if cfg.horizon_ramp <= 0:
            return cfg.horizon
        frac = min(1.0, updates / cfg.horizon_ramp)
        return int(round(cfg.horizon_start + frac * (cfg.horizon - cfg.horizon_start)))

    @torch.no_grad()
    def imagine(self, wm: nn.Module, start: Mapping[str, Tensor], start_cont: Tensor, horizon: int) -> dict:
        """Imagine from ``start`` states ``[N, ...]`` with the actor. No gradient reaches the
        world model; only ``actor_out`` keeps a graph, to the actor's weights, so a trajectory
        serves one `loss` and backward pass before the actor's next optimiser step. With
        ``actor_grad="dynamics"``, ``feat`` and ``reward`` also keep their graph, through the
        frozen world model, to the actions.

        Returns ``feat [N, H+1, F]``, ``action [N, H, A]`` (what the world model was fed:
        one-hot or clipped to [-1, 1]), ``sample [N, H, A]`` (the actor's raw samples, for
        the log-probabilities: unclipped for continuous actions, equal to ``action`` for
        discrete ones), ``reward``/``cont`` ``[N, H+1]`` (index 0: ``reward`` is 0 and
        ``cont`` is ``start_cont [N]``, the data's 1 - is_terminal), and ``actor_out [N, H,
        A or 2A]``, the actor's outputs on ``feat[:, :-1]`` with their graph to the actor's
        weights, which `loss` reuses instead of running the actor on every state again.
        """
        dynamics = self.cfg.actor_grad == "dynamics"
        samples: list[Tensor] = []
        outs: list[Tensor] = []

        def policy(feat: Tensor) -> Tensor:
            with torch.enable_grad():  # without dynamics, feat carries no gradient; the actor's weights do
                outs.append(self.actor.mlp(feat))
            if dynamics:  # a reparameterised sample, scaled into [-1, 1] so that its gradient survives
                raw = self.actor.dist_from(outs[-1]).rsample()
                samples.append(raw)
                return raw / raw.detach().abs().clamp(min=1.0)
            raw = self.actor.dist_from(outs[-1].detach()).sample()
            action = self.actor.to_action(raw)
            samples.append(action if self.actor.spec.discrete else raw)
            return action

        with torch.set_grad_enabled(dynamics), frozen(wm):
            states, actions = wm.rssm.imagine(dict(start), policy, horizon)
            feat = wm.rssm.feat(states)
            # Heads run on all H+1 steps and are sliced after: cheaper than copying feat[:, 1:].
            reward = F.pad(wm.reward.mean(feat)[:, 1:], (1, 0))  # no reward is predicted for the start
            cont = torch.cat([start_cont.unsqueeze(1).to(feat.dtype), wm.cont.prob(feat)[:, 1:].detach()], 1)
        with torch.enable_grad():
            actor_out = torch.stack(outs, 1)
        return {"feat": feat, "action": actions, "sample": torch.stack(samples, 1), "reward": reward,
                "cont": cont, "actor_out": actor_out}

    def loss(
        self, traj: Mapping[str, Tensor], replay: Mapping[str, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Actor and critic losses (scalars) on an imagined trajectory from `imagine`.

        The actor's log-probabilities use ``traj["sample"]`` (the unclipped samples) when
        present, else ``traj["action"]``, under the outputs ``traj["actor_out"]`` when present,
        else the actor run on ``feat[:, :-1]``.

        With ``replay`` (``feat [B, T, F]``, ``reward``, ``is_terminal``, ``is_last``
        ``[B, T]``, where the trajectory started from all B*T states in order) and
        ``repval > 0``, the critic is also trained on the replayed sequences (`replay_value_loss`).
        """
        cfg = self.cfg
        feat, cont = traj["feat"].detach(), traj["cont"]
        twohot = self.critic.twohot
        critic_logits = self.critic(feat)  # [N, H+1, K]
        with torch.no_grad():
            value = twohot.decode(critic_logits)  # [N, H+1]
            ret = lambda_return(traj["reward"][:, 1:], cont[:, 1:], value[:, 1:], cfg.gamma, cfg.lam)
            weight = torch.cumprod(cfg.gamma * cont[:, :-1], 1) / cfg.gamma  # [N, H]
            self.retnorm.update(ret)
            adv = (ret - value[:, :-1]) / self.retnorm.scale()
            slow_target = self.slow_critic.mean(feat)[:, :-1]
        out = traj["actor_out"] if "actor_out" in traj else self.actor.mlp(feat)[:, :-1]
        dist = self.actor.dist_from(out)
        entropy = dist.entropy()
        if cfg.actor_grad == "dynamics":
            objective = self.backprop_advantage(traj)
        else:
            objective = self.actor.log_prob(dist, traj.get("sample", traj["action"])) * adv
        actor_loss = -(weight * (objective + cfg.entropy * entropy)).mean()
        critic_logits = critic_logits[:, :-1]
        critic_loss = twohot.loss(critic_logits, ret)
        critic_loss = critic_loss + cfg.slow_critic_reg * twohot.loss(critic_logits, slow_target)
        critic_loss = (weight * critic_loss).mean()
        if replay is not None and cfg.repval > 0:
            repval = self.replay_value_loss(replay, ret[:, 0].reshape(replay["reward"].shape))
            critic_loss = critic_loss + cfg.repval * repval
        metrics = {
            "actor/loss": actor_loss.item(), "actor/entropy": entropy.mean().item(),
            "critic/loss": critic_loss.item(), "critic/value": value.mean().item(),
            "imag/return": ret.mean().item(), "imag/reward": traj["reward"][:, 1:].mean().item(),
            "imag/retnorm_scale": self.retnorm.scale().item(),
        }
        return actor_loss, critic_loss, metrics

    def backprop_advantage(self, traj: Mapping[str, Tensor]) -> Tensor:
        """The normalised advantage ``[N, H]`` of the trajectory, differentiable through its
        features and rewards (dynamics backpropagation). The critic is frozen: its value only
        passes the gradient on to the features. The return normaliser is not updated here."""
        cfg = self.cfg
        with frozen(self.critic):
            value = self.critic.mean(traj["feat"])  # [N, H+1]
        cont = traj["cont"].detach()
        ret = lambda_return(traj["reward"][:, 1:], cont[:, 1:], value[:, 1:], cfg.gamma, cfg.lam)
        return (ret - value[:, :-1]) / self.retnorm.scale()

    def replay_value_loss(self, replay: Mapping[str, Tensor], boot: Tensor) -> Tensor:
        """Critic loss on replayed sequences (the Nature version's "repval").

        Lambda-returns along the replay use the real rewards and terminals, stop chaining
        at ``is_last`` and bootstrap from ``boot [B, T]``, the imagined return from each
        replayed state. Returns the scalar two-hot loss (plus the slow-critic regulariser).
        """
        cfg, twohot = self.cfg, self.critic.twohot
        feat = replay["feat"].detach()  # heads on all T steps, sliced after (no copy of feat[:, :-1])
        with torch.no_grad():
            cont = 1.0 - replay["is_terminal"][:, 1:].float()
            lam = cfg.lam * (1.0 - replay["is_last"][:, 1:].float())
            ret = lambda_return(replay["reward"][:, 1:].float(), cont, boot[:, 1:], cfg.gamma, lam)
            slow_target = self.slow_critic.mean(feat)[:, :-1]
        logits = self.critic(feat)[:, :-1]
        loss = twohot.loss(logits, ret) + cfg.slow_critic_reg * twohot.loss(logits, slow_target)
        return loss.mean()

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """EMA step of the slow critic towards the critic (rate ``slow_critic_rate``)."""
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, self.cfg.slow_critic_rate)

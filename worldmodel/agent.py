"""The Dreamer agent: acting with the world model's filter and the actor, and training.

``Agent.policy`` filters the observation into the RSSM state and samples (or takes the
mode of) the actor. ``Agent.train`` does one update on a replayed batch: the world
model loss, then actor and critic losses on trajectories imagined from every posterior
state, each with its own optimiser:

* 2023 presets (``optim.name=adam``): Adam with global-norm gradient clipping;
* Nature presets (``optim.name=laprop``): `LaProp` with adaptive gradient clipping
  (`clip_adaptive`) and a linear learning-rate warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from worldmodel.behavior import ActionSpec, ActorCritic
from worldmodel.presets import DreamerConfig, OptimConfig
from worldmodel.world_model import WorldModel

PRECISIONS = ("float32", "bfloat16")


class AgentInputError(ValueError):
    """An observation, batch or action that does not fit the agent."""


class TrainingDivergedError(RuntimeError):
    """A loss or gradient became NaN or inf; the offending update was not applied."""


class LaProp(torch.optim.Optimizer):
    """LaProp (Ziyin et al. 2020): momentum over RMS-normalised gradients.

    ``v = b2 v + (1 - b2) g^2``; ``m = b1 m + (1 - b1) g / (sqrt(v / (1 - b2^t)) + eps)``;
    ``p -= lr * m / (1 - b1^t)``. Unlike Adam, the normalisation happens before the
    momentum, so a tiny eps (1e-20 in DreamerV3) is safe.
    """

    def __init__(
        self, params: Iterable[Tensor], lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-20,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 - Optimizer API
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(())
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()
                state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (state["v"] / (1 - b2**t)).sqrt_().add_(group["eps"])
                state["m"].mul_(b1).add_(p.grad / denom, alpha=1 - b1)
                p.add_(state["m"], alpha=-group["lr"] / (1 - b1**t))


def clip_adaptive(params: Iterable[Tensor], ratio: float, floor: float = 1e-3) -> float:
    """Adaptive gradient clipping: scale each tensor's gradient to at most
    ``ratio * max(||p||, floor)``. Returns the global gradient norm before clipping."""
    total = 0.0
    for p in params:
        if p.grad is None:
            continue
        gnorm = p.grad.norm()
        total += gnorm.item() ** 2
        limit = ratio * torch.clamp(p.detach().norm(), min=floor)
        p.grad.mul_(torch.clamp(limit / (gnorm + 1e-12), max=1.0))
    return total**0.5


class _Optimizer:
    """One optimiser with its clipping and warm-up; ``part`` picks ``{part}_lr`` etc. of the config."""

    def __init__(self, params: list[Tensor], part: str, cfg: OptimConfig) -> None:
        lr, eps = getattr(cfg, f"{part}_lr"), getattr(cfg, f"{part}_eps")
        self.params, self.lr, self.clip, self.cfg = params, lr, getattr(cfg, f"{part}_clip"), cfg
        self.part = part
        if cfg.name == "adam":
            self.opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, eps=eps)
        elif cfg.name == "laprop":
            self.opt = LaProp(params, lr=lr, eps=eps)
        else:
            raise AgentInputError(f"optim.name must be 'adam' or 'laprop', got '{cfg.name}'")

    def step(self, loss: Tensor, updates: int) -> float:
        """Backward, clip, warm-up and step; returns the gradient norm before clipping.

        Raises `TrainingDivergedError` (without stepping) if the loss or the gradient
        norm is NaN or inf.
        """
        if not bool(torch.isfinite(loss)):
            raise TrainingDivergedError(f"the {self.part} loss is {loss.item()} at update {updates}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.agc > 0:
            norm = clip_adaptive(self.params, self.cfg.agc)
        else:
            norm = float(nn.utils.clip_grad_norm_(self.params, self.clip))
        if not math.isfinite(norm):
            raise TrainingDivergedError(f"the {self.part} gradient norm is {norm} at update {updates}")
        if self.cfg.warmup > 0:
            for group in self.opt.param_groups:
                group["lr"] = self.lr * min(1.0, (updates + 1) / self.cfg.warmup)
        self.opt.step()
        return norm


class Agent:
    """DreamerV3 agent: a `WorldModel` (``agent.wm``), an `ActorCritic` (``agent.ac``) and
    their optimisers.

    Args:
        obs_space: ``{"vector": (D,)}`` and/or ``{"image": (64, 64, C)}``.
        action_space: an `ActionSpec`, a gymnasium ``Discrete(n)`` or 1-D ``Box`` in [-1, 1].
        config: a `DreamerConfig` (see `worldmodel.presets.dreamer_config`).
        device: torch device of the networks.
    """

    def __init__(
        self, obs_space: Mapping[str, tuple[int, ...]], action_space: Any, config: DreamerConfig,
        device: torch.device | str = "cpu",
    ) -> None:
        if config.precision not in PRECISIONS:
            raise ValueError(f"precision={config.precision!r} is not one of {', '.join(PRECISIONS)}")
        self.config = config
        self.device = torch.device(device)
        self.spec = ActionSpec.from_space(action_space)
        self.wm = WorldModel(obs_space, self.spec.dim, config.model, config.loss).to(self.device)
        self.ac = ActorCritic(self.wm.rssm.feat_dim, self.spec, config.model, config.behavior).to(self.device)
        self.model_opt = _Optimizer(list(self.wm.parameters()), "model", config.optim)
        self.actor_opt = _Optimizer(list(self.ac.actor.parameters()), "actor", config.optim)
        self.critic_opt = _Optimizer(list(self.ac.critic.parameters()), "critic", config.optim)
        self.updates = 0
        self.policy_calls = 0
        if config.compile:
            for module in (self.wm.rssm.img_in, self.wm.rssm.gru, self.wm.rssm.img_out, self.wm.rssm.obs_out,
                           self.ac.actor.mlp, self.ac.critic.mlp, self.wm.reward.mlp, self.wm.cont.mlp):
                module.compile()

    # ------------------------------------------------------------------ checks
    def _check_obs(self, obs: Mapping[str, Tensor], lead: tuple[int, ...], where: str) -> None:
        for key, shape in self.wm.obs_space.items():
            if key not in obs:
                raise AgentInputError(f"observation key '{key}' is missing ({where}); got {sorted(obs)}")
            value = obs[key]
            expected, got = (*lead, *shape), tuple(value.shape)
            if got != expected:
                raise AgentInputError(f"observation '{key}' ({where}): expected shape {expected}, got {got}")
            if not (value.is_floating_point() or (key == "image" and value.dtype == torch.uint8)):
                allowed = "uint8 or float" if key == "image" else "float"
                raise AgentInputError(
                    f"observation '{key}' ({where}): expected dtype {allowed}, got {value.dtype}"
                )
            if value.is_floating_point():
                bad = ~torch.isfinite(value.reshape(*lead, -1)).all(-1)
                if bool(bad.any()):
                    index = tuple(int(i) for i in bad.nonzero()[0])
                    raise AgentInputError(f"observation '{key}' has NaN or inf at {where}, index {index}")

    # ------------------------------------------------------------------ acting
    def initial_state(self, batch: int) -> dict[str, Any]:
        """Agent state before the first step: the RSSM state ``[B, ...]`` and ``action [B, A]``."""
        return {"rssm": self.wm.rssm.initial_state(batch, self.device),
                "action": torch.zeros(batch, self.spec.dim, device=self.device)}

    @torch.no_grad()
    def policy(
        self, obs: Mapping[str, Tensor], state: Mapping[str, Any] | None = None, mode: str = "sample"
    ) -> tuple[Tensor, dict[str, Any]]:
        """Act on a batch of observations.

        Args:
            obs: observation tensors ``[B, ...]``; optional ``is_first [B]`` (bool) resets
                those rows (the state of a new episode).
            state: the state returned by the previous call (None: `initial_state`).
            mode: ``sample`` (training) or ``greedy`` (evaluation).
        Returns:
            ``action [B, A]`` (one-hot for discrete, in [-1, 1] for continuous) and the new state.
        """
        batch = next(iter(obs.values())).shape[0]
        self._check_obs(obs, (batch,), f"policy call {self.policy_calls}")
        self.policy_calls += 1
        state = state if state is not None else self.initial_state(batch)
        obs = {k: v.to(self.device) for k, v in obs.items()}
        is_first = obs.get("is_first", torch.zeros(batch, dtype=torch.bool, device=self.device))
        post, _ = self.wm.rssm.obs_step(state["rssm"], state["action"], self.wm.encode(obs), is_first)
        action = self.ac.actor.act(self.wm.rssm.feat(post), mode)
        return action, {"rssm": post, "action": action}

    # ------------------------------------------------------------------ training
    def train(self, batch: Mapping[str, Tensor]) -> dict[str, float]:
        """One world-model + actor-critic update on a replayed batch of ``[B, T, ...]`` tensors.

        ``batch`` holds the observation keys, ``action [B, T, A]`` (a_{t-1}), ``reward``,
        ``is_first``, ``is_terminal`` ``[B, T]`` (as `Replay.sample` returns them).
        Returns float metrics.
        """
        batch = self._prepare(batch)
        with self._autocast():
            loss, post, metrics = self.wm.loss(batch)
        metrics["grad/model"] = self.model_opt.step(loss, self.updates)
        start = {k: v.detach().flatten(0, 1) for k, v in post.items()}
        start_cont = 1.0 - batch["is_terminal"].flatten(0, 1).float()
        limit = self.config.behavior.imag_starts
        replay = {  # for the replayed-return critic loss (repval), which needs every start
            "feat": self.wm.rssm.feat(post).detach(), "reward": batch["reward"],
            "is_terminal": batch["is_terminal"], "is_last": batch.get("is_last", batch["is_terminal"]),
        }
        if 0 < limit < start_cont.shape[0]:
            keep = torch.randperm(start_cont.shape[0], device=self.device)[:limit]
            start, start_cont, replay = {k: v[keep] for k, v in start.items()}, start_cont[keep], None
        with self._autocast():
            traj = self.ac.imagine(self.wm, start, start_cont, self.ac.horizon(self.updates))
            actor_loss, critic_loss, ac_metrics = self.ac.loss(traj, replay)
        metrics.update(ac_metrics)
        metrics["grad/actor"] = self.actor_opt.step(actor_loss, self.updates)
        metrics["grad/critic"] = self.critic_opt.step(critic_loss, self.updates)
        self.ac.update_slow_critic()
        self.updates += 1
        return metrics

    def _autocast(self) -> torch.autocast:
        """bf16 autocast of the forward passes when ``precision="bfloat16"`` (backward follows it)."""
        enabled = self.config.precision == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _prepare(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        for key in ("action", "reward", "is_first", "is_terminal"):
            if key not in batch:
                raise AgentInputError(f"training batch is missing '{key}'; got {sorted(batch)}")
        lead = tuple(batch["reward"].shape)
        if len(lead) != 2:
            raise AgentInputError(f"training batch 'reward': expected shape [B, T], got {lead}")
        self._check_obs(batch, lead, "training batch")
        want, got = (*lead, self.spec.dim), tuple(batch["action"].shape)
        if got != want:
            raise AgentInputError(f"training batch 'action': expected shape {want}, got {got}")
        out = {k: v.to(self.device) for k, v in batch.items()}
        out["action"], out["reward"] = out["action"].float(), out["reward"].float()
        out["is_first"], out["is_terminal"] = out["is_first"].bool(), out["is_terminal"].bool()
        if "is_last" in out:
            out["is_last"] = out["is_last"].bool()
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser states and counters (a nested dict for `save_checkpoint`)."""
        return {
            "wm": self.wm.state_dict(),
            "ac": self.ac.state_dict(),
            "model_opt": self.model_opt.opt.state_dict(),
            "actor_opt": self.actor_opt.opt.state_dict(),
            "critic_opt": self.critic_opt.opt.state_dict(),
            "updates": self.updates,
            "policy_calls": self.policy_calls,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned (weights, optimisers, counters)."""
        self.wm.load_state_dict(state["wm"])
        self.ac.load_state_dict(state["ac"])
        for name in ("model_opt", "actor_opt", "critic_opt"):
            getattr(self, name).opt.load_state_dict(state[name])
        self.updates = int(state["updates"])
        self.policy_calls = int(state["policy_calls"])

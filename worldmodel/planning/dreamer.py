"""Adapter from a Dreamer world model (+ actor and critic) to the planners' `LatentModel`.

One imagined step is the RSSM prior (``img_step``) followed by the reward head (two-hot
mean) and the continue head (probability) on the new state's features; the critic and
the actor read the same features. The epistemic value of an action is the KL between
the posterior the model would infer from the observation it predicts and the prior,
``KL(q(z' | h', e(o_hat')) || p(z' | h'))``: how much seeing the outcome would change
the belief, a one-sample estimate of the expected information gain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from worldmodel.math import categorical_kl, symexp
from worldmodel.planning.base import State, batch_size, one_hot

if TYPE_CHECKING:
    from worldmodel.world_model import WorldModel


class AgentAdapterError(ValueError):
    """An object does not provide what the Dreamer adapter needs (named in the message)."""


class DreamerLatentModel:
    """`LatentModel` over a DreamerV3 world model.

    Args:
        world_model: a :class:`worldmodel.world_model.WorldModel` (``rssm``, ``reward``,
            ``cont``, ``encoders``, ``decoders``).
        actor: ``feat [N, F]`` -> a torch distribution over actions (``.sample()`` and, if
            discrete, ``.probs [N, A]``).
        critic: ``feat [N, F]`` -> values ``[N]``.
        discrete: whether actions are one-hot.
        to_action: distribution sample -> action ``[N, A]`` (default: indices -> one-hot).
    """

    def __init__(
        self,
        world_model: WorldModel,
        actor: Callable[[Tensor], Any],
        critic: Callable[[Tensor], Tensor],
        discrete: bool,
        to_action: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.wm, self.actor, self.critic, self.discrete = world_model, actor, critic, discrete
        self.rssm = world_model.rssm
        self.action_dim = self.rssm.action_dim
        self.to_action = to_action or self._default_to_action

    @classmethod
    def from_agent(cls, agent: Any) -> DreamerLatentModel:
        """From a :class:`worldmodel.agent.Agent` (``wm``, ``ac.actor``, ``ac.critic``, ``spec``)."""
        try:
            actor, critic = agent.ac.actor, agent.ac.critic
            return cls(agent.wm, actor.dist, critic.mean, agent.spec.discrete, actor.to_action)
        except AttributeError as err:
            raise AgentAdapterError(f"{type(agent).__name__} is not a Dreamer agent: {err}") from None

    def _default_to_action(self, sample: Tensor) -> Tensor:
        """Index samples ``[N]`` -> one-hot ``[N, A]`` for discrete actors; others unchanged."""
        return one_hot(sample, self.action_dim) if self.discrete and sample.dim() == 1 else sample

    def feat(self, state: State) -> Tensor:
        """``[N, D + S*C]`` model features."""
        return self.rssm.feat(state)

    def step(self, state: State, action: Tensor) -> tuple[State, Tensor, Tensor]:
        prior = self.rssm.img_step(dict(state), action)
        feat = self.rssm.feat(prior)
        return prior, self.wm.reward.mean(feat), self.wm.cont.prob(feat)

    def value(self, state: State) -> Tensor:
        return self.critic(self.rssm.feat(state)).reshape(batch_size(state))

    def policy_sample(self, state: State) -> Tensor:
        return self.to_action(self.actor(self.rssm.feat(state)).sample()).float()

    def policy_probs(self, state: State) -> Tensor:
        if not self.discrete:
            raise AgentAdapterError("policy_probs is only defined for discrete actions")
        return self.actor(self.rssm.feat(state)).probs

    def predicted_observation(self, feat: Tensor) -> dict[str, Tensor]:
        """Decoder means in the encoders' input space: ``feat [N, F]`` -> ``{"vector": [N, D]}``
        and/or ``{"image": [N, 64, 64, C]}`` (floats in [0, 1])."""
        obs = {}
        for key, decoder in self.wm.decoders.items():
            out = decoder(feat)
            obs[key] = symexp(out) if key == "vector" else (out + 0.5).clamp(0.0, 1.0).movedim(-3, -1)
        return obs

    def epistemic(self, state: State, action: Tensor) -> Tensor:
        """``KL(posterior from the predicted observation || prior)`` after ``action``: ``[N]``."""
        prior = self.rssm.img_step(dict(state), action)
        embed = self.wm.encode(self.predicted_observation(self.rssm.feat(prior)))
        first = torch.zeros(batch_size(state), dtype=torch.bool, device=action.device)
        post, prior = self.rssm.obs_step(dict(state), action, embed, first)
        return categorical_kl(post["logits"], prior["logits"])


Act = Callable[[dict[str, Tensor], Any], tuple[Tensor, Any]]


def planner_actor(name: str, overrides: Sequence[str] = ()) -> Callable[[Any], Act]:
    """A ``worldmodel eval`` actor factory: ``factory(agent) -> act(obs, state) -> (action, state)``.

    ``act`` filters the observation into the posterior exactly as ``Agent.policy`` does,
    then lets planner ``name`` choose the action from that latent state. The planner's
    discount defaults to the agent's ``behavior.gamma``.
    """
    from worldmodel.planning import make_planner

    def factory(agent: Any) -> Act:
        model = DreamerLatentModel.from_agent(agent)
        gamma = getattr(getattr(agent, "config", None), "behavior", None)
        extra = [f"gamma={gamma.gamma}"] if gamma is not None else []
        planner = make_planner(name, model, [*extra, *overrides])

        @torch.no_grad()
        def act(obs: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
            batch = next(iter(obs.values())).shape[0]
            state = state if state is not None else agent.initial_state(batch)
            obs = {k: v.to(agent.device) for k, v in obs.items()}
            is_first = obs.get("is_first", torch.zeros(batch, dtype=torch.bool, device=agent.device))
            if bool(is_first.any()):
                planner.reset()
            post, _ = agent.wm.rssm.obs_step(state["rssm"], state["action"], agent.wm.encode(obs), is_first)
            action = planner.act(post)
            return action, {"rssm": post, "action": action}

        return act

    return factory


PLANNER_ACTORS = {name: planner_actor(name) for name in ("shooting", "cem", "mppi", "mcts")}

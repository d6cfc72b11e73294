"""Adapter from a Dreamer world model (+ actor and critic) to the planners' `LatentModel`.

One imagined step is the RSSM prior (``img_step``) followed by the reward head (two-hot
mean) and the continue head (probability) on the new state's features; the critic and
the actor read the same features. The epistemic value of an action is the KL between
the posterior the model would infer from the observation it predicts and the prior,
``KL(q(z' | h', e(o_hat')) || p(z' | h'))``: how much seeing the outcome would change
the belief, a one-sample estimate of the expected information gain.
"""

from __future__ import annotations

from collections.abc import Callable
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
        actor: ``feat [N, F]`` -> a torch distribution over actions ``[N, A]`` (one-hot
            categorical for discrete actions; ``.sample()`` and, if discrete, ``.probs``).
        critic: ``feat [N, F]`` -> values ``[N]``.
        discrete: whether actions are one-hot.
    """

    def __init__(
        self,
        world_model: WorldModel,
        actor: Callable[[Tensor], Any],
        critic: Callable[[Tensor], Tensor],
        discrete: bool,
    ) -> None:
        self.wm, self.actor, self.critic, self.discrete = world_model, actor, critic, discrete
        self.rssm = world_model.rssm
        self.action_dim = self.rssm.action_dim

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
        action = self.actor(self.rssm.feat(state)).sample()
        if self.discrete and action.shape[-1] != self.action_dim:
            action = one_hot(action, self.action_dim)
        return action.float()

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

"""Token affordances: what each candidate token affords the conversation, per the world model.

For every candidate token (a word or short phrase proposed as the assistant's next
response), the DialogueWorldModel imagines the future turns after it and its quality
head predicts engagement, coherence and task success of that response; the weighted
total (default weights 0.3 / 0.3 / 0.4) ranks the candidates. This is the text
counterpart of `detect_affordances` on the control side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from arrcoc.knowing import ScoringError, WorldModelScorer, mean_field
from arrcoc.words import validate_messages

AFFORDANCES: tuple[str, ...] = ("engagement", "coherence", "task_success")


@dataclass
class TokenAffordances:
    """Per candidate [K]: predicted engagement, coherence, task success (each in [0, 1]), the
    weighted total, and the discounted total of the imagined future (``future_value``)."""

    tokens: list[str]
    engagement: Tensor
    coherence: Tensor
    task_success: Tensor
    total: Tensor
    future_value: Tensor
    weights: tuple[float, float, float]

    def ranked(self) -> list[tuple[str, float]]:
        """``(token, total)`` from the best candidate to the worst."""
        order = torch.argsort(self.total, descending=True).tolist()
        return [(self.tokens[i], float(self.total[i])) for i in order]


def token_affordances(
    world_model: Any,
    context: Sequence[Mapping[str, str]],
    candidate_tokens: Sequence[str],
    weights: tuple[float, float, float] = (0.3, 0.3, 0.4),
    num_turns: int = 3,
) -> TokenAffordances:
    """Affordances of each candidate token as the assistant's next response to ``context``.

    context: messages ending with a user turn. candidate_tokens: K non-empty strings.
    weights: engagement, coherence, task success (non-negative, not all zero; normalised).
    """
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ScoringError(f"weights must be 3 non-negative numbers, not all zero: {weights}")
    tokens = list(candidate_tokens)
    if not tokens or any(not isinstance(t, str) or not t.strip() for t in tokens):
        raise ScoringError("candidate_tokens must be a non-empty list of non-empty strings")
    model = world_model.model if isinstance(world_model, WorldModelScorer) else world_model
    messages = validate_messages(context)
    with torch.no_grad(), mean_field(model.rssm):
        state = model.encode_dialogue(messages)
        if state.awaiting != "assistant":
            raise ScoringError(
                "the context must end with a user turn (the candidates are assistant responses)"
            )
        latent = {k: v.expand(len(tokens), *v.shape[1:]) for k, v in state.latent.items()}
        state = type(state)(latent, state.awaiting, state.num_steps)
        traj = model.simulate_future_turns(state, model.embed_texts(tokens), num_turns, seed=0)
    first = {name: traj.quality[name][:, 0] for name in AFFORDANCES}
    w = torch.tensor(weights, dtype=torch.float32) / sum(weights)
    total = sum(w[i] * first[name] for i, name in enumerate(AFFORDANCES))
    return TokenAffordances(
        tokens, *(first[n] for n in AFFORDANCES), total, traj.discounted_total, tuple(weights)
    )

"""Quality labels of each assistant response, from dataset columns or documented proxies.

For the response a_t to user turn u_t (embeddings are L2-normalised, so cosines are dot
products; a cosine c is mapped to [0, 1] as (1 + c) / 2):

- relevance_t    = (1 + cos(u_t, a_t)) / 2: the response is about what the user said.
- coherence_t    = (1 + cos(a_t, u_{t+1})) / 2: the user's next turn follows up on the
  response (missing when the dialogue ends after a_t).
- engagement_t   = min(1, log1p(words(u_{t+1})) / log1p(50)): whether and how much the
  user goes on (0 when the dialogue ends after a_t; 50 words or more count as 1).
- task_success_t = end-of-dialogue signal, the same for every step of a dialogue: 1 when
  the last user turn thanks or approves ("thanks", "great", "perfect", "it works"), 0
  when it complains ("wrong", "doesn't work", "error", "not what I"), 0.5 otherwise.

A dialogue-level label column (``labels.<name>`` in the normalised schema) replaces the
proxy for every step. Rewards are the weighted sum of engagement, coherence and
task_success (default weights 0.3 / 0.3 / 0.4, the seed's ``token_affordances`` weights);
a missing coherence label contributes 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

QUALITY_NAMES = ("relevance", "engagement", "coherence", "task_success")
_POSITIVE = re.compile(
    r"\b(thanks?|thank you|thx|great|perfect|awesome|it works|that works|helpful)\b", re.I
)
_NEGATIVE = re.compile(
    r"(\bwrong\b|doesn'?t work|does not work|not working|\berror\b|not what i|incorrect)", re.I
)


def task_success_signal(last_user_text: str) -> float:
    """1.0 for thanks/approval, 0.0 for a complaint (complaints win), 0.5 for no signal."""
    if _NEGATIVE.search(last_user_text):
        return 0.0
    return 1.0 if _POSITIVE.search(last_user_text) else 0.5


def engagement_signal(next_user_text: str | None) -> float:
    """``min(1, log1p(words) / log1p(50))`` of the next user turn; 0 when there is none."""
    if next_user_text is None:
        return 0.0
    return min(1.0, math.log1p(len(next_user_text.split())) / math.log1p(50))


def quality_labels(
    user_texts: Sequence[str],
    user_emb: Tensor,
    assistant_emb: Tensor,
    has_response: Tensor,
    dialogue_labels: Mapping[str, float | None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Labels and masks ``[T, 4]`` (order `QUALITY_NAMES`) for one dialogue's T steps.

    Args:
        user_texts: the T user turns.
        user_emb, assistant_emb: ``[T, E]`` L2-normalised (rows without a response are ignored).
        has_response: ``[T]`` bool, a_t exists.
    """
    steps = len(user_texts)
    labels = torch.zeros(steps, len(QUALITY_NAMES))
    mask = torch.zeros(steps, len(QUALITY_NAMES), dtype=torch.bool)
    has_next = torch.arange(steps) < steps - 1
    labels[:, 0] = (1 + (user_emb * assistant_emb).sum(-1)) / 2
    mask[:, 0] = has_response
    labels[:, 1] = torch.tensor(
        [engagement_signal(user_texts[t + 1] if t + 1 < steps else None) for t in range(steps)]
    )
    mask[:, 1] = has_response
    if steps > 1:
        labels[:-1, 2] = (1 + (assistant_emb[:-1] * user_emb[1:]).sum(-1)) / 2
    mask[:, 2] = has_response & has_next
    labels[:, 3] = task_success_signal(user_texts[-1])
    mask[:, 3] = has_response
    for i, name in enumerate(QUALITY_NAMES):
        value = (dialogue_labels or {}).get(name)
        if value is not None:
            labels[:, i] = float(value)
            mask[:, i] = has_response
    return labels.clamp(0, 1), mask


def rewards(labels: Tensor, mask: Tensor, weights: Sequence[float] = (0.3, 0.3, 0.4)) -> Tensor:
    """Weighted sum of engagement, coherence, task_success. ``[..., 4]`` -> ``[...]``."""
    w = torch.tensor([0.0, *weights], dtype=labels.dtype, device=labels.device)
    return (labels * mask * w).sum(-1)


def discounted_future(reward: Tensor, valid: Tensor, gamma: float) -> Tensor:
    """Value targets ``v_t = sum_{k>t} gamma^(k-t) r_k`` over valid steps. ``[B, T]`` -> ``[B, T]``."""
    out = torch.zeros_like(reward)
    running = torch.zeros_like(reward[:, 0])
    for t in range(reward.shape[1] - 1, -1, -1):
        out[:, t] = running
        running = valid[:, t] * (reward[:, t] + running) * gamma
    return out

"""Temporal coherence: relevance carried across the turns of a live conversation.

Each time the conversation grows, the fresh per-word scores of the whole dialogue are
blended with the relevance carried so far: an exponential moving average for the words
already seen (``carried = decay * carried + (1 - decay) * fresh``), the fresh scores for
the new words. When the new turns change topic (cosine similarity between their
representation and the running topic vector below ``topic_threshold``), the carried
relevance is reset to the fresh scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import torch

_TOKEN = re.compile(r"[a-z0-9]+")


class TemporalError(ValueError):
    """The conversation given to the tracker is not an extension of the one it has seen."""


def bag_of_words(text: str, dim: int = 2048, min_length: int = 4) -> torch.Tensor:
    """[dim] hashed counts of the lowercase alphanumeric words of ``text`` with at least ``min_length`` chars.

    Short words (mostly function words) are ignored so they do not dominate topic similarity.
    Hashing is deterministic (not Python's salted ``hash``).
    """
    vec = torch.zeros(dim)
    for token in _TOKEN.findall(text.lower()):
        if len(token) >= min_length:
            vec[sum((i + 1) * ord(c) for i, c in enumerate(token)) % dim] += 1.0
    return vec


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity; 0 if either vector is zero."""
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0


class RelevanceTracker:
    """Carry per-word relevance across turns (EMA), resetting on a change of topic.

    decay: weight of the carried relevance (0 = no memory, 1 = frozen).
    topic_threshold: cosine below which the new turns count as a new topic.
    embed: text -> [D] vector for topic similarity (default: `bag_of_words`; pass an
        encoder's embedding for semantic topics).
    """

    def __init__(
        self,
        decay: float = 0.7,
        topic_threshold: float = 0.1,
        embed: Callable[[str], torch.Tensor] | None = None,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise TemporalError(f"decay must be in [0, 1], got {decay}")
        self.decay, self.topic_threshold = decay, topic_threshold
        self.embed = embed or bag_of_words
        self.reset()

    def reset(self) -> None:
        """Forget everything carried."""
        self.messages: list[dict[str, str]] = []
        self.carried = torch.zeros(0)
        self.topic: torch.Tensor | None = None
        self.topic_changed = False

    def update(self, messages: Sequence[Mapping[str, str]], fresh: torch.Tensor) -> torch.Tensor:
        """Blend ``fresh`` [N] (scores of every word of ``messages``) with the carried relevance -> [N].

        ``messages`` must extend the previous call's messages (same earlier messages, in order).
        """
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        seen = len(self.messages)
        if messages[:seen] != self.messages:
            raise TemporalError("the conversation must extend the previous one (earlier messages changed)")
        n_old = len(self.carried)
        if fresh.shape != (n_old + sum(len(m["content"].split()) for m in messages[seen:]),):
            raise TemporalError(f"fresh scores must have one value per word, got shape {tuple(fresh.shape)}")
        new_topic = self.embed(" ".join(m["content"] for m in messages[seen:])).float()
        similarity = math.inf if self.topic is None else cosine(new_topic, self.topic)
        self.topic_changed = self.topic is not None and similarity < self.topic_threshold
        fresh = fresh.detach().float()
        if self.topic is None or self.topic_changed:
            self.carried, self.topic = fresh.clone(), new_topic
        else:
            old = self.decay * self.carried + (1 - self.decay) * fresh[:n_old]
            self.carried = torch.cat([old, fresh[n_old:]])
            self.topic = self.decay * self.topic + (1 - self.decay) * new_topic
        self.messages = messages
        return self.carried.clone()

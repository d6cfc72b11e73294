"""Knowing: the three ways of knowing, as per-word scores of a dialogue.

* coupling (participatory): how much a word matters to the *imagined future*: the
  change in the DialogueWorldModel's simulated next turns and predicted value when the
  word is removed. Exact form: batched occlusion; fast form: gradient x input with
  respect to soft token weights (one encoder forward and backward).
* information (propositional): surprisal of the word under the model's text decoder.
* salience (perspectival): query-independent salience from the encoder.

Scores are computed on subword pieces and aggregated to whitespace words (the unit
arrcoc keeps and reports). `score_words` is the simple function API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from arrcoc.balancing import SCORERS

METHODS: tuple[str, ...] = ("fast", "exact")


class ScoringError(ValueError):
    """An unknown scoring method or an unusable relevance model."""


@dataclass
class WordScores:
    """Per-word scores of one dialogue: ``scores[name]`` is [N] (higher = more relevant).

    embeddings: optional [N, D] word embeddings (for the semantic diversity term).
    """

    scores: dict[str, torch.Tensor]
    embeddings: torch.Tensor | None = None


@runtime_checkable
class RelevanceModel(Protocol):
    """Anything that scores the words of a dialogue with the three scorers."""

    def score(self, messages: Sequence[Mapping[str, str]], method: str = "fast") -> WordScores:
        """Scores for every whitespace word of ``messages``, keys = `SCORERS`."""
        ...


def aggregate_to_words(
    values: torch.Tensor, word_ids: Sequence[int | None], num_words: int, reduce: str
) -> torch.Tensor:
    """Subword values [L] -> word values [N]: ``sum`` (additive effects, surprisal) or ``max``.

    ``word_ids[i]`` is the word of piece ``i`` (None for special tokens). Words without
    any piece (e.g. truncated) get 0.
    """
    index = torch.tensor([-1 if w is None else w for w in word_ids], dtype=torch.long)
    keep = index >= 0
    out = torch.zeros(num_words, dtype=values.dtype)
    if reduce == "sum":
        return out.index_add(0, index[keep], values[keep])
    if reduce == "max":
        out = torch.full((num_words,), -torch.inf, dtype=values.dtype)
        out = out.scatter_reduce(0, index[keep], values[keep], reduce="amax")
        return torch.where(torch.isinf(out), torch.zeros_like(out), out)
    raise ScoringError(f"unknown reduction {reduce!r}; expected 'sum' or 'max'")


def resolve_model(model: Any = None) -> RelevanceModel:
    """A `RelevanceModel` from None (the shipped default), a model directory, a model, or a scorer."""
    if isinstance(model, RelevanceModel):
        return model
    from arrcoc.future_coupling import WorldModelScorer
    from dialogue import DialogueWorldModel

    if model is None or isinstance(model, (str, Path)):
        return WorldModelScorer(DialogueWorldModel.from_pretrained(None if model is None else str(model)))
    if isinstance(model, DialogueWorldModel):
        return WorldModelScorer(model)
    raise ScoringError(
        f"model must be None, a directory, a DialogueWorldModel or a scorer, got {type(model).__name__}"
    )


def score_words(
    messages: Sequence[Mapping[str, str]], method: str = "fast", model: Any = None
) -> torch.Tensor:
    """Per-word relevance [N] of a dialogue by ``method``.

    method: ``fast`` / ``exact`` (balanced relevance with the fast or exact future
    coupling), or one scorer: ``coupling_fast``, ``coupling_exact``, ``information``,
    ``salience``. Words are ``content.split()`` of each message, in order.
    """
    from arrcoc.compress import score

    if method in METHODS:
        return torch.tensor(score(messages, model, method=method).balanced)
    scorer, _, form = method.partition("_")
    if scorer not in SCORERS or (form and (scorer != "coupling" or form not in METHODS)):
        names = ", ".join([*METHODS, "coupling_fast", "coupling_exact", "information", "salience"])
        raise ScoringError(f"unknown method {method!r}; expected one of {names}")
    return resolve_model(model).score(messages, form or "fast").scores[scorer]

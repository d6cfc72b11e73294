"""Shared fixtures: a deterministic stand-in relevance model so IO/CLI tests need no network model."""

from __future__ import annotations

import sys

import pytest
import torch

from arrcoc.knowing import WordScores
from arrcoc.words import split_words


class LengthScorer:
    """coupling = word length, information = position in message, salience = capitalised (test double)."""

    def score(self, messages, method="fast"):
        words = split_words(messages)
        return WordScores(
            {
                "coupling": torch.tensor([float(len(w.text)) for w in words]),
                "information": torch.tensor([float(w.position) for w in words]),
                "salience": torch.tensor([float(w.text[:1].isupper()) for w in words]),
            }
        )


@pytest.fixture
def length_scorer() -> LengthScorer:
    return LengthScorer()


@pytest.fixture
def patched_model(monkeypatch, length_scorer):
    """Make every default-model lookup (CLI included) return the test double."""
    module = sys.modules["arrcoc.compress"]  # the attribute arrcoc.compress is the function
    monkeypatch.setattr(module, "resolve_model", lambda model=None: length_scorer)
    return length_scorer

"""Shared fixtures: a deterministic stand-in relevance model so IO/CLI tests need no network model."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from arrcoc.knowing import WordScores
from arrcoc.words import split_words

torch.set_num_threads(1)  # two cores shared by several processes
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class LengthScorer:
    """coupling = word length, information = position in message, salience = capitalised; for
    ``hybrid`` also a reserved score, minus the word length (test double)."""

    def score(self, messages, method="fast"):
        words = split_words(messages)
        length = torch.tensor([float(len(w.text)) for w in words])
        return WordScores(
            {
                "coupling": length,
                "information": torch.tensor([float(w.position) for w in words]),
                "salience": torch.tensor([float(w.text[:1].isupper()) for w in words]),
            },
            reserved=-length if method == "hybrid" else None,
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


@pytest.fixture(scope="session")
def tiny_world_model(tmp_path_factory):
    """A randomly initialised DialogueWorldModel with a 2-layer BERT encoder and a 300-piece BPE."""
    from dialogue.bpe import train_bpe
    from dialogue.config import DecoderConfig, DialogueConfig, EncoderConfig
    from dialogue.encoder import TurnEncoder, save_tiny_encoder
    from dialogue.model import DialogueWorldModel

    torch.manual_seed(0)
    path = save_tiny_encoder(tmp_path_factory.mktemp("enc"), hidden=32, layers=2)
    texts = [
        "book a train to lisbon on may 3",
        "which city do you leave from",
        "from porto in the morning",
    ] * 20
    tokenizer = train_bpe(texts, vocab_size=300, min_frequency=1)
    config = DialogueConfig(
        encoder=EncoderConfig(name=str(path)),
        decoder=DecoderConfig(
            vocab_size=tokenizer.get_vocab_size(), dim=32, layers=1, heads=2, max_tokens=64
        ),
        embed_dim=16,
        action_dim=8,
        deter=32,
        stoch=4,
        classes=4,
        hidden=32,
    )
    model = DialogueWorldModel(config, tokenizer=tokenizer, encoder=TurnEncoder(str(path)))
    for p in model.value_head.parameters():  # the value head starts at zero: give it a slope
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()

"""Shared fixtures: a tiny random BERT encoder (fast) saved once per session."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores shared by several processes: more threads only thrash.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ARRCOC_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory) -> str:
    from dialogue.encoder import save_tiny_encoder

    return str(save_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder")))


TOPICS = ["python", "cooking", "travel", "music", "weather", "football", "gardening", "movies"]


def tiny_dialogues(n: int = 16):
    """n synthetic dialogues (3 exchanges each) with topic-specific wording."""
    import datasets

    from dialogue.data import normalise_record

    records = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        turns = []
        for step in range(3):
            turns.append({"role": "user", "content": f"tell me about {topic} part {step}"})
            turns.append(
                {"role": "assistant", "content": f"{topic} is fun, here is point {step} on {topic}"}
            )
        turns.append(
            {"role": "user", "content": "thanks, great" if i % 2 else f"more {topic} please"}
        )
        records.append(normalise_record({"id": f"tiny{i}", "messages": turns}))
    return datasets.Dataset.from_list(records)


def tiny_config(vocab_size: int, encoder_path: str):
    from dialogue.config import DecoderConfig, DialogueConfig, EncoderConfig

    return DialogueConfig(
        encoder=EncoderConfig(name=encoder_path, max_length=32),
        decoder=DecoderConfig(vocab_size=vocab_size, dim=32, layers=1, heads=2, max_tokens=16),
        embed_dim=32,
        action_dim=16,
        deter=32,
        stoch=4,
        classes=4,
        hidden=32,
        max_steps=4,
    )


@pytest.fixture(scope="session")
def tiny_setup(tiny_encoder_path):
    """(model factory, StepData, bpe) on the synthetic corpus with the tiny encoder."""
    from dialogue.batching import build_examples
    from dialogue.bpe import train_bpe
    from dialogue.encoder import TurnEncoder
    from dialogue.model import DialogueWorldModel

    data = tiny_dialogues()
    bpe = train_bpe((t["text"] for d in data["turns"] for t in d), vocab_size=400, min_frequency=1)
    encoder = TurnEncoder(tiny_encoder_path, max_length=32)
    config = tiny_config(bpe.get_vocab_size(), tiny_encoder_path)
    steps = build_examples(data, encoder, bpe, config, show_progress=False)

    def make(seed: int = 0) -> DialogueWorldModel:
        torch.manual_seed(seed)
        return DialogueWorldModel(config, tokenizer=bpe, encoder=encoder)

    return make, steps, bpe


@pytest.fixture(scope="session")
def tiny_jsonl(tmp_path_factory) -> str:
    """The synthetic corpus (24 dialogues) as an OpenAI-messages JSONL file."""
    import json

    path = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    rows = [
        {"id": d["id"], "messages": [{"role": t["role"], "content": t["text"]} for t in d["turns"]]}
        for d in tiny_dialogues(24)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)

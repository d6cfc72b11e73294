"""The future-reuse head: labels, features, learning, save/load and its place in the scorer."""

from __future__ import annotations

import random

import pytest
import torch

from arrcoc.future_reuse import (
    NUM_SCALARS,
    FutureReuse,
    ReuseConfig,
    ReuseError,
    dialogue_cuts,
    reuse_features,
    reuse_labels,
    reuse_scores,
    train_reuse,
)
from arrcoc.knowing import ScoringError, WorldModelScorer, _load_scorer

FILLER = "the weather was nice and we walked along the river before lunch with friends".split()


def test_labels_mark_reused_content_words_only():
    words = "The code is AB-12, see you Monday. The".split()
    future = [{"role": "user", "content": "Is ab-12 still valid on monday? The end"}]
    assert reuse_labels(words, future).tolist() == [0, 0, 0, 1, 0, 0, 1, 0]  # stop words never count


def _dialogue(rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    code = f"{rng.choice('ABCDEFGH')}{rng.choice('KLMNPQR')}-{rng.randint(1000, 9999)}"
    filler = " ".join(rng.sample(FILLER, 8))
    messages = [
        {"role": "user", "content": f"hello {filler}"},
        {"role": "assistant", "content": f"sure {' '.join(rng.sample(FILLER, 6))}"},
        {"role": "user", "content": f"my booking code is {code} and {' '.join(rng.sample(FILLER, 5))}"},
        {"role": "assistant", "content": "noted"},
    ]
    return messages, [{"role": "user", "content": f"please check {code} again"}]


def _examples(n: int, seed: int) -> list[tuple[list[dict[str, str]], torch.Tensor]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        messages, future = _dialogue(rng)
        out.append((messages, reuse_labels([w for m in messages for w in m["content"].split()], future)))
    return out


def test_features_shape_and_restated_words(tiny_world_model):
    scorer = WorldModelScorer(tiny_world_model)
    messages = [
        {"role": "user", "content": "lisbon train please"},
        {"role": "assistant", "content": "which day"},
        {"role": "user", "content": "lisbon again"},
    ]
    x = reuse_features(scorer, messages)
    dim = tiny_world_model.encoder.dim
    assert x.shape == (7, 3 * dim + NUM_SCALARS)
    _, h = scorer.pool(messages)
    cos = torch.nn.functional.normalize(h, dim=-1) @ torch.nn.functional.normalize(h, dim=-1).T
    restated = x[:, 3 * dim + 5]  # highest cosine with a word of a later turn, floored at 0
    assert restated[0] == pytest.approx(max(cos[0, 3:].max().item(), 0.0), abs=1e-6)
    assert restated[3] == pytest.approx(max(cos[3, 5:].max().item(), 0.0), abs=1e-6)
    assert torch.all(restated[-2:] == 0)  # nothing comes after the last turn
    assert torch.allclose(x[:, 3 * dim + 6], torch.log(torch.tensor([3.0, 2, 2, 2, 2, 3, 2])))  # "lisbon" x2


def test_head_learns_which_words_the_future_reuses(tiny_world_model):
    scorer = WorldModelScorer(tiny_world_model)
    head, stats = train_reuse(scorer, _examples(40, 0), epochs=30, batch_size=64, seed=0)
    assert stats["loss_last_epoch"] < 0.7 * stats["loss_first_epoch"]
    hits = 0
    for messages, labels in _examples(20, 1):  # held-out dialogues, new codes
        p = reuse_scores(head, scorer, messages)
        hits += int(p.argmax() == labels.argmax())
    assert hits >= 15


def test_save_load_round_trip_and_clear_errors(tmp_path):
    torch.manual_seed(0)
    head = FutureReuse(ReuseConfig(dim=4, hidden=8)).eval()
    head.save_pretrained(tmp_path / "h")
    loaded = FutureReuse.from_pretrained(tmp_path / "h")
    x = torch.randn(5, 3 * 4 + NUM_SCALARS)
    assert torch.equal(head(x), loaded(x))
    with pytest.raises(ReuseError, match="cannot load"):
        FutureReuse.from_pretrained(tmp_path / "missing")
    (tmp_path / "h" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ReuseError, match="cannot load"):
        FutureReuse.from_pretrained(tmp_path / "h")


def test_training_needs_both_classes(monkeypatch):
    from arrcoc import future_reuse

    monkeypatch.setattr(future_reuse, "reuse_features", lambda *args: torch.zeros(3, 20))
    with pytest.raises(ReuseError, match="both classes"):
        train_reuse(None, [([{"role": "user", "content": "a b c"}], torch.zeros(3))])
    with pytest.raises(ReuseError, match="2 labels for 3 words"):
        train_reuse(None, [([{"role": "user", "content": "a b c"}], torch.zeros(2))])


def test_scorer_reuse_form_needs_a_head_and_uses_it(tiny_world_model, tmp_path):
    messages = [{"role": "user", "content": "book a train to lisbon"}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(ScoringError, match="future-reuse head"):
        WorldModelScorer(tiny_world_model).score(messages, "reuse")
    torch.manual_seed(0)
    head = FutureReuse(ReuseConfig(dim=tiny_world_model.encoder.dim)).eval()
    scorer = WorldModelScorer(tiny_world_model, reuse=head)
    out = scorer.score(messages, "reuse").scores["coupling"]
    assert torch.allclose(out, reuse_scores(head, scorer, messages))
    tiny_world_model.save_pretrained(tmp_path / "m")
    head.save_pretrained(tmp_path / "m" / "reuse")
    loaded = _load_scorer(str(tmp_path / "m"))
    assert loaded.reuse is not None
    assert torch.allclose(loaded.score(messages, "reuse").scores["coupling"], out)


def test_hybrid_coupling_mixes_normalised_reuse_and_fast(tiny_world_model):
    from arrcoc.knowing import HYBRID_FAST_WEIGHT

    messages = [
        {"role": "user", "content": "book a train to lisbon on friday"},
        {"role": "assistant", "content": "which time on friday"},
        {"role": "user", "content": "nine please"},
    ]
    with pytest.raises(ScoringError, match="'hybrid' needs a future-reuse head"):
        WorldModelScorer(tiny_world_model).score(messages, "hybrid")
    torch.manual_seed(0)
    head = FutureReuse(ReuseConfig(dim=tiny_world_model.encoder.dim)).eval()
    scorer = WorldModelScorer(tiny_world_model, reuse=head)

    def unit(x):
        return (x - x.min()) / (x.max() - x.min())

    reuse = scorer.score(messages, "reuse").scores["coupling"]
    fast = scorer.score(messages, "fast").scores["coupling"]
    hybrid = scorer.score(messages, "hybrid").scores["coupling"]
    w = HYBRID_FAST_WEIGHT
    assert 0.0 < w < 1.0
    assert torch.allclose(hybrid, (1 - w) * unit(reuse) + w * unit(fast), atol=1e-5)
    assert torch.allclose(scorer.score(messages, "hybrid").reserved, reuse)  # the head's own ranking
    assert scorer.score(messages, "reuse").reserved is None
    scorer.hybrid_fast_weight = 0.0  # the reuse form, normalised
    assert torch.allclose(scorer.score(messages, "hybrid").scores["coupling"], unit(reuse), atol=1e-5)
    with pytest.raises(ScoringError, match="hybrid_fast_weight"):
        WorldModelScorer(tiny_world_model, hybrid_fast_weight=1.5)


def test_dialogue_cuts_are_seeded_and_label_the_next_messages():
    messages = [
        {"role": "user", "content": "book lisbon"},
        {"role": "assistant", "content": "which day"},
        {"role": "user", "content": "friday to lisbon please"},
        {"role": "assistant", "content": "friday it is"},
        {"role": "user", "content": "ok"},
    ]
    (context, labels), = dialogue_cuts(messages, span=2, cuts=3)  # "ok" is too short to cut before
    assert len(context) == 2 and labels.tolist() == [0, 1, 0, 0]
    assert dialogue_cuts(messages, cuts=0) == []


def test_cli_trains_a_head_that_compress_uses(tiny_world_model, tmp_path):
    import json

    from typer.testing import CliRunner

    from arrcoc.cli import app

    model_dir = tmp_path / "model"
    tiny_world_model.save_pretrained(model_dir)
    rng = random.Random(3)
    rows = []
    for k in range(12):
        messages, future = _dialogue(rng)
        rows.append(json.dumps({"id": k, "messages": messages + future}))
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(rows) + "\n")
    train = tmp_path / "train_with_a_bad_line.jsonl"
    train.write_text(data.read_text() + "{not json\n")
    result = CliRunner().invoke(app, ["train-reuse", str(train), "--model", str(model_dir), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if '{"saved"' in line)  # after progress bars
    summary = json.loads(line[line.index("{") :])
    assert summary["examples"] == 12 and summary["saved"] == str(model_dir / "reuse")
    assert "train_with_a_bad_line.jsonl:13: skipped: invalid JSON" in result.output  # the bad line is named
    assert (model_dir / "reuse" / "model.safetensors").is_file()
    out = tmp_path / "out.jsonl"
    args = ["--budget", "3", "--model", str(model_dir), "--method", "reuse", "-o", str(out)]
    result = CliRunner().invoke(app, ["compress", str(data), *args])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 12
    result = CliRunner().invoke(app, ["train-reuse", str(data)])
    assert result.exit_code == 2 and "--model DIR" in result.output


def test_restated_feature_is_the_same_in_row_blocks(tiny_world_model, monkeypatch):
    from arrcoc import future_reuse

    scorer = WorldModelScorer(tiny_world_model)
    messages = [{"role": r, "content": "lisbon train on friday at nine"} for r in ("user", "assistant") * 3]
    whole = reuse_features(scorer, messages)
    monkeypatch.setattr(future_reuse, "ROW_BLOCK", 4)
    assert torch.allclose(reuse_features(scorer, messages), whole)


def test_shipped_default_model_has_a_reuse_head():
    from arrcoc.compress import compress
    from arrcoc.demo import sample_dialogue
    from arrcoc.knowing import resolve_model

    scorer = resolve_model(None)
    assert scorer.reuse is not None and scorer.reuse.config.dim == scorer.model.encoder.dim
    messages = sample_dialogue()["messages"]
    p = scorer.score(messages, "reuse").scores["coupling"]
    assert p.shape == (sum(len(m["content"].split()) for m in messages),) and 0 < p.min() <= p.max() < 1
    result = compress(messages, 0.3, method="reuse")
    assert result.budget == int(0.3 * len(p))

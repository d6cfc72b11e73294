import math

import pytest
import torch

from arrcoc.future_coupling import PooledTurns, coupling_exact, coupling_fast, pool_pieces
from arrcoc.knowing import WorldModelScorer, mean_field, model_turns, score_words
from dialogue.steps import exchanges

MESSAGES = [
    {"role": "system", "content": "You book trains."},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "I need a train to Lisbon"},
    {"role": "user", "content": "on May 3 please"},
    {"role": "assistant", "content": "From which city?"},
    {"role": "user", "content": ""},
    {"role": "user", "content": "Porto, in the morning"},
]


def test_model_turns_mirror_dialogue_exchanges():
    turns, num = model_turns(MESSAGES)
    assert turns == [3, 4, 0, 0, 1, 5, 2] and num == 3
    steps = exchanges([{"role": m["role"], "text": m["content"]} for m in MESSAGES if m["content"]])
    texts = [t for step in steps for t in step if t is not None]
    grouped = [
        "\n\n".join(m["content"] for m, t in zip(MESSAGES, turns, strict=True) if t == k) for k in range(num)
    ]
    assert grouped == texts


def _toy() -> PooledTurns:
    # one turn of pieces CLS (0,0), word0 (2,0), word1 (0,4), SEP (0,0)
    return PooledTurns(
        turn_sum=torch.tensor([[2.0, 4.0]]),
        turn_count=torch.tensor([4.0]),
        word_sum=torch.tensor([[2.0, 0.0], [0.0, 4.0]]),
        word_count=torch.tensor([1.0, 1.0]),
        word_turn=torch.tensor([0, 0]),
        normalize=False,
        model_turns=1,
    )


def _linear(turns):
    return turns[:, 0, 0], turns.flatten(1)


def test_coupling_exact_and_fast_hand_values():
    eye = torch.eye(2)
    exact = coupling_exact(_toy(), _linear, eye)
    # word 0 removed: mean (0.5, 1) -> (0, 4/3): |dV| = 0.5, ||dg|| = sqrt(0.25 + 1/9)
    assert exact[0].item() == pytest.approx(0.5 + math.sqrt(0.25 + 1 / 9), abs=1e-5)
    # word 1 removed: (0.5, 1) -> (2/3, 0): |dV| = 1/6, ||dg|| = sqrt(1/36 + 1)
    assert exact[1].item() == pytest.approx(1 / 6 + math.sqrt(1 / 36 + 1), abs=1e-5)
    fast = coupling_fast(_toy(), _linear, eye)
    # first order: -(s_i - p) / n = (-0.375, 0.25) and (0.125, -0.75)
    assert fast[0].item() == pytest.approx(0.375 + math.sqrt(0.375**2 + 0.25**2), abs=1e-5)
    assert fast[1].item() == pytest.approx(0.125 + math.sqrt(0.125**2 + 0.75**2), abs=1e-5)


def test_removal_direction_matches_autograd_with_normalisation():
    pooled = _toy()
    pooled.normalize = True
    w = torch.ones(2, requires_grad=True)
    raw = (torch.tensor([0.0, 0.0]) + w[0] * pooled.word_sum[0] + w[1] * pooled.word_sum[1]) / (2 + w.sum())
    q = torch.nn.functional.normalize(raw, dim=0)
    jac = torch.stack([torch.autograd.grad(q[k], w, retain_graph=True)[0] for k in range(2)])  # [H, N]
    assert torch.allclose(pooled.removal_direction().T, -jac, atol=1e-6)


def test_pool_pieces_matches_encoder_pooling_and_chunks_long_turns(tiny_world_model):
    enc = tiny_world_model.encoder
    words = [["I", "need", "a", "train", "to", "Lisbon,", "please!"]]

    def hidden(ids, mask):
        return enc.encode_tokens(ids, mask)[1]

    pooled, _ = pool_pieces(hidden, enc.tokenizer, words, [0], 1, max_length=128)
    batch = enc.tokenize([" ".join(words[0])])
    reference = enc.encode_tokens(batch["input_ids"], batch["attention_mask"])[0]
    assert torch.allclose(pooled.pooled(), reference, atol=1e-5)
    long_words = [("lisbon porto train " * 30).split()]
    chunked, _ = pool_pieces(hidden, enc.tokenizer, long_words, [0], 1, max_length=16)
    assert bool((chunked.word_count > 0).all())  # every word is encoded despite the 16-piece window
    assert chunked.turn_count.item() > 16


def test_fast_form_ranks_like_exact_on_long_turns(tiny_world_model):
    scorer = WorldModelScorer(tiny_world_model)
    text = "please book two train tickets from porto to lisbon on the third of may in the morning " * 2
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "Sure, which class?"}]
    pooled, _ = scorer.pool(messages)
    fast = coupling_fast(pooled, scorer._imagine, scorer.proj)
    exact = coupling_exact(pooled, scorer._imagine, scorer.proj)
    ranks = [torch.argsort(torch.argsort(x)).float() for x in (fast, exact)]
    spearman = torch.corrcoef(torch.stack(ranks))[0, 1].item()
    assert spearman > 0.8
    assert bool((exact > 0).all())
    # the turn is longer than the decoder's 63 pieces: words past the cut still get information
    assert bool((scorer.information(messages) > 0).all())


def test_scores_every_word_and_ignores_unread(tiny_world_model):
    scorer = WorldModelScorer(tiny_world_model)
    out = scorer.score(MESSAGES, "exact")
    n = sum(len(m["content"].split()) for m in MESSAGES)
    assert all(v.shape == (n,) for v in out.scores.values())
    assert out.scores["coupling"][:4].abs().sum() == 0  # system + leading assistant are not read
    assert bool((out.scores["coupling"][4:] > 0).all())
    assert out.scores["information"][:4].abs().sum() == 0
    assert bool((out.scores["information"][4:] > 0).all())
    assert bool((out.scores["salience"] > 0).all())
    # information sums the decoder's per-piece surprisal
    readable = [m for m in MESSAGES[2:] if m["content"]]
    with mean_field(tiny_world_model.rssm):
        total = sum(float(t.surprisal.sum()) for t in tiny_world_model.turn_surprisal(readable))
    assert out.scores["information"].sum().item() == pytest.approx(total, rel=1e-4)
    assert score_words(MESSAGES, "salience", scorer).tolist() == pytest.approx(
        out.scores["salience"].tolist()
    )


def test_relevance_via_world_model_and_token_affordances(tiny_world_model):
    from arrcoc.affordances import token_affordances
    from arrcoc.knowing import ScoringError, relevance_via_world_model

    context = MESSAGES[2:5] + [{"role": "user", "content": "Porto, in the morning"}]
    scorer = WorldModelScorer(tiny_world_model)
    every = relevance_via_world_model(context, None, scorer)
    assert every.shape == (sum(len(m["content"].split()) for m in context),)
    picked = relevance_via_world_model(context, [0, 5], scorer)
    assert picked.tolist() == pytest.approx(every[[0, 5]].tolist())
    named = relevance_via_world_model(context, ["lisbon", "absent"], scorer)
    assert named[0].item() == pytest.approx(every[5].item()) and named[1].item() == 0.0
    with pytest.raises(ScoringError, match="indices"):
        relevance_via_world_model(context, [99], scorer)

    aff = token_affordances(tiny_world_model, context, ["Lisbon", "ok", "which class?"])
    parts = torch.stack([aff.engagement, aff.coherence, aff.task_success], 1)
    assert aff.total.tolist() == pytest.approx((parts @ torch.tensor([0.3, 0.3, 0.4])).tolist(), abs=1e-6)
    custom = token_affordances(tiny_world_model, context, ["Lisbon", "ok"], weights=(1.0, 0.0, 0.0))
    assert custom.total.tolist() == pytest.approx(custom.engagement.tolist(), abs=1e-6)
    assert [t for t, _ in aff.ranked()] == [aff.tokens[i] for i in torch.argsort(aff.total, descending=True)]
    with pytest.raises(ScoringError, match="end with a user turn"):
        token_affordances(tiny_world_model, MESSAGES[2:5], ["ok"])


def test_world_model_scorer_handles_wordless_dialogue(tiny_world_model):
    out = WorldModelScorer(tiny_world_model).score([{"role": "user", "content": " "}], "fast")
    assert all(v.shape == (0,) for v in out.scores.values())

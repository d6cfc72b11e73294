"""DialogueWorldModel: formulas, shapes, learning, API, persistence, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from dialogue.batching import collate
from dialogue.data.tokenize import LengthLimitWarning
from dialogue.labels import (
    discounted_future,
    engagement_signal,
    quality_labels,
    task_success_signal,
)
from dialogue.losses import info_nce
from dialogue.model import DialogueInputError
from dialogue.pretrained import EncoderMismatchError
from dialogue.steps import exchanges, windows

DIALOGUE = [
    {"role": "system", "content": "be nice"},
    {"role": "user", "content": "tell me about music part 0"},
    {"role": "assistant", "content": "music is fun, here is point 0 on music"},
    {"role": "user", "content": "tell me about music part 1"},
]


def test_info_nce_hand_computed():
    eye = torch.eye(2)
    # logits [[1, 0], [0, 1]] -> each row: -log(e / (e + 1)) = log(1 + e^-1)
    assert math.isclose(info_nce(eye, eye, 1.0).item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    # a near-duplicate negative is masked out: loss 0
    assert (
        info_nce(
            torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]), 1.0
        )
        == 0
    )
    # groups: rows 0 and 1 share a window, so row 0's only negative is row 2 (and vice versa)
    eye3 = torch.eye(3)
    one_negative = math.log(1 + math.exp(-1))
    all_negatives = math.log(1 + 2 * math.exp(-1))
    grouped = info_nce(eye3, eye3, 1.0, groups=torch.tensor([0, 0, 1]))
    assert math.isclose(grouped.item(), (2 * one_negative + all_negatives) / 3, rel_tol=1e-6)
    assert math.isclose(info_nce(eye3, eye3, 1.0).item(), all_negatives, rel_tol=1e-6)


def test_proxy_labels_hand_computed():
    assert task_success_signal("Thanks, that works!") == 1.0
    assert task_success_signal("thanks but it doesn't work") == 0.0
    assert task_success_signal("and what about cats?") == 0.5
    assert engagement_signal(None) == 0.0 and engagement_signal("w " * 60) == 1.0
    assert math.isclose(engagement_signal("a b c"), math.log(4) / math.log(51))
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    asst = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    labels, mask = quality_labels(["q one", "thanks"], user, asst, torch.tensor([True, False]))
    # relevance (1 + cos(u0, a0)) / 2 = 0.5; coherence (1 + cos(a0, u1)) / 2 = 1; "thanks" -> success 1
    assert labels[0].tolist() == pytest.approx([0.5, math.log(2) / math.log(51), 1.0, 1.0])
    assert mask.tolist() == [[True, True, True, True], [False, False, False, False]]
    labels, _ = quality_labels(
        ["q", "a"], user, asst, torch.tensor([True, True]), {"engagement": 0.25}
    )
    assert labels[:, 1].tolist() == [0.25, 0.25]


def test_discounted_future_hand_computed():
    reward = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    valid = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # v_t = sum_{k>t} 0.5^(k-t) r_k over valid steps: [0.5*2 + 0.25*3, 0.5*3, 0, 0]
    assert discounted_future(reward, valid, 0.5).tolist() == [[1.75, 1.5, 0.0, 0.0]]


def test_exchanges_rules():
    turns = [
        {"role": "assistant", "text": "greeting"},
        {"role": "system", "text": "sys"},
        {"role": "user", "text": "a"},
        {"role": "user", "text": "b"},
        {"role": "assistant", "text": "c"},
        {"role": "user", "text": "d"},
    ]
    assert exchanges(turns) == [("a\n\nb", "c"), ("d", None)]
    assert windows([("a", "b")] * 5, 2) == [[("a", "b")] * 2, [("a", "b")] * 2, [("a", "b")]]


def test_forward_shapes_and_loss_falls(tiny_setup):
    make, steps, _ = tiny_setup
    model = make()
    batch = collate(steps.examples, steps.embeddings)
    assert batch["user_emb"].shape == (16, 4, 32) and batch["user_ids"].shape[:2] == (16, 4)
    params = [p for p in model.parameters() if p.requires_grad]
    assert not any(n.startswith("encoder.") for n, p in model.named_parameters() if p.requires_grad)
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(12):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]
    assert out.metrics["loss/decoder"] < math.log(model.config.decoder.vocab_size)


def test_encode_simulate_generate_api(tiny_setup):
    make, _, _ = tiny_setup
    model = make().eval()
    state = model.encode_dialogue(DIALOGUE)
    assert (
        state.awaiting == "assistant"
        and state.num_steps == 2
        and state.latent["deter"].shape == (1, 32)
    )
    traj = model.simulate_future_turns(state, "music is fun", num_turns=3, seed=3, decode=True)
    assert traj.responses.shape == (1, 3, 32) and traj.next_user.shape == (1, 3, 32)
    assert set(traj.quality) == {"relevance", "engagement", "coherence", "task_success"}
    assert traj.rewards.shape == traj.values.shape == (1, 3) and len(traj.user_texts[0]) == 3
    disc = model.config.gamma ** torch.arange(3.0)
    expected = (traj.rewards * disc).sum(-1) + disc[-1] * traj.values[:, -1]
    assert torch.allclose(traj.discounted_total, expected)
    assert torch.allclose(traj.future, traj.discounted_total - traj.rewards[:, 0])
    again = model.simulate_future_turns(state, "music is fun", num_turns=3, seed=3, decode=True)
    assert (
        torch.equal(traj.states["stoch"], again.states["stoch"])
        and traj.user_texts == again.user_texts
    )
    emb = model.embed_texts(["music is fun"])[0]
    by_emb = model.simulate_future_turns(state, emb, num_turns=3, seed=3)
    assert torch.allclose(by_emb.discounted_total, traj.discounted_total, atol=1e-5)
    assert model.generate_response(state, bank=["x y", "music is fun"])[0] in (
        "x y",
        "music is fun",
    )
    assert isinstance(model.generate_response(state)[0], str)
    ended = model.encode_dialogue(DIALOGUE[:3])
    assert ended.awaiting == "user" and model.predict_next_user(ended).shape == (1, 32)
    with pytest.raises(DialogueInputError, match="ends with an assistant turn"):
        model.simulate_future_turns(ended, "hello")
    assert model.simulate_future_turns(ended, None, num_turns=2).rewards.shape == (1, 2)


def test_turn_surprisal_matches_decoder_nll(tiny_setup):
    make, _, bpe = tiny_setup
    model = make().eval()
    scores = model.turn_surprisal(DIALOGUE)
    assert [s.role for s in scores] == ["user", "assistant", "user"]
    for s in scores:
        assert len(s.tokens) == len(s.offsets) == len(s.surprisal) and (s.surprisal > 0).all()
    first = scores[0]
    assert first.text[first.offsets[1][0] : first.offsets[1][1]] in first.text


def test_save_load_round_trip_and_encoder_mismatch(tiny_setup, tmp_path):
    from dialogue.encoder import TurnEncoder, save_tiny_encoder
    from dialogue.model import DialogueWorldModel

    make, _, _ = tiny_setup
    model = make(seed=5).eval()
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    }
    loaded = DialogueWorldModel.from_pretrained(tmp_path / "m", encoder=model.encoder)
    a = model.simulate_future_turns(model.encode_dialogue(DIALOGUE), "ok", seed=1)
    b = loaded.simulate_future_turns(loaded.encode_dialogue(DIALOGUE), "ok", seed=1)
    assert torch.equal(a.discounted_total, b.discounted_total) and torch.equal(
        a.next_user, b.next_user
    )
    assert torch.equal(
        model.turn_surprisal(DIALOGUE)[1].surprisal, loaded.turn_surprisal(DIALOGUE)[1].surprisal
    )
    other = TurnEncoder(str(save_tiny_encoder(tmp_path / "other", seed=1)), max_length=32)
    with pytest.raises(EncoderMismatchError, match="was trained with encoder"):
        DialogueWorldModel.from_pretrained(tmp_path / "m", encoder=other)
    from worldmodel.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="missing config.json"):
        DialogueWorldModel.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "no non-empty turns"),
        ([{"role": "user", "content": 5}], "content must be a string"),
        ([{"role": "wizard", "content": "hi"}], "unknown role"),
        ([{"role": "assistant", "content": "hi"}], "no user turn"),
        ("hello", "must be a list"),
    ],
)
def test_bad_dialogues_raise_readable_errors(tiny_setup, messages, match):
    make, _, _ = tiny_setup
    with pytest.raises(DialogueInputError, match=match):
        make().encode_dialogue(messages)


def test_user_only_dialogue_is_fine_and_long_turn_warns(tiny_setup):
    make, _, _ = tiny_setup
    model = make()
    assert model.encode_dialogue([{"role": "user", "content": "hi"}]).awaiting == "assistant"
    with pytest.warns(LengthLimitWarning, match="exceed the encoder's 32 word pieces"):
        model.encode_dialogue([{"role": "user", "content": "word " * 100}])


def test_shipped_default_model_loads_and_simulates():
    from dialogue.model import DialogueWorldModel
    from dialogue.pretrained import DEFAULT_DIR

    assert (DEFAULT_DIR / "model.safetensors").stat().st_size <= 20 * 2**20
    model = DialogueWorldModel.from_pretrained()
    assert model.encoder.dim == 384 and not model.encoder.trainable
    state = model.encode_dialogue([{"role": "user", "content": "How do I sort a list in Python?"}])
    traj = model.simulate_future_turns(state, "Use sorted(my_list) or my_list.sort().", num_turns=2)
    assert traj.discounted_total.shape == (1,) and torch.isfinite(traj.discounted_total).all()


def test_next_user_skip_starts_at_previous_user_turn_and_round_trips(tiny_setup, tmp_path):
    import dataclasses

    from dialogue.evaluate import evaluate
    from dialogue.model import DialogueWorldModel

    make, steps, bpe = tiny_setup
    base = make()
    config = dataclasses.replace(base.config, next_user_skip=True)
    torch.manual_seed(0)
    model = DialogueWorldModel(config, tokenizer=bpe, encoder=base.encoder).eval()
    # At initialisation the prediction is exactly the previous user turn (the baseline).
    u_prev, a_prev = torch.randn(3, 32), torch.randn(3, 32)
    feat = torch.randn(3, model.rssm.feat_dim)
    expected = torch.nn.functional.normalize(u_prev, dim=-1)
    assert torch.allclose(model.user_prediction(feat, u_prev, a_prev), expected, atol=1e-6)
    metrics = evaluate(model, steps)
    assert metrics["dev/model_r_at_1"] == metrics["dev/baseline_prev_user_r_at_1"]
    assert metrics["dev/model_mrr"] == metrics["dev/baseline_prev_user_mrr"]
    # Without the flag the head ignores the previous turns (old checkpoints keep their meaning).
    plain = base.eval().user_prediction(feat, u_prev, a_prev)
    assert torch.allclose(plain, base.user_prediction(feat, 0 * u_prev, 0 * a_prev))
    # The imagined next user turn after a response reads the last user turn through the skip.
    state = model.encode_dialogue(DIALOGUE)
    traj = model.simulate_future_turns(state, "ok", num_turns=2)
    assert torch.allclose(traj.next_user[:, 0], state.last_user, atol=1e-5)
    # The flag round-trips through save_pretrained / from_pretrained.
    model.save_pretrained(tmp_path / "skip")
    loaded = DialogueWorldModel.from_pretrained(tmp_path / "skip", encoder=model.encoder)
    assert loaded.config.next_user_skip and loaded.user_skip is not None
    assert torch.equal(loaded.user_skip.weight, model.user_skip.weight)
    again = loaded.simulate_future_turns(loaded.encode_dialogue(DIALOGUE), "ok", num_turns=2)
    assert torch.allclose(again.next_user, traj.next_user, atol=1e-6)


def test_turn_surprisal_with_given_turn_embeddings(tiny_setup):
    """Embeddings passed in give the same surprisal as embedding the turns; a wrong count is refused."""
    model = tiny_setup[0]().eval()
    steps = model.parse_messages(DIALOGUE)
    texts = [t for u, a in steps for t in (u, a) if t is not None]
    given = model.embed_texts(texts)
    own = model.turn_surprisal(DIALOGUE)
    passed = model.turn_surprisal(DIALOGUE, turn_embeddings=given)
    assert all(torch.allclose(a.surprisal, b.surprisal) for a, b in zip(own, passed, strict=True))
    with pytest.raises(ValueError, match="turn embeddings for"):
        model.turn_surprisal(DIALOGUE, turn_embeddings=given[:1])

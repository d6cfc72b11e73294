"""Shapes, resets, prior-only imagination and straight-through sampling of the RSSM."""

import pytest
import torch

from worldmodel.rssm import RSSM, BlockGRU

B, T, E, A = 3, 5, 7, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def small(**kw):
    torch.manual_seed(0)
    return RSSM(E, A, deter=16, stoch=4, classes=3, hidden=8, **kw)


def inputs():
    g = torch.Generator().manual_seed(1)
    embed = torch.randn(B, T, E, generator=g)
    action = torch.randn(B, T, A, generator=g)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return embed, action, is_first


@pytest.mark.parametrize("blocks", [1, 4])
def test_observe_shapes(blocks):
    rssm = small(gru_blocks=blocks)
    assert rssm.feat_dim == 16 + 4 * 3
    post, prior = rssm.observe(*inputs())
    for s in (post, prior):
        assert s["deter"].shape == (B, T, 16)
        assert s["stoch"].shape == (B, T, 4, 3) and s["logits"].shape == (B, T, 4, 3)
        assert torch.allclose(s["stoch"].sum(-1), torch.ones(B, T, 4))
    assert torch.equal(post["deter"], prior["deter"])
    assert rssm.feat(post).shape == (B, T, rssm.feat_dim)
    loss, metrics = rssm.kl_loss(post, prior)
    assert loss.shape == (B, T) and set(metrics) == {"dyn", "rep", "kl"}


def test_initial_state_shapes_and_one_hot():
    state = small().initial_state(4)
    assert state["deter"].shape == (4, 16)
    assert state["stoch"].shape == (4, 4, 3) and state["logits"].shape == (4, 4, 3)
    assert torch.equal(state["stoch"].sum(-1), torch.ones(4, 4))


def test_is_first_resets_state_and_zeroes_previous_action():
    rssm = small()
    embed, action, is_first = inputs()
    is_first[:, 2] = True
    post, _ = rssm.observe(embed, action, is_first)
    fresh, _ = rssm.observe(embed[:, 2:], torch.zeros_like(action[:, 2:]), is_first[:, 2:])
    # step 0 after a reset depends only on the initial state (deterministic) and zero action
    assert torch.allclose(post["deter"][:, 2], fresh["deter"][:, 0], atol=1e-6)
    assert not torch.allclose(post["deter"][:, 2], post["deter"][:, 1])
    # a row without the reset differs
    is_first[1, 2] = False
    post2, _ = rssm.observe(embed, action, is_first)
    assert not torch.allclose(post2["deter"][1, 2], fresh["deter"][1, 0])


def test_imagine_uses_prior_only_and_matches_img_step():
    rssm = small()
    post, _ = rssm.observe(*inputs())
    start = {k: v[:, -1] for k, v in post.items()}
    actions = torch.randn(B, 4, A)
    torch.manual_seed(5)
    states, acts = rssm.imagine(start, actions, horizon=4)
    assert states["deter"].shape == (B, 5, 16) and acts.shape == (B, 4, A)
    assert torch.equal(states["deter"][:, 0], start["deter"])
    torch.manual_seed(5)
    manual = start
    for t in range(4):
        manual = rssm.img_step(manual, actions[:, t])
    assert torch.allclose(states["deter"][:, -1], manual["deter"])
    rssm.zero_grad()
    fresh_start = {k: v.detach() for k, v in start.items()}
    states, _ = rssm.imagine(fresh_start, lambda f: torch.tanh(f[:, :A]), horizon=3)
    rssm.feat(states).sum().backward()
    assert all(p.grad is None for p in rssm.obs_out.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in rssm.img_out.parameters())


def test_imagine_rejects_too_few_actions():
    rssm = small()
    with pytest.raises(ValueError, match="horizon"):
        rssm.imagine(rssm.initial_state(2), torch.zeros(2, 2, A), horizon=3)


def test_observe_rejects_mismatched_shapes():
    embed, action, is_first = inputs()
    with pytest.raises(ValueError, match="observe expects"):
        small().observe(embed, action[:, :-1], is_first)


def test_straight_through_sample():
    torch.manual_seed(0)
    logits = torch.randn(64, 4, 3, requires_grad=True)
    sample = RSSM.sample(logits.log_softmax(-1))
    assert torch.allclose(sample, sample.round(), atol=1e-6)
    assert torch.equal(sample.detach().round().sum(-1), torch.ones(64, 4))
    (sample * torch.arange(3.0)).sum().backward()
    assert logits.grad.abs().sum() > 0
    # sample frequencies follow the probabilities
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    draws = RSSM.sample(torch.log(probs).expand(20000, 3).unsqueeze(1)).detach().mean((0, 1))
    assert torch.allclose(draws, probs[0], atol=0.02)


def test_sample_is_the_inverse_cdf_class_of_one_uniform_per_latent():
    logits = torch.randn(256, 8, 5).log_softmax(-1)
    torch.manual_seed(3)
    sample = RSSM.sample(logits)
    torch.manual_seed(3)
    u = torch.rand(256, 8, 1)
    # reference: the first class whose cumulative probability reaches u (the last class if
    # rounding leaves the CDF just below u)
    expected = (logits.exp().cumsum(-1) < u).sum(-1).clamp(max=4)
    assert sample.dtype == logits.dtype
    assert torch.equal(sample, torch.nn.functional.one_hot(expected, 5).float())
    # a CDF that ends below u (as rounding can leave it) yields the last class, never an empty row
    short = torch.log(torch.tensor([0.3, 0.3])).expand(4000, 1, 2)
    drawn = RSSM.sample(short)
    assert torch.equal(drawn.sum(-1), torch.ones(4000, 1))
    assert abs(drawn[:, 0, 1].mean().item() - 0.7) < 0.03


def test_block_gru_rejects_bad_blocks_and_keeps_blocks_separate():
    with pytest.raises(ValueError, match="divisible"):
        BlockGRU(4, 10, blocks=4)
    torch.manual_seed(0)
    gru = BlockGRU(3, 8, blocks=2)
    x, h = torch.randn(2, 3), torch.randn(2, 8)
    h2 = h.clone()
    h2[:, 4:] += 1.0  # change only block 2 of the previous state
    assert torch.allclose(gru(x, h)[:, :4], gru(x, h2)[:, :4])
    assert not torch.allclose(gru(x, h)[:, 4:], gru(x, h2)[:, 4:])


@pytest.mark.parametrize("blocks", [1, 4])
def test_block_gru_matches_the_gru_formula(blocks):
    torch.manual_seed(0)
    gru = BlockGRU(5, 8, blocks)
    x, h = torch.randn(3, 5), torch.randn(3, 8)
    hb = h.reshape(3, blocks, -1)
    inputs = torch.cat([x.unsqueeze(1).expand(3, blocks, 5), hb], -1)  # each block sees x and its h_g
    reset, cand, update = gru.norm(torch.einsum("bgi,gio->bgo", inputs, gru.weight)).chunk(3, -1)
    reset, update = torch.sigmoid(reset), torch.sigmoid(update - 1)
    expected = update * torch.tanh(reset * cand) + (1 - update) * hb
    assert torch.allclose(gru(x, h), expected.reshape(3, 8), atol=1e-6)

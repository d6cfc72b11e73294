import math

import pytest
import torch

from arrcoc.attending import straight_through_topk
from arrcoc.balancing import (
    Balancer,
    BalancingError,
    Tensions,
    local_average,
    normalize_per_sample,
    redundancy,
    reserved_ranking,
    tension_weights,
)


def test_normalize_is_per_sample_and_ignores_padding():
    x = torch.tensor([[1.0, 3.0, 2.0, 100.0], [10.0, 20.0, 30.0, 40.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    out = normalize_per_sample(x, mask)
    # sample 0 uses its own min/max (1, 3), not the padded 100 nor sample 1's range
    assert out[0].tolist() == pytest.approx([0.0, 1.0, 0.5, 0.0])
    assert out[1].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    const = normalize_per_sample(torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool))
    assert const.tolist() == [[0.5, 0.5, 0.5]]


def test_tension_weights_hand_values():
    base = torch.tensor([0.5, 0.25, 0.25])
    assert tension_weights(torch.tensor([0.5]), base)[0].tolist() == pytest.approx([0.5, 0.25, 0.25])
    # t = 0: coupling x2, information x0 -> (1.0, 0, 0.25) / 1.25
    assert tension_weights(torch.tensor([0.0]), base)[0].tolist() == pytest.approx([0.8, 0.0, 0.2])
    # t = 1: coupling 0, information 0.5, salience 0.25 -> / 0.75
    assert tension_weights(torch.tensor([1.0]), base)[0].tolist() == pytest.approx([0.0, 2 / 3, 1 / 3])


def test_local_average_and_redundancy_hand_values():
    x = torch.tensor([[0.0, 3.0, 6.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert local_average(x, mask, 1)[0].tolist() == pytest.approx([1.5, 3.0, 4.5])
    # semantic: words 0 and 1 identical directions, word 2 orthogonal
    emb = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    red = redundancy(torch.tensor([[0.2, 0.8, 1.0]]), mask, emb)
    assert red[0].tolist() == pytest.approx([0.8, 0.2, 0.0])
    # positional: middle word sees both neighbours equally
    pos = redundancy(torch.tensor([[1.0, 0.0, 1.0]]), mask, bandwidth=1.0)
    assert pos[0, 1].item() == pytest.approx(1.0)


def test_tensions_validate():
    with pytest.raises(BalancingError, match="focus_diversify"):
        Tensions(focus_diversify=1.5)
    with pytest.raises(BalancingError, match="scores must be"):
        Balancer()(torch.zeros(1, 4, 2), torch.ones(1, 4, dtype=torch.bool))


def test_fixed_balancer_particularize_and_exploit():
    scores = torch.zeros(1, 5, 3)
    scores[0, :, 0] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])  # coupling peaks at word 2
    scores[0, :, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])  # information peaks at word 0
    mask = torch.ones(1, 5, dtype=torch.bool)
    exploit = Balancer(Tensions(1.0, 0.0, 0.0))(scores, mask)
    explore = Balancer(Tensions(1.0, 1.0, 0.0))(scores, mask)
    assert exploit.balanced[0].argmax().item() == 2
    assert explore.balanced[0].argmax().item() == 0
    assert exploit.tensions[0].tolist() == [1.0, 0.0, 0.0]
    assert exploit.balanced.min() >= 0 and exploit.balanced.max() <= 1


def test_keep_peaks_lifts_spans_but_never_averages_a_peak_away():
    coupling = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    scores = torch.zeros(1, 14, 3)
    scores[0, :, 0] = coupling
    mask = torch.ones(1, 14, dtype=torch.bool)
    compress = Tensions(0.0, 0.0, 0.0)  # all on the compress side, coupling only
    plain = Balancer(compress)(scores, mask).balanced[0]
    peaks = Balancer(compress, keep_peaks=True)(scores, mask).balanced[0]
    assert plain[4] < plain[11]  # the mean over 5 words turns the isolated peak into 0.2
    assert peaks.argmax().item() == 4 and peaks[11] < peaks[4]
    # reference: mixed = 0.8 coupling + 0.2 * 0.5 (constant salience), then max(local mean, mixed)
    mixed = (0.8 * coupling + 0.1)[None]
    expected = normalize_per_sample(torch.maximum(local_average(mixed, mask, 2), mixed), mask)
    assert peaks.tolist() == pytest.approx(expected[0].tolist(), abs=1e-6)
    assert peaks[3] > peaks[1]  # the peak's neighbours are lifted (a span grows around it)


def test_reserved_ranking_by_hand():
    primary = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.0])
    reserved = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    # slot 0 reserved -> word 4; slot 1 primary -> 0; slot 2 reserved -> 1 (4, 0 placed; ties: earlier);
    # slot 3 primary -> 2; slot 4 reserved -> 3. Scores 1 - slot / 5.
    merged = reserved_ranking(primary, reserved, 0.5)
    assert merged.tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2, 1.0])
    assert torch.equal(reserved_ranking(primary, reserved, 0.0).argsort(), primary.argsort())
    assert reserved_ranking(primary, reserved, 1.0).argmax().item() == 4
    with pytest.raises(BalancingError, match="reserved share"):
        reserved_ranking(primary, reserved, 1.5)


@pytest.mark.parametrize("share", [0.2, 0.3, 0.5])
def test_every_budget_holds_the_reserved_share_of_best_words(share):
    gen = torch.Generator().manual_seed(3)
    primary, reserved = torch.rand(37, generator=gen), torch.rand(37, generator=gen)
    order = reserved_ranking(primary, reserved, share).argsort(descending=True).tolist()
    best_p = primary.argsort(descending=True).tolist()
    best_r = reserved.argsort(descending=True).tolist()
    for budget in range(38):
        kept, k = set(order[:budget]), math.ceil(share * budget - 1e-9)
        assert set(best_r[:k]) <= kept and set(best_p[: budget - k]) <= kept


def test_balancer_reserved_share_per_sample_with_mask():
    gen = torch.Generator().manual_seed(1)
    scores, reserved = torch.rand(2, 9, 3, generator=gen), torch.rand(2, 9, generator=gen)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    plain = Balancer(Tensions(), reserved_share=0.3)(scores, mask).balanced  # no reserved score given
    assert torch.equal(plain, Balancer(Tensions())(scores, mask).balanced)
    out = Balancer(Tensions(), reserved_share=0.3)(scores, mask, reserved=reserved).balanced
    for b in range(2):
        valid = mask[b]
        assert torch.equal(out[b, valid], reserved_ranking(plain[b, valid], reserved[b, valid], 0.3))
    assert out[1, 6:].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(BalancingError, match="reserved must be"):
        Balancer(reserved_share=0.3)(scores, mask, reserved=reserved[:, :5])
    with pytest.raises(BalancingError, match="reserved_share"):
        Balancer(reserved_share=-0.1)
    with pytest.raises(BalancingError, match="without gradient"):
        Balancer(learned=True, reserved_share=0.5)


def test_recent_share_by_hand():
    scores = torch.zeros(1, 7, 3)
    scores[0, :, 0] = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.0])  # coupling: balanced order 0..6
    mask = torch.ones(1, 7, dtype=torch.bool)
    plain = Balancer(Tensions(1.0, 0.5, 0.0))(scores, mask).balanced[0]
    assert plain.argsort(descending=True).tolist() == [0, 1, 2, 3, 4, 5, 6]
    # recent share 0.4: slot j takes the last word not placed when ceil(0.4 (j + 1)) > ceil(0.4 j):
    # slots 0, 2, 5 -> words 6, 5, 4; the others the balanced order 0, 1, 2, 3. Scores 1 - slot / 7.
    out = Balancer(Tensions(1.0, 0.5, 0.0), recent_share=0.4)(scores, mask).balanced[0]
    slot = {6: 0, 0: 1, 5: 2, 1: 3, 2: 4, 4: 5, 3: 6}
    assert out.tolist() == pytest.approx([1 - slot[w] / 7 for w in range(7)])
    # reserved share 0.2 (reserved prefers word 3, then 2), recent 0.4: the recent share of the rest is
    # 0.4 / 0.8 = 0.5, so the inner ranking is 6, 0, 5, 1, 4, 2, 3 (recent at slots 0, 2, 4, 6); the
    # reserved ranking takes slots 0 and 5 (ceil(0.2 (j + 1)) > ceil(0.2 j)): 3, 6, 0, 5, 1, 2, 4.
    reserved = torch.tensor([[0.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0]])
    both = Balancer(Tensions(1.0, 0.5, 0.0), reserved_share=0.2, recent_share=0.4)
    slot = {3: 0, 6: 1, 0: 2, 5: 3, 1: 4, 2: 5, 4: 6}
    assert both(scores, mask, reserved=reserved).balanced[0].tolist() == pytest.approx(
        [1 - slot[w] / 7 for w in range(7)]
    )


@pytest.mark.parametrize(("share", "recent"), [(0.0, 0.3), (0.5, 0.4), (0.3, 0.3), (0.6, 0.4), (0.2, 0.6)])
@pytest.mark.parametrize("seed", [5, 6])
def test_every_budget_holds_the_recent_and_reserved_shares(share, recent, seed):
    gen = torch.Generator().manual_seed(seed)
    n, pad = 41, 6
    scores, reserved = torch.rand(2, n + pad, 3, generator=gen), torch.rand(2, n + pad, generator=gen)
    mask = torch.ones(2, n + pad, dtype=torch.bool)
    mask[1, n:] = False  # the second dialogue has n words and padding
    plain = Balancer(Tensions())(scores, mask).balanced[1, :n]
    out = Balancer(Tensions(), reserved_share=share, recent_share=recent)(scores, mask, reserved=reserved)
    assert out.balanced[1, n:].eq(0).all()
    order = out.balanced[1, :n].argsort(descending=True).tolist()
    best_r = reserved[1, :n].argsort(descending=True).tolist()
    best_b = plain.argsort(descending=True).tolist()
    for budget in range(n + 1):
        kept = set(order[:budget])
        k = math.ceil(share * budget - 1e-9)
        k_recent = math.ceil(recent / (1 - share) * (budget - k) - 1e-9)
        assert set(best_r[:k]) <= kept  # the reserved score's best
        assert set(range(n - k_recent, n)) <= kept  # the last words
        assert set(best_b[: budget - k - k_recent]) <= kept  # the balanced score's best for the rest


def test_recent_share_errors():
    with pytest.raises(BalancingError, match="recent_share must be in"):
        Balancer(recent_share=1.5)
    with pytest.raises(BalancingError, match="<= 1"):
        Balancer(reserved_share=0.6, recent_share=0.5)
    with pytest.raises(BalancingError, match="without gradient"):
        Balancer(learned=True, recent_share=0.2)


def test_gradients_reach_scorer_and_learned_balancer_through_straight_through():
    torch.manual_seed(0)
    emb = torch.randn(2, 12, 8)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    scorer = torch.nn.Linear(8, 3)  # stands in for the three scorer heads
    balancer = Balancer(learned=True)
    target = torch.randn(2, 12)
    balanced = balancer(scorer(emb), mask).balanced
    keep = straight_through_topk(balanced, torch.tensor([4, 3]), tau=0.1, mask=mask)
    assert keep.detach().sum(1).tolist() == [4.0, 3.0]
    loss = -(keep * target).sum()
    loss.backward()
    assert scorer.weight.grad is not None and scorer.weight.grad.abs().sum() > 0
    grads = [p.grad for p in balancer.mlp.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0

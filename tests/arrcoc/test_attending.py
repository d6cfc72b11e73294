import math

import pytest
import torch

from arrcoc.attending import (
    AllocationConfig,
    AllocationError,
    allocate,
    allocate_dialogue,
    allocate_levels,
    curve_weights,
    forced_mask,
    resolve_budget,
    soft_topk,
    straight_through_topk,
    turn_bounds,
)


def test_resolve_budget_ratio_and_count():
    assert resolve_budget(0.25, 10) == 2  # floor(2.5)
    assert resolve_budget(0.5, 7) == 3
    assert resolve_budget(0.3, 10) == 3  # no float drift to 2
    assert resolve_budget(4, 10) == 4
    assert resolve_budget(40, 10) == 10


def test_curve_weights_hand_values():
    assert curve_weights(3, "linear").tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert curve_weights(3, "power", 2.0).tolist() == pytest.approx([0.0, 0.25, 1.0])
    a = 1.0
    assert curve_weights(3, "exponential", a).tolist() == pytest.approx(
        [0.0, (math.exp(0.5) - 1) / (math.e - 1), 1.0]
    )
    assert curve_weights(4, "flat").tolist() == [1.0] * 4
    with pytest.raises(AllocationError, match="unknown budget curve"):
        curve_weights(3, "cubic")


def test_turn_bounds_follow_curve():
    sizes = torch.tensor([10, 10, 10])
    lo, hi = turn_bounds(sizes, AllocationConfig(min_per_turn=2, max_per_turn=8, curve="linear"))
    assert lo.tolist() == [2, 2, 2]
    assert hi.tolist() == [2, 5, 8]  # 2 + 6 * (0, .5, 1)
    lo, hi = turn_bounds(torch.tensor([1, 20]), AllocationConfig(min_per_turn=3, max_per_turn=0.5))
    assert lo.tolist() == [1, 3] and hi.tolist() == [1, 10]


def test_allocate_is_exact_and_optimal_under_caps():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    turns = torch.tensor([0, 0, 0, 1, 1, 1])
    out = allocate(scores, turns, 3, lo=torch.tensor([0, 1]), hi=torch.tensor([2, 3]))
    # turn 1 must keep its best word (0.3); turn 0 is capped at 2 -> 0.9, 0.8
    assert out.kept.tolist() == [True, True, False, False, False, True]
    assert out.per_turn.tolist() == [2, 1]
    with pytest.raises(AllocationError, match="minima"):
        allocate(scores, turns, 1, lo=torch.tensor([1, 1]), hi=torch.tensor([3, 3]))
    with pytest.raises(AllocationError, match="maxima"):
        allocate(scores, turns, 5, lo=torch.tensor([0, 0]), hi=torch.tensor([2, 2]))


@pytest.mark.parametrize("budget", [0.1, 0.25, 0.5, 0.99, 1, 7, 33])
def test_allocate_dialogue_budget_exact_with_forced(budget):
    g = torch.Generator().manual_seed(0)
    words = ["word" if i % 7 else f"{i}" for i in range(40)]  # every 7th word is a number
    scores = torch.rand(40, generator=g)
    turns = torch.arange(40) // 10
    cfg = AllocationConfig(
        budget=budget, force_digits=True, min_per_turn=int(resolve_budget(budget, 40) >= 4)
    )
    out = allocate_dialogue(scores, turns, words, cfg)
    n_forced = 6  # 0, 7, 14, 21, 28, 35
    assert int(out.forced.sum()) == n_forced
    assert bool(out.kept[out.forced].all())
    expected = min(resolve_budget(budget, 40), 40 - n_forced)
    assert int((out.kept & ~out.forced).sum()) == expected == out.budget


def test_forced_terms_and_digits():
    words = ["Book", "Paris,", "on", "May", "3rd", "(paris)"]
    assert forced_mask(words, force_digits=True).tolist() == [False, False, False, False, True, False]
    assert forced_mask(words, force_terms=["paris"]).tolist() == [False, True, False, False, False, True]


def test_levels_of_detail_exact_total():
    # turn 0 strong, turn 1 weak; levels 0, 0.5, 1 of 4 words per turn
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    turns = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out = allocate_levels(scores, turns, 5, (0.0, 0.5, 1.0))
    assert int(out.kept.sum()) == 5
    assert out.per_turn.tolist() == [4, 1]  # turn 0 goes to full detail, turn 1 takes the remainder
    assert out.levels.tolist() == [1.0, 0.25]
    cfg = AllocationConfig(budget=0.5, levels=(0.0, 0.5, 1.0))
    assert int(allocate_dialogue(scores, turns, ["a"] * 8, cfg).kept.sum()) == 4


def test_config_rejects_bad_values():
    for kwargs, msg in [
        ({"budget": 0}, "positive"),
        ({"budget": 2.5}, "whole number"),
        ({"curve": "zigzag"}, "unknown budget curve"),
        ({"levels": (0.5, 0.2)}, "strictly increasing"),
        ({"curve_floor": 2.0}, "curve_floor"),
    ]:
        with pytest.raises(AllocationError, match=msg):
            AllocationConfig(**kwargs)


def test_soft_topk_rows_sum_to_k_and_respect_mask():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.2, 0.4, 0.6, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    soft = soft_topk(scores, torch.tensor([2.0, 1.0]), tau=0.05, mask=mask)
    assert soft.sum(1).tolist() == pytest.approx([2.0, 1.0], abs=1e-4)
    assert soft[1, 3] == 0
    assert soft[0].argsort(descending=True)[:2].tolist() == [1, 2]


def test_straight_through_forward_is_exact_and_gradient_flows():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7]], requires_grad=True)
    out = straight_through_topk(scores, torch.tensor([2]), tau=0.1, gumbel=False)
    assert out.detach().tolist() == [[0.0, 1.0, 0.0, 0.0, 1.0]]
    (out * torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    g = torch.Generator().manual_seed(1)
    sampled = straight_through_topk(scores.detach(), torch.tensor([3]), tau=0.5, generator=g)
    assert sampled.sum().item() == pytest.approx(3.0)

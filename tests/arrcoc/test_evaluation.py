import math

import pytest

from arrcoc.evaluation import coverage_per_turn, selection_entropy, stability


def test_coverage_and_entropy_hand_values():
    kept = [True, False, True, True, False, False]
    message = [0, 0, 1, 1, 2, 2]
    assert coverage_per_turn(kept, message, 4) == [0.5, 1.0, 0.0, 1.0]
    # kept counts (1, 2, 0) over 3 messages: H = -(1/3 ln 1/3 + 2/3 ln 2/3) / ln 3
    expected = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)) / math.log(3)
    assert selection_entropy(kept, message, 3) == pytest.approx(expected)
    assert selection_entropy([True, True], [0, 0], 2) == 0.0
    assert selection_entropy([True, True], [0, 1], 2) == pytest.approx(1.0)


def test_stability_jaccard_on_shared_prefix():
    assert stability([True, True, False], [True, False, True, True]) == pytest.approx(1 / 3)
    assert stability([False], [False, True]) == 1.0
    with pytest.raises(ValueError, match="cover"):
        stability([True, True], [True])

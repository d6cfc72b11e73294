import pytest
import torch

from arrcoc.temporal import RelevanceTracker, TemporalError, bag_of_words, cosine

TRAIN = {"role": "user", "content": "book train tickets to Lisbon"}
TRAIN_MORE = {"role": "assistant", "content": "which train tickets, morning"}
COOKING = {"role": "user", "content": "recipe pancakes flour butter"}


def test_ema_hand_values_then_reset_on_topic_change():
    tracker = RelevanceTracker(decay=0.5, topic_threshold=0.2)
    first = tracker.update([TRAIN], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))
    assert first.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0] and not tracker.topic_changed
    fresh = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    second = tracker.update([TRAIN, TRAIN_MORE], fresh)
    assert not tracker.topic_changed  # shares "train", "tickets"
    assert second.tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    fresh3 = torch.arange(13, dtype=torch.float)
    third = tracker.update([TRAIN, TRAIN_MORE, COOKING], fresh3)
    assert tracker.topic_changed
    assert third.tolist() == fresh3.tolist()


def test_tracker_rejects_rewritten_history_and_wrong_length():
    tracker = RelevanceTracker()
    tracker.update([TRAIN], torch.zeros(5))
    with pytest.raises(TemporalError, match="extend"):
        tracker.update([COOKING], torch.zeros(4))
    with pytest.raises(TemporalError, match="one value per word"):
        tracker.update([TRAIN, TRAIN_MORE], torch.zeros(3))
    with pytest.raises(TemporalError, match="decay"):
        RelevanceTracker(decay=1.5)


def test_bag_of_words_ignores_short_words():
    assert bag_of_words("the a of to").sum() == 0
    assert cosine(bag_of_words("Train tickets"), bag_of_words("train, TICKETS!")) == pytest.approx(1.0)
    assert cosine(bag_of_words("train"), torch.zeros(2048)) == 0.0
